"""feedback: the day's own secret for the daily counters, destroyed with them

Revision ID: feedback_day_keys
Revises: feedback
Create Date: 2026-12-02 00:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'feedback_day_keys'
down_revision = 'feedback'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feedback_day_keys',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_feedback_day_keys'))
    )
    # Counters kept under the server key alone are not readable under day keys: start afresh.
    op.execute("DELETE FROM feedback_daily_counts")


def downgrade() -> None:
    op.drop_table('feedback_day_keys')
