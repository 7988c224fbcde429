"""Milestones' part of the retention run (bot/privacy/retention.py calls it in its transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession

from bot.milestones.tables import MilestoneCheckin


async def expire_checkins(s: AsyncSession, before: datetime) -> int:
    """Delete check-ins answered or lapsed (not due or sent) that closed, or whose cycle
    began, before `before`; how many."""
    res = await s.execute(delete(MilestoneCheckin).where(
        MilestoneCheckin.state.not_in(("due", "sent")),
        func.coalesce(MilestoneCheckin.closed_at, MilestoneCheckin.cycle_at) < before))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
