"""When a person's prompt may go out: in their working hours, once, and not hopelessly late.

Features call `prompt_due` from their tickers for each person-facing prompt they derive from
their tables (an invitation, a reminder, a check-in). A prompt due at night, at a weekend or on
a bank holiday waits for the person's next working moment; found later than its grace period
after that moment (the process was down), it is recorded as skipped instead of sent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.scheduling.jobs import DEFAULT_GRACE, once, too_late, was_skipped
from bot.workhours import Pattern, is_working_moment, next_working_moment

if TYPE_CHECKING:
    from bot.core import Core


def send_time(pattern: Pattern, due_at: datetime) -> datetime:
    """The first moment a prompt due at `due_at` may reach a person with this pattern."""
    return next_working_moment(pattern, due_at)


async def prompt_due(core: Core, job: str, key: str, pattern: Pattern, due_at: datetime,
                     now: datetime, grace: timedelta = DEFAULT_GRACE) -> bool:
    """True exactly once, when the prompt `key` of `job` should be sent now."""
    at = send_time(pattern, due_at)
    if now < at or not is_working_moment(pattern, now):
        # Not yet, or the process came back outside working hours: wait (and perhaps skip).
        return False
    return await once(core, job, key, at, now, grace)


# -- weekly posts (digests): due at the first working moment of each week ------------------


def week_of(pattern: Pattern, now: datetime) -> date:
    """The Monday of `now`'s week in the pattern's time zone."""
    local = now.astimezone(ZoneInfo(pattern.tz)).date()
    return local - timedelta(days=local.weekday())


def week_due(pattern: Pattern, monday: date) -> datetime:
    """The first working moment of the week starting `monday` (a bank holiday Monday: Tuesday)."""
    start = datetime.combine(monday, time(0), ZoneInfo(pattern.tz))
    return next_working_moment(pattern, start).astimezone(UTC)


async def weekly_post_due(core: Core, job: str, pattern: Pattern, now: datetime,
                          grace: timedelta = DEFAULT_GRACE) -> bool:
    """True when this week's post (not made yet) may go now: from the week's first working
    moment, at a working moment, unless it was missed beyond its grace while the process was
    down (then it is recorded as skipped and waits for next week)."""
    monday = week_of(pattern, now)
    due = week_due(pattern, monday)
    if now < due:
        return False
    # Judged before the hours check, so a restart at night still sees how late it is.
    if await too_late(core, job, f"week:{monday}", due, now, grace, only_if_missed=True):
        return False
    return is_working_moment(pattern, now)


async def weekly_next_due(core: Core, job: str, pattern: Pattern, now: datetime, posted: bool
                          ) -> datetime:
    """When the weekly post is next due: this week's (if not made or skipped) or next week's."""
    monday = week_of(pattern, now)
    if posted or await was_skipped(core, job, f"week:{monday}"):
        return week_due(pattern, monday + timedelta(days=7))
    return next_working_moment(pattern, max(now, week_due(pattern, monday)))
