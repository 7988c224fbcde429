"""A closed round's counts summed per group of cells, so a report reads a few rows per round.

Written at close, in the same transaction as the cells and tallies they are summed from
(`pulse_summaries`). One row per question, and one (question id "") for the people:

- people: the round's reporting cells, as columns: `{"teams": [...], "roles": [...],
  "invited": [...], "respondents": [...]}` (cell i is (teams[i], roles[i])), and the team tree
  as it was at close, `"parents": [[team, parent], ...]`: reports add the per-team sums up
  this tree, never a later one, so a reorganisation cannot show a group's figures twice with
  a small team in one version and not in the other; and the anonymity thresholds at close,
  `"min_group"` and `"min_comments"`: reports never show the round under a lower one, and under
  a higher one only groups shown under these, so two views under two thresholds cannot be
  combined (each alone safe, together they could be subtracted);
- a rated or choice question: `{"answered": [...], "teams": [[team, {answer: n}], ...],
  "roles": [[role, {answer: n}], ...], "all": {answer: n}}`: how many answered in each of the
  people row's cells (same order), and the answers per reporting team with its roles together,
  per kept role with its teams together and for everyone (an answer is the value or the
  choice, as text);
- a comment question: `{"teams": [...], "commented": [...]}`, per comment team.

Columns rather than one list per cell: a report reads every cell of every round it shows,
and flat lists are what JSON reads fastest.

Every figure is a sum of whole reporting cells, each shared by at least k people asked
(bot/pulse/cells.py), so no combination of them narrows an answer below k: a database reader
learns nothing here that `pulse_tallies` and `pulse_cells` do not already say. Which of these
sums a viewer may see is still decided by the reports' anonymity engine, from the cells.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bot.pulse.cells import MIXED, Cell

PEOPLE = ""  # the question id of the people's row


def _order(key: tuple[str | None, str]) -> tuple[str, str]:
    return (key[0] or "", key[1])


def summarise(
    cells: Mapping[Cell, tuple[int, int]],
    answers: Iterable[tuple[str, Cell, str, int]],
    commenters: Iterable[tuple[str, str | None, int]],
    parents: Mapping[str, str | None] | None = None,
    thresholds: tuple[int, int] | None = None,
) -> dict[str, str]:
    """Question id ("" for the people) -> the JSON kept for it.

    `cells`: (invited, respondents) per cell; `answers`: (question id, cell, answer, how many);
    `commenters`: (question id, comment team, how many commented); `parents`: the team tree
    at close (team -> parent); `thresholds`: (min_group, min_comments) at close.
    """
    answered: dict[str, dict[Cell, int]] = {}
    teams: dict[str, dict[str | None, dict[str, int]]] = {}
    roles: dict[str, dict[str, dict[str, int]]] = {}
    whole: dict[str, dict[str, int]] = {}
    for qid, cell, answer, n in answers:
        if n <= 0:
            continue
        team, role = cell
        per_cell = answered.setdefault(qid, {})
        per_cell[cell] = per_cell.get(cell, 0) + n
        d = teams.setdefault(qid, {}).setdefault(team, {})
        d[answer] = d.get(answer, 0) + n
        if role != MIXED:
            d = roles.setdefault(qid, {}).setdefault(role, {})
            d[answer] = d.get(answer, 0) + n
        d = whole.setdefault(qid, {})
        d[answer] = d.get(answer, 0) + n
    # Every cell anyone was asked or answered in (an answer outside them cannot happen).
    cells = {**{c: (0, 0) for per_cell in answered.values() for c in per_cell}, **cells}
    order = sorted(cells, key=_order)
    out: dict[str, Any] = {PEOPLE: {
        "teams": [t for t, _r in order], "roles": [r for _t, r in order],
        "invited": [cells[c][0] for c in order], "respondents": [cells[c][1] for c in order]}}
    if parents is not None:
        out[PEOPLE]["parents"] = [[t, p] for t, p in sorted(parents.items())]
    if thresholds is not None:
        out[PEOPLE]["min_group"], out[PEOPLE]["min_comments"] = thresholds
    for qid, per_cell in answered.items():
        out[qid] = {
            "answered": [per_cell.get(c, 0) for c in order],
            "teams": [[t, dict(sorted(d.items()))]
                      for t, d in sorted(teams[qid].items(), key=lambda x: x[0] or "")],
            "roles": [[r, dict(sorted(d.items()))] for r, d in sorted(roles.get(qid, {}).items())],
            "all": dict(sorted(whole[qid].items())),
        }
    said: dict[str, dict[str | None, int]] = {}
    for qid, team, n in commenters:
        if n > 0:
            said.setdefault(qid, {})[team] = said.setdefault(qid, {}).get(team, 0) + n
    for qid, per_team in said.items():
        kept = sorted(per_team.items(), key=lambda x: x[0] or "")
        out[qid] = {"teams": [t for t, _n in kept], "commented": [n for _t, n in kept]}
    return {qid: json.dumps(v, separators=(",", ":")) for qid, v in out.items()}


THRESHOLDS_KEPT = '"min_group"'  # in a people row's JSON once its thresholds are kept


def keep(people: str, thresholds: tuple[int, int], parents: Mapping[str, str | None]) -> str:
    """A people row's JSON with the thresholds added, and the team tree where it has none (a
    round summed before they were kept)."""
    value = json.loads(people)
    value["min_group"], value["min_comments"] = thresholds
    if "parents" not in value:
        value["parents"] = [[t, p] for t, p in sorted(parents.items())]
    return json.dumps(value, separators=(",", ":"))


def rows(round_id: str, summary: Mapping[str, str]) -> list[dict[str, str]]:
    """`pulse_summaries` rows of a round."""
    return [{"round_id": round_id, "question_id": q, "counts": c} for q, c in summary.items()]
