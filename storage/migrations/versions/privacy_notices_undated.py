"""privacy: the notice rows keep no day (when a first message came points at feedback), and on
SQLite no rowid (rows stored in key order, not in the order accounts were told)

Revision ID: privacy_notices_undated
Revises: privacy
Create Date: 2026-12-06 15:00:00

Upgrading: stop every replica of the old version before the first new one starts (the old
code reads and writes `day`); docs/deploy.md, "Upgrading".
"""
from __future__ import annotations

from alembic import op

revision = 'privacy_notices_undated'
down_revision = 'privacy'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # recreate="always": on SQLite the table is built anew without a rowid; on PostgreSQL the
    # copy also lays the rows down afresh, in key order, away from the order they came in.
    with op.batch_alter_table('privacy_notices_shown', recreate='always',
                              table_kwargs={'sqlite_with_rowid': False}) as batch:
        batch.drop_column('day')


def downgrade() -> None:
    import sqlalchemy as sa

    with op.batch_alter_table('privacy_notices_shown', recreate='always') as batch:
        # The day was never kept since; a constant stands in for it (SQLite refuses to add a
        # column whose default is not a constant).
        batch.add_column(sa.Column('day', sa.Date(), nullable=False,
                                   server_default=sa.text("'1970-01-01'")))
