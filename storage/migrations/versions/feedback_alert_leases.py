"""feedback: safeguarding alerts are claimed with a lease, not a row lock held across sends

Revision ID: feedback_alert_leases
Revises: feedback_day_keys
Create Date: 2026-12-02 01:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'feedback_alert_leases'
down_revision = 'feedback_day_keys'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('feedback_alerts') as b:
        b.add_column(sa.Column('lease_until', storage.base.UTCDateTime(timezone=True),
                               nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('feedback_alerts') as b:
        b.drop_column('lease_until')
