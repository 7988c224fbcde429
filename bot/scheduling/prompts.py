"""When a person's prompt may go out: in their working hours, once, and not hopelessly late.

Features call `prompt_due` from their tickers for each person-facing prompt they derive from
their tables (an invitation, a reminder, a check-in). A prompt due at night, at a weekend or on
a bank holiday waits for the person's next working moment; found later than its grace period
after that moment (the process was down), it is recorded as skipped instead of sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.scheduling.jobs import DEFAULT_GRACE, once
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
