"""A closed round's results as plain data, CSV or JSON: what `staffvoice report round` writes.

Only through the anonymity engine: hidden groups and questions carry no numbers at all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from bot import spreadsheet
from bot.errors import UserError
from bot.reports import service
from bot.reports.anonymity import NOT_ENOUGH
from bot.reports.results import GroupResult, RoundResults, comments_by_group, org_of_round
from storage.db import Database

HEADER = ["round", "group", "label", "question_id", "question", "measure", "value"]
COMMENTS_MAX = 10_000  # comments per group and question in an export


class ReportError(UserError):
    """A report that cannot be made as asked; `str()` says why."""


async def export_round(s: Any, round_id: str, fmt: str,
                       may_see: Callable[[str], bool] | None = None) -> str:
    """A closed round's results for every group (or those `may_see` allows), as CSV or JSON."""
    results = await _results(s, round_id, may_see)
    if fmt == "csv":
        pieces = _csv_chunks(results, lambda: _comments(s, results), 1 << 62)
        return "".join([piece async for piece in pieces])
    data = as_data(results, await _comments(s, results))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


async def csv_chunks(db: Database, round_id: str, may_see: Callable[[str], bool] | None = None,
                     size: int = 64 * 1024) -> AsyncGenerator[str, None]:
    """`export_round(..., "csv")` in pieces of about `size` characters, for streaming: the
    header and the first groups' figures come before the comments are read, and the database
    is let go once they are (a slow download holds no connection or transaction)."""
    async with db.session() as s:
        results = await _results(s, round_id, may_see)

    async def comments() -> dict[tuple[str, str], list[str]]:
        async with db.session() as s:
            return await _comments(s, results)

    async for piece in _csv_chunks(results, comments, size):
        yield piece


async def _results(s: Any, round_id: str, may_see: Callable[[str], bool] | None) -> RoundResults:
    """The engine's results of a closed round, only the groups `may_see` allows."""
    info = await service.round_info(s, round_id)
    if info is None or not info.closed:
        raise ReportError(f"no closed round with id '{round_id}' (see: staffvoice report rounds)")
    results = await service.round_results(s, info)
    if may_see is not None:
        results = replace(results, groups={k: g for k, g in results.groups.items() if may_see(k)})
    return results


async def _comments(s: Any, results: RoundResults) -> dict[tuple[str, str], list[str]]:
    """(group, question) -> the comments shown, for every pair the engine shows comments of."""
    org = await org_of_round(s, results.round.id)
    comments: dict[tuple[str, str], list[str]] = {}
    wanted: dict[str, list[str]] = {}  # question -> the groups whose comments are shown
    for g in results.groups.values():
        for q in g.questions:
            if q.comments_shown:
                wanted.setdefault(q.question.id, []).append(g.key)
    for qid, keys in wanted.items():  # one read per question, not one per group
        for key, shown in (await comments_by_group(s, org, results.round, qid, keys,
                                                   limit=COMMENTS_MAX)).items():
            comments[(key, qid)] = [c.text for c in shown]
    return comments


async def _csv_chunks(results: RoundResults,
                      read_comments: Callable[[], Awaitable[dict[tuple[str, str], list[str]]]],
                      size: int) -> AsyncIterator[str]:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADER)
    comments: dict[tuple[str, str], list[str]] | None = None
    for g in results.groups.values():
        if comments is None and g.shown and any(q.comments_shown for q in g.questions):
            # The comments are read at once for every group (one read per question): first
            # send what is ready, so the download starts while they are read.
            yield _take(out)
            comments = await read_comments()
        _write_group(w, results.round.number, _group(g, comments or {}))
        if out.tell() >= size:
            yield _take(out)
    yield _take(out)


def _take(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


def as_data(results: RoundResults, comments: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    """Plain data for export: hidden groups and questions carry no numbers at all."""
    r = results.round
    return {
        "survey": r.survey_id, "survey_title": r.survey_title, "round_id": r.id,
        "round": r.number, "opened": r.opens_at.date().isoformat(),
        "min_group": results.thresholds.min_group, "min_comments": results.thresholds.min_comments,
        "groups": [_group(g, comments) for g in results.groups.values()],
    }


def _group(g: GroupResult, comments: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    if not g.shown:
        return {"group": g.key, "label": g.label, "shown": False, "note": NOT_ENOUGH}
    qs = []
    for q in g.questions:
        item: dict[str, Any] = {"question_id": q.question.id, "text": q.question.text,
                                "kind": q.question.kind, "shown": q.shown or q.comments_shown}
        if q.question.kind == "text":
            item["comments"] = comments.get((g.key, q.question.id), []) if q.comments_shown else []
        elif q.shown:
            item.update(n=q.n, distribution=dict(q.distribution), mean=q.mean,
                        favourable=q.favourable, enps=q.enps, yes=q.yes, score=q.score,
                        change=q.change)
        if not item["shown"]:
            item["note"] = NOT_ENOUGH
        qs.append(item)
    return {"group": g.key, "label": g.label, "shown": True, "invited": g.invited,
            "respondents": g.respondents, "response_rate": g.rate,
            "response_rate_change_pts": g.rate_change, "questions": qs}


def as_csv(data: dict[str, Any]) -> str:
    """One row per group, question and measure."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADER)
    for g in data["groups"]:
        _write_group(w, data["round"], g)
    return out.getvalue()


def _write_group(w: Any, rnd: int, g: dict[str, Any]) -> None:
    """A group's rows (as `_group` gives it) in the CSV."""
    head = [rnd, g["group"], spreadsheet.text(g["label"])]
    if not g["shown"]:
        w.writerow([*head, "", "", "note", NOT_ENOUGH])
        return
    for m in ("invited", "respondents", "response_rate", "response_rate_change_pts"):
        w.writerow([*head, "", "", m, _fmt(g[m])])
    for q in g["questions"]:
        qh = [*head, q["question_id"], spreadsheet.text(q["text"])]
        if "note" in q:
            w.writerow([*qh, "note", NOT_ENOUGH])
        for m in ("n", "mean", "favourable", "enps", "yes", "score", "change"):
            if q.get(m) is not None:
                w.writerow([*qh, m, _fmt(q[m])])
        for label, n in (q.get("distribution") or {}).items():
            w.writerow([*qh, f"answer {label}", n])
        w.writerows([*qh, "comment", spreadsheet.text(c)] for c in q.get("comments") or ())


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
