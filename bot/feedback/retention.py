"""Feedback's part of the retention run (bot/privacy/retention.py calls these in its
transaction): expired reply routes, and closed items with nothing said since the cutoff."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.feedback.tables import FeedbackAlert, FeedbackHandle, FeedbackItem, FeedbackMessage

CLOSED = ("done", "closed")


async def expire_routes(s: AsyncSession, sent_before: date) -> int:
    """Destroy the reply routes of items sent before `sent_before`; how many."""
    return await _destroy_routes(s, FeedbackHandle.item_id.in_(
        select(FeedbackItem.id).where(FeedbackItem.day < sent_before)))


async def expire_closed(s: AsyncSession, quiet_since: date) -> int:
    """Delete items marked done or closed, sent and with no message since `quiet_since`,
    with their routes, messages and alerts; how many items."""
    recent = exists().where(FeedbackMessage.item_id == FeedbackItem.id,
                            FeedbackMessage.day >= quiet_since)
    old = select(FeedbackItem.id).where(FeedbackItem.status.in_(CLOSED),
                                        FeedbackItem.day < quiet_since, ~recent)
    ids = list((await s.execute(old)).scalars())
    await _destroy_routes(s, FeedbackHandle.item_id.in_(ids))
    for table in (FeedbackMessage, FeedbackAlert):
        await s.execute(delete(table).where(table.item_id.in_(ids)))
    res = await s.execute(delete(FeedbackItem).where(FeedbackItem.id.in_(ids)))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def _destroy_routes(s: AsyncSession, where: Any) -> int:
    """Overwrite sealed routes before deleting them, so no copy lingers in free pages."""
    conn = await s.connection()
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")
    rows = (await s.execute(select(FeedbackHandle.id, func.length(FeedbackHandle.sealed))
                            .where(where))).all()
    for hid, size in rows:
        await s.execute(update(FeedbackHandle).where(FeedbackHandle.id == hid).values(
            sealed=bytes(int(size or 0)), token_key="expired-" + hid))
    await s.execute(delete(FeedbackHandle).where(FeedbackHandle.id.in_([r[0] for r in rows])))
    return len(rows)
