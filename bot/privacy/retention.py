"""Applying the retention periods: what each kind has past its period, removed (or counted).

This module owns the rules and works out each cutoff; each feature removes from its own tables
through its `retention` hook (bot/<feature>/retention.py), so no table is read here.

Run daily by the scheduler and by `staffvoice retention run [--dry-run]`. Everything runs in
one transaction; a dry run rolls it back, so it counts exactly what a real run would remove.
Only counts are recorded (in the audit trail). Reports read per-round counts (pulse_summaries,
summed from pulse_cells and pulse_tallies), which are never removed, so every closed round stays
reportable.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import retention as broadcasts
from bot.feedback import retention as feedback
from bot.milestones import retention as milestones
from bot.people import retention as people
from bot.privacy import erasure
from bot.privacy.rules import Retention, current
from bot.programme.core_sections import programme_zone
from bot.pulse import retention as pulse
from bot.scheduling import retention as scheduling
from storage.db import Database


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier (the month's last day when it has no such day)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    for d in range(day.day, 27, -1):
        try:
            return date(y, m + 1, d)
        except ValueError:
            continue
    return date(y, m + 1, min(day.day, 28))


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The moment `day` begins in `zone`, in UTC (its offset can differ from today's: DST)."""
    return datetime.combine(day, time(0), zone).astimezone(UTC)


async def apply(s: AsyncSession, rules: Retention, now: datetime) -> dict[str, int]:
    """Remove what is past its period, in `s`'s transaction; how many of each kind. The rules
    (the cutoffs) are this module's; each feature's own hook removes from its own tables.
    Days are the programme's calendar days, as the dates stored (a feedback item's day, the day
    someone left) and the scheduler's 02:30 are: in UTC, the run on a programme far east of
    Greenwich counted yesterday and kept everything a day longer than the rules say."""
    zone = await programme_zone(s)
    today = now.astimezone(zone).date()

    def months(n: int) -> datetime:
        return midnight(months_before(today, n), zone)

    out: dict[str, int] = {}
    # Reply routes, by the day their item was sent; feedback done or closed and quiet since.
    out["reply_routes"] = await feedback.expire_routes(
        s, today - timedelta(days=rules.reply_routes_days))
    out["feedback"] = await feedback.expire_closed(s, months_before(today, rules.feedback_months))
    out["pulse_comments"] = await pulse.expire_comments(s, months(rules.pulse_comments_months))
    out["attributed_answers"] = await pulse.expire_attributed(
        s, months(rules.attributed_answers_months))
    out["broadcast_ledger"] = await broadcasts.expire_ledger(
        s, now - timedelta(days=rules.broadcast_ledger_days))
    out["checkins"] = await milestones.expire_checkins(s, months(rules.checkins_months))
    out["leaver_conversations"] = await people.forget_conversations(
        s, today - timedelta(days=rules.leaver_conversations_days))
    gone = await people.leavers(s, today - timedelta(days=rules.leavers_erase_days))
    for person in gone:
        await erasure.erase(s, person)
    out["leavers_erased"] = len(gone)
    out["people_runs"] = await people.expire_runs(s, months(rules.people_runs_months))
    out["scheduler_history"] = await scheduling.expire_history(
        s, now - timedelta(days=rules.scheduler_history_days))
    return out


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
