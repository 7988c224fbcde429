"""Feedback's part of the retention run (bot/privacy/retention.py calls these in its
transaction): expired reply routes, and closed items with nothing said since the cutoff."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.feedback.service import destroy_routes
from bot.feedback.tables import FeedbackAlert, FeedbackHandle, FeedbackItem, FeedbackMessage

CLOSED = ("done", "closed")


async def expire_routes(s: AsyncSession, sent_before: date) -> int:
    """Destroy the reply routes of items sent before `sent_before`; how many."""
    return await destroy_routes(s, FeedbackHandle.item_id.in_(
        select(FeedbackItem.id).where(FeedbackItem.day < sent_before)), "expired")


async def expire_closed(s: AsyncSession, quiet_since: date) -> int:
    """Delete items marked done or closed, sent and with no message since `quiet_since`,
    with their routes, messages and alerts; how many items."""
    recent = exists().where(FeedbackMessage.item_id == FeedbackItem.id,
                            FeedbackMessage.day >= quiet_since)
    old = select(FeedbackItem.id).where(FeedbackItem.status.in_(CLOSED),
                                        FeedbackItem.day < quiet_since, ~recent)
    ids = list((await s.execute(old)).scalars())
    await destroy_routes(s, FeedbackHandle.item_id.in_(ids), "expired")
    for table in (FeedbackMessage, FeedbackAlert):
        await s.execute(delete(table).where(table.item_id.in_(ids)))
    res = await s.execute(delete(FeedbackItem).where(FeedbackItem.id.in_(ids)))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
