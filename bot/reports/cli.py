"""`staffvoice report ...`: a round's results as CSV or JSON, and trend charts, from the shell.

The command line sees every group, but only through the anonymity engine, like chat.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.reports import chart, service
from bot.reports.anonymity import NOT_ENOUGH
from bot.reports.results import GroupResult, RoundResults, comments_for, load_org
from storage.db import Database


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="staffvoice report", description="Pulse reports.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rounds", help="list closed rounds and their ids")
    rnd = sub.add_parser("round", help="a round's results for every group")
    rnd.add_argument("round_id")
    rnd.add_argument("--format", choices=("csv", "json"), default="json")
    rnd.add_argument("--out", help="write to this file instead of standard output")
    ch = sub.add_parser("chart", help="a question's trend as a PNG (and as text)")
    ch.add_argument("--survey", required=True)
    ch.add_argument("--question", required=True, help="question key or id")
    ch.add_argument("--group", default="all", help="all, a team id or name, or a role")
    ch.add_argument("--rounds", type=int, default=service.TREND_ROUNDS)
    ch.add_argument("--out", required=True, help="PNG file to write")
    return ap


def cli(settings: Settings, argv: list[str]) -> int:
    """Entry point used by `staffvoice report`."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(settings, args))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class ReportError(Exception):
    """A problem the person at the shell can fix."""


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            if args.cmd == "rounds":
                return await _rounds(s)
            if args.cmd == "round":
                text = await export_round(s, args.round_id, args.format)
                _write(text, args.out)
                return 0
            return await _chart(s, args)
    finally:
        await db.dispose()


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)


async def _rounds(s: Any) -> int:
    from bot.pulse import service as pulse

    for survey in await pulse.surveys(s, include_inactive=True):
        for r in await service.closed_rounds(s, survey.id):
            print(f"{r.id}  {survey.id}  {r.label}")
    return 0


async def export_round(s: Any, round_id: str, fmt: str) -> str:
    """A closed round's results for every group, as CSV or JSON text."""
    info = await service.round_info(s, round_id)
    if info is None or not info.closed:
        raise ReportError(f"no closed round with id '{round_id}' (see: staffvoice report rounds)")
    results = await service.round_results(s, info)
    org, _ = await load_org(s)
    comments: dict[tuple[str, str], list[str]] = {}
    for g in results.groups.values():
        for q in g.questions:
            if q.comments_shown:
                shown = await comments_for(s, org, info, q.question.id, g.key, limit=10_000)
                comments[(g.key, q.question.id)] = [c.text for c in shown]
    data = as_data(results, comments)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else as_csv(data)


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
    w.writerow(["round", "group", "label", "question_id", "question", "measure", "value"])
    rnd = data["round"]
    for g in data["groups"]:
        head = [rnd, g["group"], g["label"]]
        if not g["shown"]:
            w.writerow([*head, "", "", "note", NOT_ENOUGH])
            continue
        for m in ("invited", "respondents", "response_rate", "response_rate_change_pts"):
            w.writerow([*head, "", "", m, _fmt(g[m])])
        for q in g["questions"]:
            qh = [*head, q["question_id"], q["text"]]
            if "note" in q:
                w.writerow([*qh, "note", NOT_ENOUGH])
            for m in ("n", "mean", "favourable", "enps", "yes", "score", "change"):
                if q.get(m) is not None:
                    w.writerow([*qh, m, _fmt(q[m])])
            for label, n in (q.get("distribution") or {}).items():
                w.writerow([*qh, f"answer {label}", n])
            for c in q.get("comments") or []:
                w.writerow([*qh, "comment", c])
    return out.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


async def _chart(s: Any, args: argparse.Namespace) -> int:
    qid = await _question_id(s, args.survey, args.question)
    key = await service.resolve_group(s, args.group)
    if key is None:
        raise ReportError(f"'{args.group}' is not a team or role")
    trend = await service.trend(s, args.survey, qid, key, last=max(1, args.rounds))
    Path(args.out).write_bytes(chart.render_png(trend))
    print(chart.describe(trend))
    print(f"wrote {args.out}")
    return 0


async def _question_id(s: Any, survey_id: str, question: str) -> str:
    from bot.pulse import service as pulse

    if await pulse.survey_by_id(s, survey_id) is None:
        raise ReportError(f"no survey '{survey_id}'")
    for q in await pulse.questions_of(s, survey_id, include_inactive=True):
        if question in (q.id, q.key):
            return q.id
    raise ReportError(f"survey '{survey_id}' has no question '{question}'")
