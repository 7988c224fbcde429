"""Applying the retention periods: what each kind has past its period, removed (or counted).

Run daily by the scheduler and by `staffvoice retention run [--dry-run]`. Everything runs in
one transaction; a dry run rolls it back, so it counts exactly what a real run would remove.
Only counts are recorded (in the audit trail). Reports read per-round counts (pulse_summaries,
summed from pulse_cells and pulse_tallies), which are never removed, so every closed round stays
reportable.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.tables import Broadcast, Celebration, Delivery
from bot.feedback.tables import FeedbackAlert, FeedbackHandle, FeedbackItem, FeedbackMessage
from bot.milestones.tables import MilestoneCheckin
from bot.people.tables import Identity, PeopleRun, Person
from bot.privacy import erasure
from bot.privacy.rules import Retention, current
from bot.pulse.tables import PulseAttributedAnswer, PulseComment, PulseRound
from bot.scheduling.tables import Occurrence
from storage.base import Base
from storage.db import Database

CLOSED_FEEDBACK = ("done", "closed")


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier (the month's last day when it has no such day)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    for d in range(day.day, 27, -1):
        try:
            return date(y, m + 1, d)
        except ValueError:
            continue
    return date(y, m + 1, min(day.day, 28))


def midnight(day: date, like: datetime) -> datetime:
    return like.replace(year=day.year, month=day.month, day=day.day, hour=0, minute=0, second=0,
                        microsecond=0)


async def _count(s: AsyncSession, stmt: Any) -> int:
    return int((await s.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]


async def apply(s: AsyncSession, rules: Retention, now: datetime) -> dict[str, int]:
    """Remove what is past its period, in `s`'s transaction; how many of each kind."""
    today = now.date()
    out: dict[str, int] = {}

    # Reply routes, by the day their item was sent.
    route_cut = today - timedelta(days=rules.reply_routes_days)
    out["reply_routes"] = await _destroy_routes(s, FeedbackHandle.item_id.in_(
        select(FeedbackItem.id).where(FeedbackItem.day < route_cut)))

    # Feedback marked done or closed, with no message since the cutoff.
    cut = months_before(today, rules.feedback_months)
    recent = exists().where(FeedbackMessage.item_id == FeedbackItem.id, FeedbackMessage.day >= cut)
    old = select(FeedbackItem.id).where(FeedbackItem.status.in_(CLOSED_FEEDBACK),
                                        FeedbackItem.day < cut, ~recent)
    ids = list((await s.execute(old)).scalars())
    await _destroy_routes(s, FeedbackHandle.item_id.in_(ids))
    for table in (FeedbackMessage, FeedbackAlert):
        await s.execute(delete(table).where(table.item_id.in_(ids)))
    out["feedback"] = await _count(s, delete(FeedbackItem).where(FeedbackItem.id.in_(ids)))

    closed_before = PulseRound.id.in_(select(PulseRound.id).where(
        PulseRound.state == "closed",
        PulseRound.closes_at < midnight(months_before(today, rules.pulse_comments_months), now)))
    out["pulse_comments"] = await _count(s, delete(PulseComment).where(
        PulseComment.round_id.in_(select(PulseRound.id).where(closed_before))))
    attributed_before = PulseRound.id.in_(select(PulseRound.id).where(
        PulseRound.state == "closed",
        PulseRound.closes_at < midnight(months_before(today, rules.attributed_answers_months),
                                        now)))
    out["attributed_answers"] = await _count(s, delete(PulseAttributedAnswer).where(
        PulseAttributedAnswer.round_id.in_(select(PulseRound.id).where(attributed_before))))

    finished = select(Broadcast.id).where(
        Broadcast.finished_at.is_not(None),
        Broadcast.finished_at < now - timedelta(days=rules.broadcast_ledger_days))
    out["broadcast_ledger"] = await _count(s, delete(Delivery).where(
        Delivery.broadcast_id.in_(finished)))
    out["broadcast_ledger"] += await _count(s, delete(Celebration).where(
        Celebration.broadcast_id.in_(finished)))

    check_cut = midnight(months_before(today, rules.checkins_months), now)
    out["checkins"] = await _count(s, delete(MilestoneCheckin).where(
        MilestoneCheckin.state.not_in(("due", "sent")),
        func.coalesce(MilestoneCheckin.closed_at, MilestoneCheckin.cycle_at) < check_cut))

    # Leavers: a person left on `left_on`, or on the day after their contract ended.
    def left_by(day: date) -> Any:
        return or_(Person.left_on <= day, Person.ends_on < day)

    leavers = select(Person.id).where(
        left_by(today - timedelta(days=rules.leaver_conversations_days)))
    teams_users = list((await s.execute(select(Identity.user_id).where(
        Identity.person_id.in_(leavers), Identity.platform == "teams"))).scalars())
    out["leaver_conversations"] = await _count(s, update(Identity).where(
        Identity.person_id.in_(leavers), Identity.dm.is_not(None)).values(dm=null()))
    conversations = Base.metadata.tables.get("teams_conversations")
    if conversations is not None and teams_users:
        out["leaver_conversations"] += await _count(s, delete(conversations).where(
            conversations.c.user_id.in_(teams_users)))

    gone = list((await s.execute(select(Person).where(
        left_by(today - timedelta(days=rules.leavers_erase_days))))).scalars())
    for person in gone:
        await erasure.erase(s, person)
    out["leavers_erased"] = len(gone)

    out["people_runs"] = await _count(s, delete(PeopleRun).where(
        PeopleRun.at < midnight(months_before(today, rules.people_runs_months), now)))
    out["scheduler_history"] = await _count(s, delete(Occurrence).where(
        Occurrence.at < now - timedelta(days=rules.scheduler_history_days)))
    return out


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
    await s.execute(delete(FeedbackHandle).where(and_(
        FeedbackHandle.id.in_([r[0] for r in rows]))))
    return len(rows)


async def run(db: Database, now: datetime, *, dry_run: bool = False) -> dict[str, int]:
    """Apply the programme's retention at `now`; with `dry_run`, count and change nothing."""
    async with db.sessions() as s:
        tx = await s.begin()
        try:
            counts = await apply(s, await current(s), now)
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()
    return counts
