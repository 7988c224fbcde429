"""People's part of the retention run (bot/privacy/retention.py calls these in its transaction):
leavers' conversations, leavers due for erasure, and the history of imports and syncs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people.tables import Identity, PeopleRun, Person
from storage.base import Base


def _left_by(day: date) -> Any:
    """A person left on `left_on`, or on the day after their contract ended."""
    return or_(Person.left_on <= day, Person.ends_on < day)


async def forget_conversations(s: AsyncSession, left_by: date) -> int:
    """Forget the direct conversations of people who left by `left_by` (their DM routes, and
    the Teams adapter's stored conversation references when it has that table); how many."""
    gone = select(Person.id).where(_left_by(left_by))
    teams_users = list((await s.execute(select(Identity.user_id).where(
        Identity.person_id.in_(gone), Identity.platform == "teams"))).scalars())
    res = await s.execute(update(Identity).where(
        Identity.person_id.in_(gone), Identity.dm.is_not(None)).values(dm=null()))
    n = int(res.rowcount or 0)  # type: ignore[attr-defined]
    conversations = Base.metadata.tables.get("teams_conversations")
    if conversations is not None and teams_users:
        res = await s.execute(delete(conversations).where(
            conversations.c.user_id.in_(teams_users)))
        n += int(res.rowcount or 0)  # type: ignore[attr-defined]
    return n


async def leavers(s: AsyncSession, left_by: date) -> list[Person]:
    """The people who left by `left_by` (for erasure)."""
    return list((await s.execute(select(Person).where(_left_by(left_by)))).scalars())


async def expire_runs(s: AsyncSession, before: datetime) -> int:
    """Delete the record of imports and directory syncs before `before`; how many."""
    res = await s.execute(delete(PeopleRun).where(PeopleRun.at < before))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
