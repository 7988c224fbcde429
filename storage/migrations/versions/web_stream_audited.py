"""web: when a session's following of a live stream was last audited (shared by replicas)

Revision ID: web_stream_audited
Revises: web_sessions
Create Date: 2026-12-06 14:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'web_stream_audited'
down_revision = 'web_sessions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stream_audited_at', storage.base.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_column('stream_audited_at')
