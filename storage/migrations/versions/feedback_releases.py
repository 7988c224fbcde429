"""feedback: items and authors' answers readable from a release moment (docs/invariants.md N22)

Revision ID: feedback_releases
Revises: feedback_sources
Create Date: 2026-12-06 18:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'feedback_releases'
down_revision = 'feedback_sources'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feedback_releases',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('moment', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_feedback_releases'))
    )
    # In place (recreate='never'; SQLite adds a column with a constant default itself): a
    # batch that copies the table drops the old one, and with foreign keys on, as the app
    # migrates, ON DELETE CASCADE emptied every thread, reply route and alert, on the way up
    # and down (tests/test_migrations.py).
    for table in ('feedback_items', 'feedback_messages'):
        with op.batch_alter_table(table, schema=None, recreate='never') as batch_op:
            batch_op.add_column(sa.Column('released', sa.Boolean(), server_default=sa.false(),
                                          nullable=False))
        # What was stored before releases existed was readable already.
        op.execute(sa.text(f"UPDATE {table} SET released = :yes").bindparams(yes=True))


def downgrade() -> None:
    for table in ('feedback_messages', 'feedback_items'):
        with op.batch_alter_table(table, schema=None, recreate='never') as batch_op:
            batch_op.drop_column('released')
    op.drop_table('feedback_releases')
