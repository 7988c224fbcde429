"""privacy: the notice rows keep no day (when a first message came points at feedback)

Revision ID: privacy_notices_undated
Revises: privacy
Create Date: 2026-12-06 15:00:00
"""
from __future__ import annotations

from alembic import op

revision = 'privacy_notices_undated'
down_revision = 'privacy'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('privacy_notices_shown') as batch:
        batch.drop_column('day')


def downgrade() -> None:
    import sqlalchemy as sa

    with op.batch_alter_table('privacy_notices_shown') as batch:
        # The day was never kept since: the day of the downgrade stands in for it.
        batch.add_column(sa.Column('day', sa.Date(), nullable=False,
                                   server_default=sa.func.current_date()))
