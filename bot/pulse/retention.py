"""The pulse's part of the retention run (bot/privacy/retention.py calls these in its
transaction). Per-round counts (cells, tallies, summaries) are never removed, so every closed
round stays reportable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pulse.tables import PulseAttributedAnswer, PulseComment, PulseRound


def _closed_before(when: datetime) -> Select[Any]:
    return select(PulseRound.id).where(PulseRound.state == "closed", PulseRound.closes_at < when)


async def expire_comments(s: AsyncSession, closed_before: datetime) -> int:
    """Delete the comments of rounds closed before `closed_before`; how many."""
    res = await s.execute(delete(PulseComment).where(
        PulseComment.round_id.in_(_closed_before(closed_before))))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def expire_attributed(s: AsyncSession, closed_before: datetime) -> int:
    """Delete the attributed answers of rounds closed before `closed_before`; how many."""
    res = await s.execute(delete(PulseAttributedAnswer).where(
        PulseAttributedAnswer.round_id.in_(_closed_before(closed_before))))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
