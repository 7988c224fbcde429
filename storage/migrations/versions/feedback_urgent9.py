"""feedback: what the safeguarding leads read apart from everyone else (N37): an urgent item's
day sent (its `day` becomes its release's, N29), an urgent answer's concerns, waiting, and the
leads' reach as the change team is told it, taken at a release

Revision ID: urgent9
Revises: feedback_release_senders
Create Date: 2026-12-07 03:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'urgent9'
down_revision = 'feedback_release_senders'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('feedback_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_day', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('lead_concerns', sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table('feedback_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('concerns', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('lead_day', sa.Date(), nullable=True))
    with op.batch_alter_table('feedback_releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reachable', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('leads', sa.Integer(), nullable=True))
    # An urgent item stored before kept the day it was sent, for everyone: the leads' day too.
    op.execute(sa.text("UPDATE feedback_items SET lead_day = day WHERE urgent = :yes")
               .bindparams(yes=True))


def downgrade() -> None:
    with op.batch_alter_table('feedback_releases', schema=None) as batch_op:
        batch_op.drop_column('leads')
        batch_op.drop_column('reachable')
    with op.batch_alter_table('feedback_messages', schema=None) as batch_op:
        batch_op.drop_column('lead_day')
        batch_op.drop_column('concerns')
    with op.batch_alter_table('feedback_items', schema=None) as batch_op:
        batch_op.drop_column('lead_concerns')
        batch_op.drop_column('lead_day')
