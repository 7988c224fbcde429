"""people: identities and people pages keep room for a second version of every row
(PostgreSQL fillfactor 45), so the held writes' flush, which gives every row a new version
(docs/invariants.md N21), updates each row in its own page (a HOT update: no index entry, the
earlier version pruned by the next flush without waiting for VACUUM)

Revision ID: people_fillfactor
Revises: people_sources
Create Date: 2026-12-06 17:30:00

Rows already stored move once, at the first flush after the upgrade, into pages filled to
45%; from then on each flush rewrites them in place. SQLite: nothing to do.
"""
from __future__ import annotations

from alembic import op

revision = 'people_fillfactor'
down_revision = 'people_sources'
branch_labels = None
depends_on = None

TABLES = ('identities', 'people')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} SET (fillfactor = 45)')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} RESET (fillfactor)')
