"""The scheduler's part of the retention run (bot/privacy/retention.py calls it in its
transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduling.tables import Occurrence


async def expire_history(s: AsyncSession, before: datetime) -> int:
    """Delete the record of job runs before `before`; how many."""
    res = await s.execute(delete(Occurrence).where(Occurrence.at < before))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
