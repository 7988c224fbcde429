"""feedback: where an item came from (staff, or the families and young people pages)

Revision ID: feedback_sources
Revises: feedback_day_keys
Create Date: 2026-12-06 04:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'feedback_sources'
down_revision = 'feedback_day_keys'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('feedback_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='staff',
                                      nullable=False))
        batch_op.create_index(batch_op.f('ix_feedback_items_source'), ['source'], unique=False)


def downgrade() -> None:
    # In place (recreate='never', SQLite 3.35+ drops a plain column itself): a batch that
    # copies the table drops the old one, and with foreign keys on, as the app migrates,
    # ON DELETE CASCADE emptied every thread, reply route, alert and families' answer
    # (tests/test_migrations.py).
    with op.batch_alter_table('feedback_items', schema=None, recreate='never') as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_items_source'))
        batch_op.drop_column('source')
