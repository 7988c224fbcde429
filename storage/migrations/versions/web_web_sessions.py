"""web: dashboard sign-in sessions and one-time demo sign-in links

Revision ID: web_sessions
Revises: core
Create Date: 2026-12-06 04:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.base

revision = 'web_sessions'
down_revision = 'core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('created_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_web_sessions_person_id_people'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_sessions_expires_at'), ['expires_at'], unique=False)
    op.create_table('web_login_links',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_web_login_links_person_id_people'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_login_links'))
    )
    with op.batch_alter_table('web_login_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_login_links_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('web_login_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_login_links_expires_at'))
    op.drop_table('web_login_links')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_web_sessions_person_id'))
    op.drop_table('web_sessions')
