"""families: the day's per-address counts as ONE sealed row (N40)

`family_rate` kept a row per network address with its count: a dump without any key said
how many addresses sent the day's public items and how many each. It is now one row per day,
every count sealed under the server key and padded to a size class (bot/feedback/sealed.py),
as the staff counters (feedback_sealed_counts).

The old rows are dropped, not converted, both ways: the day's counts restart at the upgrade
(each address may send the day's limit again that day).

Revision ID: families_sealed_rate
Revises: families
Create Date: 2026-12-07 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'families_sealed_rate'
down_revision = 'families'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('family_rate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_family_rate_day'))
    op.drop_table('family_rate')
    op.create_table('family_rate',
                    sa.Column('day', sa.Date(), nullable=False),
                    sa.Column('stamp', sa.String(length=16), nullable=False),
                    sa.Column('sealed', sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint('day', name=op.f('pk_family_rate')),
                    sqlite_with_rowid=False)


def downgrade() -> None:
    op.drop_table('family_rate')
    op.create_table('family_rate',
                    sa.Column('key', sa.String(length=64), nullable=False),
                    sa.Column('day', sa.Date(), nullable=False),
                    sa.Column('count', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('key', name=op.f('pk_family_rate')),
                    sqlite_with_rowid=False)
    with op.batch_alter_table('family_rate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_rate_day'), ['day'], unique=False)
