"""broadcasts: the delivery ledger carries other kinds of message (pulse invitations)

Revision ID: broadcasts_ledger_kinds
Revises: broadcasts
Create Date: 2026-12-06 04:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'broadcasts_ledger_kinds'
down_revision = 'broadcasts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('broadcast_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='broadcast'))
        batch_op.add_column(sa.Column('subject', sa.String(length=32), nullable=True))
        batch_op.alter_column('broadcast_id', existing_type=sa.String(length=32), nullable=True)
        batch_op.create_unique_constraint('uq_broadcast_deliveries_subject_person_id',
                                          ['subject', 'person_id'])


def downgrade() -> None:
    op.execute("DELETE FROM broadcast_deliveries WHERE broadcast_id IS NULL")
    with op.batch_alter_table('broadcast_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('uq_broadcast_deliveries_subject_person_id', type_='unique')
        batch_op.alter_column('broadcast_id', existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_column('subject')
        batch_op.drop_column('kind')
