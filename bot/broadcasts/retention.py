"""Broadcasts' part of the retention run (bot/privacy/retention.py calls it in its transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.tables import Broadcast, Celebration, Delivery


async def expire_ledger(s: AsyncSession, finished_before: datetime) -> int:
    """Delete the delivery rows and celebrations of broadcasts finished before
    `finished_before` (the broadcasts themselves stay); how many rows."""
    finished = select(Broadcast.id).where(Broadcast.finished_at.is_not(None),
                                          Broadcast.finished_at < finished_before)
    n = 0
    for table in (Delivery, Celebration):
        res = await s.execute(delete(table).where(table.broadcast_id.in_(finished)))
        n += int(res.rowcount or 0)  # type: ignore[attr-defined]
    return n
