"""feedback: each day's counters, and each listing's waiting senders, as ONE sealed row (N40)

The daily feedback counters (`feedback_daily_counts`) and the waiting senders' marks
(`feedback_release_senders`) kept a row per person with their count: a dump without any key said how many people sent the
day's items and how many each. Each is now one row per day (per listing; the families pages' `family_rate` alike:
families_sealed_rate), every count sealed
under the server key and padded to a size class (bot/feedback/sealed.py).

The old rows are dropped, not converted, both ways: the day's counts restart at the upgrade
(each person may send the day's limit again that day), and the waiting
senders are counted from the next flush of each running process (a midday release may wait
for the day's last: the safe side).

Revision ID: sealed_counts
Revises: urgent9
Create Date: 2026-12-07 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'sealed_counts'
down_revision = 'urgent9'
branch_labels = None
depends_on = None


def _sealed(name: str, *key: sa.Column[object]) -> None:
    """A table of sealed rows: its key columns (the first the primary key), stamp, sealed."""
    op.create_table(name, *key,
                    sa.Column('stamp', sa.String(length=16), nullable=False),
                    sa.Column('sealed', sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint(key[0].name, name=op.f(f'pk_{name}')),
                    sqlite_with_rowid=False)


def _per_key(name: str) -> None:
    op.create_table(name,
                    sa.Column('key', sa.String(length=64), nullable=False),
                    sa.Column('day', sa.Date(), nullable=False),
                    sa.Column('count', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('key', name=op.f(f'pk_{name}')),
                    sqlite_with_rowid=False)
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f'ix_{name}_day'), ['day'], unique=False)


def upgrade() -> None:
    for name in ('feedback_daily_counts',):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{name}_day'))
        op.drop_table(name)
        _sealed(name, sa.Column('day', sa.Date(), nullable=False))
    op.drop_table('feedback_release_senders')
    _sealed('feedback_release_senders',
            sa.Column('listing', sa.String(length=16), nullable=False),
            sa.Column('gen', storage.base.UTCDateTime(timezone=True), nullable=False))


def downgrade() -> None:
    for name in ('feedback_daily_counts',):
        op.drop_table(name)
        _per_key(name)
    op.drop_table('feedback_release_senders')
    op.create_table('feedback_release_senders',
                    sa.Column('key', sa.String(length=64), nullable=False),
                    sa.Column('listing', sa.String(length=16), nullable=False),
                    sa.Column('gen', storage.base.UTCDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('key', name=op.f('pk_feedback_release_senders')),
                    sqlite_with_rowid=False)
