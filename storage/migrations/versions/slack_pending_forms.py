"""slack: forms offered by button live in the database, not in one process's memory

Revision ID: slack_pending_forms
Revises: slack
Create Date: 2026-12-02 01:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'slack_pending_forms'
down_revision = 'slack'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('slack_pending_forms',
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('view_sealed', sa.Text(), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_slack_pending_forms'))
    )
    with op.batch_alter_table('slack_pending_forms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slack_pending_forms_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('slack_pending_forms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slack_pending_forms_expires_at'))
    op.drop_table('slack_pending_forms')
