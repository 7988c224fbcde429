"""feedback: a release other than the day's last needs two people waiting, not two things (N25)

Revision ID: feedback_release_senders
Revises: feedback_releases
Create Date: 2026-12-06 23:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'feedback_release_senders'
down_revision = 'feedback_releases'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feedback_release_senders',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('listing', sa.String(length=16), nullable=False),
    sa.Column('gen', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_feedback_release_senders')),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('feedback_release_senders')
