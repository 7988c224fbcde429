"""people sources: where each person and team comes from, leavers, fixed-term end dates, runs

People and teams may now come from an HR file import or a directory sync as well as the
programme file; a leaver keeps their row with the day they left.

Revision ID: people_sources
Revises: core
Create Date: 2026-12-02 00:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'people_sources'
down_revision = 'core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('people', sa.Column('source', sa.String(length=16), nullable=True))
    op.add_column('people', sa.Column('left_on', sa.Date(), nullable=True))
    op.add_column('people', sa.Column('ends_on', sa.Date(), nullable=True))
    op.add_column('teams', sa.Column('source', sa.String(length=16), nullable=True))
    op.execute("UPDATE people SET source = 'programme' WHERE from_programme")
    op.create_table('people_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_people_runs'))
    )
    op.create_index(op.f('ix_people_runs_at'), 'people_runs', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_people_runs_at'), table_name='people_runs')
    op.drop_table('people_runs')
    # In place (recreate='never', SQLite 3.35+ drops a plain column itself): a batch that
    # copies the table drops the old one, and with foreign keys on, as the app migrates,
    # dropping `teams` failed (people point at it) and dropping `people` would cascade to
    # every row that points at a person (tests/test_migrations.py).
    with op.batch_alter_table('teams', recreate='never') as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('people', recreate='never') as batch_op:
        batch_op.drop_column('ends_on')
        batch_op.drop_column('left_on')
        batch_op.drop_column('source')
