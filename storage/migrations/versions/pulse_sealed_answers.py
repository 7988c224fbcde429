"""pulse: answers sealed while a round is open, counts per reporting cell once it closes

Replaces `pulse_answers` (one row per answer, with team and role) by:
`pulse_round_keys` and `pulse_pending` (sealed answers of open rounds), `pulse_cells`,
`pulse_tallies` and `pulse_comments` (what a closed round keeps), and
`pulse_attributed_answers` (attributed surveys only).

Existing answers are folded into counts per the (team, role) they were stored with; their rows,
and the participation of closed rounds, are deleted. A round open during the upgrade keeps its
earlier answers as counts and collects new ones sealed; upgrade between rounds where possible.

Revision ID: pulse_sealed
Revises: reports
Create Date: 2026-12-02 01:20:00
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = 'pulse_sealed'
down_revision = 'reports'  # drops the read indexes reports made on pulse_answers
branch_labels = None
depends_on = None


def _id() -> str:
    return secrets.token_hex(12)


def upgrade() -> None:
    with op.batch_alter_table('pulse_rounds') as b:
        for name in ('n_asked', 'n_invited', 'n_finished', 'n_respondents'):
            b.add_column(sa.Column(name, sa.Integer(), nullable=True))
    with op.batch_alter_table('pulse_participation') as b:
        b.add_column(sa.Column('cell_team', sa.String(length=64), nullable=True))
        b.add_column(sa.Column('cell_role', sa.String(length=32), nullable=False,
                               server_default='*'))
    op.create_table('pulse_round_keys',
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_round_keys_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', name=op.f('pk_pulse_round_keys'))
    )
    op.create_table('pulse_pending',
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('response_key', sa.String(length=64), nullable=False),
    sa.Column('question_id', sa.String(length=32), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_pending_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'response_key', 'question_id', name=op.f('pk_pulse_pending')),
    sqlite_with_rowid=False
    )
    op.create_table('pulse_cells',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('invited', sa.Integer(), nullable=False),
    sa.Column('respondents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_cells_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pulse_cells'))
    )
    op.create_index(op.f('ix_pulse_cells_round_id'), 'pulse_cells', ['round_id'], unique=False)
    op.create_table('pulse_tallies',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('question_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('choice', sa.String(length=200), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_tallies_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pulse_tallies'))
    )
    op.create_index(op.f('ix_pulse_tallies_round_id'), 'pulse_tallies', ['round_id'], unique=False)
    op.create_table('pulse_comments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('question_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_comments_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pulse_comments')),
    sqlite_with_rowid=False
    )
    op.create_index(op.f('ix_pulse_comments_round_id'), 'pulse_comments', ['round_id'], unique=False)
    op.create_table('pulse_attributed_answers',
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('question_id', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('choice', sa.String(length=200), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_pulse_attributed_answers_person_id_people'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['pulse_rounds.id'], name=op.f('fk_pulse_attributed_answers_round_id_pulse_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'person_id', 'question_id', name=op.f('pk_pulse_attributed_answers'))
    )
    _fold_existing_answers()
    op.drop_index('ix_pulse_answers_report_values', table_name='pulse_answers')
    op.drop_index('ix_pulse_answers_report_respondents', table_name='pulse_answers')
    op.drop_table('pulse_attributions')
    op.drop_table('pulse_answers')


def _fold_existing_answers() -> None:
    """Answers stored one per row become counts per (team, role); comments keep their team."""
    conn = op.get_bind()
    cells = conn.execute(sa.text(
        "SELECT round_id, team_id, role, COUNT(DISTINCT response_key) FROM pulse_answers"
        " GROUP BY round_id, team_id, role")).all()
    invited = conn.execute(sa.text(
        "SELECT round_id, team_id, COUNT(*) FROM pulse_participation"
        " GROUP BY round_id, team_id")).all()
    asked = {(r, t): int(n) for r, t, n in invited}
    rows = []
    for r, t, role, n in cells:
        rows.append({"id": _id(), "round_id": r, "team_id": t, "role": role,
                     "invited": max(int(n), asked.pop((r, t), 0)), "respondents": int(n)})
    rows += [{"id": _id(), "round_id": r, "team_id": t, "role": "*", "invited": n,
              "respondents": 0} for (r, t), n in asked.items()]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO pulse_cells (id, round_id, team_id, role, invited, respondents)"
            " VALUES (:id, :round_id, :team_id, :role, :invited, :respondents)"), rows)
    tallies = conn.execute(sa.text(
        "SELECT round_id, question_id, team_id, role, value, choice, COUNT(*) FROM pulse_answers"
        " WHERE text IS NULL GROUP BY round_id, question_id, team_id, role, value, choice")).all()
    if tallies:
        conn.execute(sa.text(
            "INSERT INTO pulse_tallies (id, round_id, question_id, team_id, role, value, choice, n)"
            " VALUES (:id, :r, :q, :t, :role, :v, :c, :n)"),
            [{"id": _id(), "r": r, "q": q, "t": t, "role": role, "v": v, "c": c, "n": n}
             for r, q, t, role, v, c, n in tallies])
    commenters = conn.execute(sa.text(
        "SELECT round_id, question_id, team_id, COUNT(*) FROM pulse_answers"
        " WHERE text IS NOT NULL AND TRIM(text) <> '' GROUP BY round_id, question_id, team_id")).all()
    if commenters:
        conn.execute(sa.text(
            "INSERT INTO pulse_tallies (id, round_id, question_id, team_id, role, value, choice, n)"
            " VALUES (:id, :r, :q, :t, '*', NULL, NULL, :n)"),
            [{"id": _id(), "r": r, "q": q, "t": t, "n": n} for r, q, t, n in commenters])
    comments = conn.execute(sa.text(
        "SELECT round_id, question_id, team_id, text FROM pulse_answers"
        " WHERE text IS NOT NULL AND TRIM(text) <> ''")).all()
    if comments:
        conn.execute(sa.text(
            "INSERT INTO pulse_comments (id, round_id, question_id, team_id, text)"
            " VALUES (:id, :r, :q, :t, :x)"),
            [{"id": _id(), "r": r, "q": q, "t": t, "x": x} for r, q, t, x in comments])
    conn.execute(sa.text(
        "UPDATE pulse_rounds SET"
        " n_asked = (SELECT COUNT(*) FROM pulse_participation p WHERE p.round_id = pulse_rounds.id),"
        " n_invited = (SELECT COUNT(invited_at) FROM pulse_participation p"
        "              WHERE p.round_id = pulse_rounds.id),"
        " n_finished = (SELECT COUNT(*) FROM pulse_completions c WHERE c.round_id = pulse_rounds.id),"
        " n_respondents = (SELECT COUNT(DISTINCT response_key) FROM pulse_answers a"
        "                  WHERE a.round_id = pulse_rounds.id)"
        " WHERE state = 'closed'"))
    for table in ("pulse_completions", "pulse_participation"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE round_id IN"
                             " (SELECT id FROM pulse_rounds WHERE state = 'closed')"))


def downgrade() -> None:
    raise RuntimeError("pulse_sealed cannot be undone: per-answer rows no longer exist")
