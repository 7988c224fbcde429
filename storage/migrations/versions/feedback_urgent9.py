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
    # Before urgent9 an urgent answer, and a lead's reply, were readable at once and its item
    # urgent and new at once, and an urgent item kept the day it was sent: what waits for a
    # release here is brought to that, or the code before would release an urgent answer as an
    # ordinary one (its item never urgent, not even in its leads' queue) and a lead's reply as
    # an author's answer (the item back to new, "the author answered").
    _fold_waiting_for_the_leads()
    # Dropped in place (SQLite 3.35+ drops a plain column itself): a batch that copies the
    # table drops the old one, and with foreign keys on, SQLite's ON DELETE CASCADE took every
    # thread, reply route, alert and public answer with it.
    with op.batch_alter_table('feedback_releases', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('leads')
        batch_op.drop_column('reachable')
    with op.batch_alter_table('feedback_messages', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('lead_day')
        batch_op.drop_column('concerns')
    with op.batch_alter_table('feedback_items', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('lead_concerns')
        batch_op.drop_column('lead_day')


def _fold_waiting_for_the_leads() -> None:
    conn = op.get_bind()
    items = sa.table('feedback_items', sa.column('id', sa.String), sa.column('day', sa.Date),
                     sa.column('lead_day', sa.Date), sa.column('urgent', sa.Boolean),
                     sa.column('status', sa.String), sa.column('concerns', sa.JSON),
                     sa.column('lead_concerns', sa.JSON(none_as_null=True)))
    msgs = sa.table('feedback_messages', sa.column('id', sa.String),
                    sa.column('item_id', sa.String), sa.column('seq', sa.Integer),
                    sa.column('day', sa.Date), sa.column('lead_day', sa.Date),
                    sa.column('released', sa.Boolean), sa.column('sender', sa.String),
                    sa.column('concerns', sa.JSON(none_as_null=True)))
    conn.execute(sa.update(items).where(items.c.lead_day.is_not(None))
                 .values(day=items.c.lead_day))
    for item_id, concerns in conn.execute(sa.select(items.c.id, items.c.lead_concerns).where(
            items.c.lead_concerns.is_not(None))).all():
        conn.execute(sa.update(items).where(items.c.id == item_id).values(
            urgent=True, status='new', concerns=list(concerns or ())))
    # Waiting messages with a leads' day (an urgent answer, a lead's reply) go at once, placed
    # after the thread's readable messages in the order written (-1 first), as a release does.
    waiting = conn.execute(sa.select(msgs.c.id, msgs.c.item_id, msgs.c.seq).where(
        msgs.c.released.is_(False), msgs.c.lead_day.is_not(None))).all()
    by_item: dict[str, list[tuple[str, int]]] = {}
    for msg_id, item_id, seq in waiting:
        by_item.setdefault(item_id, []).append((msg_id, seq))
    for item_id, rows in by_item.items():
        last = conn.execute(sa.select(sa.func.max(msgs.c.seq)).where(
            msgs.c.item_id == item_id, msgs.c.released.is_(True))).scalar()
        base = max(int(last or 0), 0)
        rows.sort(key=lambda r: (r[1] < 0, abs(r[1])))
        for n, (msg_id, _seq) in enumerate(rows, start=1):
            conn.execute(sa.update(msgs).where(msgs.c.id == msg_id).values(
                seq=base + n, released=True, day=msgs.c.lead_day))
