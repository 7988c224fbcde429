"""pulse: closed rounds' counts summed per group of cells (pulse_summaries), for reports

One row per (round, question), and one per round for the people (question id ""), holding JSON
in the shape bot/pulse/summary.py writes at close. Closed rounds are summed here from their
`pulse_cells` and `pulse_tallies` (self-contained, like every migration: the same sums, written
without importing the feature).

Revision ID: pulse_summaries
Revises: pulse_sealed
Create Date: 2026-12-06 08:00:00
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = 'pulse_summaries'
down_revision = 'pulse_sealed'
branch_labels = None
depends_on = None

MIXED = '*'


def upgrade() -> None:
    op.create_table('pulse_summaries',
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('question_id', sa.String(length=32), nullable=False),
    sa.Column('counts', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_summaries_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'question_id', name=op.f('pk_pulse_summaries'))
    )
    _sum_closed_rounds()


def _key(x: Any) -> str:
    return x or ''


def _sum_closed_rounds() -> None:
    conn = op.get_bind()
    rounds = [r for (r,) in conn.execute(sa.text(
        "SELECT id FROM pulse_rounds WHERE state = 'closed'"))]
    kinds: dict[str, str] = dict(conn.execute(sa.text("SELECT id, kind FROM pulse_questions")).all())
    for rid in rounds:
        cells: dict[tuple[Any, str], list[int]] = {}
        for t, r, inv, resp in conn.execute(sa.text(
                "SELECT team_id, role, invited, respondents FROM pulse_cells WHERE round_id = :r"),
                {"r": rid}):
            c = cells.setdefault((t, r), [0, 0])  # a round open during an upgrade has two rows
            c[0] += int(inv)
            c[1] += int(resp)
        per_q: dict[str, dict[str, dict[Any, Any]]] = {}
        said: dict[str, dict[Any, int]] = {}
        for qid, t, r, v, c, n in conn.execute(sa.text(
                "SELECT question_id, team_id, role, value, choice, n FROM pulse_tallies"
                " WHERE round_id = :r"), {"r": rid}):
            n = int(n)
            if kinds.get(qid) == 'text':
                if v is None and c is None and r == MIXED:
                    said.setdefault(qid, {})[t] = said.setdefault(qid, {}).get(t, 0) + n
                continue
            if (v is None and c is None) or n <= 0:
                continue
            answer = str(c if c is not None else v)
            q = per_q.setdefault(qid, {"cells": {}, "teams": {}, "roles": {}, "all": {}})
            q["cells"][(t, r)] = q["cells"].get((t, r), 0) + n
            for part, key in (("teams", t), ("roles", r), ("all", None)):
                if part == "roles" and r == MIXED:
                    continue
                d = q[part].setdefault(key, {})
                d[answer] = d.get(answer, 0) + n
        for q in per_q.values():
            for c in q["cells"]:
                cells.setdefault(c, [0, 0])
        order = sorted(cells, key=lambda c: (_key(c[0]), c[1]))
        out: dict[str, Any] = {'': {
            "teams": [t for t, _r in order], "roles": [r for _t, r in order],
            "invited": [cells[c][0] for c in order], "respondents": [cells[c][1] for c in order]}}
        for qid, q in per_q.items():
            out[qid] = {
                "answered": [q["cells"].get(c, 0) for c in order],
                "teams": [[t, dict(sorted(d.items()))] for t, d in sorted(q["teams"].items(), key=lambda x: _key(x[0]))],
                "roles": [[r, dict(sorted(d.items()))] for r, d in sorted(q["roles"].items())],
                "all": dict(sorted(q["all"][None].items())),
            }
        for qid, per_team in said.items():
            kept = sorted(per_team.items(), key=lambda x: _key(x[0]))
            out[qid] = {"teams": [t for t, _n in kept], "commented": [n for _t, n in kept]}
        conn.execute(sa.text(
            "INSERT INTO pulse_summaries (round_id, question_id, counts) VALUES (:r, :q, :c)"),
            [{"r": rid, "q": q, "c": json.dumps(v, separators=(",", ":"))} for q, v in out.items()])


def downgrade() -> None:
    op.drop_table('pulse_summaries')
