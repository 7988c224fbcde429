"""Fictional organisations and closed pulse rounds for the benches, stored as a round's close
stores them (bot/pulse/service.close_round): counts per reporting cell (`pulse_cells`,
`pulse_tallies`), comments under a comment team, and the per-group sums reports read
(`pulse_summaries`, built by the pulse feature's own bot/pulse/summary.py).

Used by bench/report_speed.py and bench/dashboard.py; rows come back as dicts per table, so
either bench writes them its own way (sqlite3 or SQLAlchemy Core).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.pulse import cells as cellmod
from bot.pulse import summary
from storage.base import new_id

Cell = tuple[str | None, str]
Rows = dict[str, list[dict[str, Any]]]
COMMENT = "A fictional comment."


def team_tree(teams: int, min_areas: int = 1) -> list[tuple[str, str, str | None]]:
    """(id, name, parent) of a council, its areas (one per 20 teams) and teams under them."""
    areas = max(min_areas, teams // 20)
    rows: list[tuple[str, str, str | None]] = [("council", "Council", None)]
    rows += [(f"area-{a}", f"Area {a}", "council") for a in range(areas - 1)]
    rows += [(f"team-{t}", f"Team {t}", f"area-{t % (areas - 1)}" if areas > 1 else "council")
             for t in range(teams - areas)]
    return rows


def leaf_teams(tree: Sequence[tuple[str, str, str | None]], min_areas: int = 1) -> list[str]:
    areas = max(min_areas, len(tree) // 20)
    return [t for t, _, _ in tree[areas:]] or [t for t, _, _ in tree]


def answer(rng: random.Random, kind: str) -> int:
    """A fictional answer to a rated question."""
    low, high = {"likert5": (1, 5), "enps": (0, 10), "yesno": (0, 1)}[kind]
    return rng.randint(low, high)


def round_row(rid: str, number: int, opens: datetime, question_ids: Sequence[str], *,
              invited: int, respondents: int) -> dict[str, Any]:
    """A closed `pulse_rounds` row of the survey "bench", with the totals its close keeps."""
    return {"id": rid, "survey_id": "bench", "number": number, "opens_at": opens,
            "remind_at": opens + timedelta(days=2), "closes_at": opens + timedelta(days=4),
            "state": "closed", "anonymity": "anonymous", "question_ids": list(question_ids),
            "n_asked": invited, "n_invited": invited, "n_finished": respondents,
            "n_respondents": respondents}


def cells_of(people: Sequence[tuple[str, str | None, str]], parents: Mapping[str, str | None],
             k: int = 5) -> dict[str, Cell]:
    """person id -> reporting cell, as a round's opening decides: (id, team, main role)."""
    return cellmod.assign(people, parents, k)


def closed_round(rng: random.Random, rid: str, where: Mapping[str, Cell], respondents: Sequence[str],
                 questions: Sequence[tuple[str, str]], parents: Mapping[str, str | None],
                 k_comments: int = 10) -> Rows:
    """The rows a round's close leaves when `respondents` (of everyone in `where`) each answer
    every question (id, kind) with random values and a comment to each comment question."""
    invited = Counter(where.values())
    answered = Counter(where[pid] for pid in respondents)
    tallies: Counter[tuple[str, Cell, int]] = Counter()
    comments: list[tuple[str, str | None]] = []
    for pid in respondents:
        cell = where[pid]
        for qid, kind in questions:
            if kind == "text":
                comments.append((qid, cell[0]))
            else:
                tallies[(qid, cell, answer(rng, kind))] += 1
    home = cellmod.comment_teams(invited, parents, k_comments)
    commenters = Counter((q, home.get(t, t)) for q, t in comments)
    rng.shuffle(comments)
    kept = summary.summarise({c: (n, answered.get(c, 0)) for c, n in invited.items()},
                             ((q, c, str(v), n) for (q, c, v), n in tallies.items()),
                             ((q, t, n) for (q, t), n in commenters.items()))
    return {
        "pulse_cells": [{"id": new_id(), "round_id": rid, "team_id": t, "role": r, "invited": n,
                         "respondents": answered.get((t, r), 0)} for (t, r), n in invited.items()],
        "pulse_tallies": [{"id": new_id(), "round_id": rid, "question_id": q, "team_id": t,
                           "role": r, "value": v, "choice": None, "n": n}
                          for (q, (t, r), v), n in tallies.items()]
        + [{"id": new_id(), "round_id": rid, "question_id": q, "team_id": t, "role": cellmod.MIXED,
            "value": None, "choice": None, "n": n} for (q, t), n in commenters.items()],
        "pulse_comments": [{"id": new_id(), "round_id": rid, "question_id": q,
                            "team_id": home.get(t, t), "text": COMMENT} for q, t in comments],
        "pulse_summaries": summary.rows(rid, kept),
    }
