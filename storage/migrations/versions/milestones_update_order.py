"""milestone updates: an index for each milestone's newest update

The roadmap read ("status", "what's at risk?") asks every milestone for its newest update;
with (milestone_id, at) that is one index probe per milestone however many updates pile up.

Revision ID: milestones_update_order
Revises: milestones
Create Date: 2026-11-27 09:20:00
"""
from __future__ import annotations

from alembic import op

revision = 'milestones_update_order'
down_revision = 'milestones'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_milestone_updates_milestone_at', 'milestone_updates',
                    ['milestone_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_milestone_updates_milestone_at', table_name='milestone_updates')
