"""families tables: answers, sealed contact requests, address rate counters, used form tokens

Revision ID: families
Revises: feedback_sources
Create Date: 2026-12-06 04:46:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'families'
down_revision = 'feedback_sources'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('family_answers',
    sa.Column('item_id', sa.String(length=32), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('working', sa.Text(), nullable=False),
    sa.Column('better', sa.Text(), nullable=False),
    sa.Column('lang', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['feedback_items.id'], name=op.f('fk_family_answers_item_id_feedback_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', name=op.f('pk_family_answers')),
    sqlite_with_rowid=False
    )
    op.create_table('family_contacts',
    sa.Column('item_id', sa.String(length=32), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('delete_after', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['feedback_items.id'], name=op.f('fk_family_contacts_item_id_feedback_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', name=op.f('pk_family_contacts')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('family_contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_contacts_delete_after'), ['delete_after'], unique=False)
    op.create_table('family_rate',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_family_rate')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('family_rate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_rate_day'), ['day'], unique=False)
    op.create_table('family_form_uses',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_family_form_uses')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('family_form_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_form_uses_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('family_form_uses')
    op.drop_table('family_rate')
    op.drop_table('family_contacts')
    op.drop_table('family_answers')
