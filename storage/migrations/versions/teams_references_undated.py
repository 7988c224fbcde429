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
    import json

    import sqlalchemy as sa

    for table in ('teams_conversations', 'teams_members'):
        with op.batch_alter_table(table) as batch:
            batch.alter_column('updated_at', existing_type=storage.base.UTCDateTime(timezone=True),
                               nullable=True)
    # Rows stored before: as the flusher now writes them. A personal chat's reference and a
    # member row undated (their day was often a first message's); a channel's or group
    # chat's reference without who last wrote there.
    op.execute(sa.text("UPDATE teams_conversations SET updated_at = NULL WHERE user_id IS NOT NULL"))
    op.execute(sa.text("UPDATE teams_members SET updated_at = NULL"))
    bind = op.get_bind()
    shared = bind.execute(sa.text(
        "SELECT conversation_id, reference FROM teams_conversations WHERE user_id IS NULL")).all()
    for cid, reference in shared:
        ref = json.loads(reference) if isinstance(reference, str) else dict(reference or {})
        if ref.get("user"):
            ref["user"] = {}
            bind.execute(sa.text("UPDATE teams_conversations SET reference = :r "
                                 "WHERE conversation_id = :c"), {"r": json.dumps(ref), "c": cid})


def downgrade() -> None:
    import sqlalchemy as sa

    for table in ('teams_conversations', 'teams_members'):
        # Undated rows take a constant day (their day was never kept).
        op.execute(sa.text(f"UPDATE {table} SET updated_at = '1970-01-01 00:00:00+00:00' "
                           "WHERE updated_at IS NULL"))
        with op.batch_alter_table(table) as batch:
            batch.alter_column('updated_at', existing_type=storage.base.UTCDateTime(timezone=True),
                               nullable=False)
