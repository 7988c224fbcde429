"""milestones: who is still to be told that a milestone went stale

A stale notice goes to the team lead, else to every member of the change team. When a
platform refused the app part-way (uninstalled, token revoked), the whole notice was sent
again on the next tick, so those already told got it twice; the people still to be told are
kept instead, as early-win offers keep theirs (`offer_to`).

Revision ID: milestones_stale_tell
Revises: milestones_update_order
Create Date: 2026-12-06 23:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'milestones_stale_tell'
down_revision = 'milestones_update_order'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('milestones') as batch:
        batch.add_column(sa.Column('stale_tell', sa.JSON(), nullable=True))


def downgrade() -> None:
    # In place (recreate='never', SQLite 3.35+ drops a plain column itself): a batch that
    # copies the table drops the old one, and with foreign keys on, as the app migrates,
    # ON DELETE CASCADE emptied every owner, check-in and update (tests/test_migrations.py).
    with op.batch_alter_table('milestones', recreate='never') as batch:
        batch.drop_column('stale_tell')
