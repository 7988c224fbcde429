"""A motivated intruder with /metrics (or the scheduler's records), and the release moments.

A lone item is dated to its day (N22): it waits at 12:00 and goes at 17:00, and nothing the
change team reads says whether it came in the morning or the afternoon. But the scheduler
woke up exactly at a release moment only while something waited for it, and otherwise ran at
its next interval tick: the tick at 12:00:00.000 (`staffvoice_scheduler_last_tick_timestamp_
seconds` at the next scrape, `scheduler_jobs.last_run_at`, the scheduler's lag) said that
something had been sent since the last release, so a lone item was dated to the morning.
Now the scheduler wakes at every release moment, whether or not anything waits.
"""

from __future__ import annotations

from bot.core import Core
from bot.scheduling.scheduler import Scheduler
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import PRACTITIONER, give


async def test_the_scheduler_wakes_at_noon_whether_or_not_an_item_waits(loaded: Core) -> None:
    """At 11:59 nobody has sent anything; at 11:59:30 a practitioner sends a lone item. The
    scheduler's next wake-up is 12:00 both times (before: none planned at 11:59, so the
    12:00:00 tick happened only on days when something waited)."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=11, minute=59, second=0, microsecond=0)
    sch = Scheduler(loaded, interval_s=15)
    clock.set(day)  # type: ignore[attr-defined]
    quiet = await sch.soonest_due(day)
    clock.set(day.replace(second=30))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "The duty rota is late again.") is None
    waiting = await sch.soonest_due(day.replace(second=40))
    assert waiting == day.replace(hour=12, minute=0)
    assert quiet == waiting  # before: None on the quiet morning, 12:00 with an item waiting
