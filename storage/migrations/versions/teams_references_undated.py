"""teams: a personal chat's reference and a sender's member row may be undated (the flusher
writes them apart from the message that brought them, N21)

Revision ID: teams_undated
Revises: teams
Create Date: 2026-12-06 18:00:00
"""
from __future__ import annotations

from alembic import op

import storage.base

revision = 'teams_undated'
down_revision = 'teams'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('teams_conversations', 'teams_members'):
        with op.batch_alter_table(table) as batch:
            batch.alter_column('updated_at', existing_type=storage.base.UTCDateTime(timezone=True),
                               nullable=True)


def downgrade() -> None:
    import sqlalchemy as sa

    for table in ('teams_conversations', 'teams_members'):
        # Undated rows take a constant day (their day was never kept).
        op.execute(sa.text(f"UPDATE {table} SET updated_at = '1970-01-01 00:00:00+00:00' "
                           "WHERE updated_at IS NULL"))
        with op.batch_alter_table(table) as batch:
            batch.alter_column('updated_at', existing_type=storage.base.UTCDateTime(timezone=True),
                               nullable=False)
