"""A motivated intruder against the scheduler's records of a round's reminder.

The reminder goes at each person's send time (their working hours). A send time found too
late (the bot was down) is recorded once in `scheduler_occurrences` (and logged), so it is
skipped rather than sent at an odd hour. If only the send times of people still to finish were
recorded, a work pattern held by one person (the example programme's emergency duty worker,
17:00-23:00) would leave, after the round closed, a record saying that this person had not
answered by the reminder. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from bot.programme import loader
from bot.scheduling.leader import Always
from bot.scheduling.scheduler import Scheduler
from storage.db import Database
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE, MONDAY_10, _emptying
from tests.test_feedback_helpers import dump

NIGHT = "nightduty@northbridge.example"  # the only person who works 17:00-23:00


async def _night_worker_invited(core: Core, night_answers: bool) -> None:
    """The round opens on Monday; at 18:00 the night duty worker is invited and, if asked,
    answers every question."""
    d = FakeDriver(core)
    await core.tick()
    core.clock.set(MONDAY_10 + timedelta(hours=8))  # type: ignore[attr-defined]  # Monday 18:00
    await core.tick()  # the night duty worker is at work: invited
    if night_answers:
        for label in ("4", "4", "4", "4", "4", "8", "Skip"):
            await d.tap(NIGHT, label)


async def _round_with_downtime(core: Core, night_answers: bool) -> list[tuple[str, str, str]]:
    """A round in which the bot is down from Wednesday 10:30 to Thursday 18:00; what the
    scheduler's records hold once it closed (the round's id written R)."""
    await _night_worker_invited(core, night_answers)
    clock = core.clock
    clock.set(MONDAY_10 + timedelta(days=2, minutes=30))  # type: ignore[attr-defined]
    await core.tick()  # Wednesday 10:30: the day workers' reminders
    clock.set(MONDAY_10 + timedelta(days=3, hours=8))  # type: ignore[attr-defined]
    await core.tick()  # Thursday 18:00: back after the downtime, 25 h past the 17:00 send time
    clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await core.tick()  # Friday 17:00 has passed: the round closes
    tables = await dump(core.db)
    [rnd] = tables["pulse_rounds"]
    assert rnd["state"] == "closed"
    return sorted((r["job"], r["key"].replace(rnd["id"], "R"), r["outcome"])
                  for r in tables["scheduler_occurrences"] if r["job"] == "pulse")


@pytest.mark.parametrize("night_answers", [True, False], ids=["answered", "did-not-answer"])
async def test_the_reminder_records_are_the_same_whether_or_not_one_person_answered(
        loaded: Core, caplog: pytest.LogCaptureFixture, night_answers: bool) -> None:
    """Attack: after the round, read `scheduler_occurrences` (and the logs) for the send time
    only the night duty worker has.

    Before: `remind:<round>:20261202T1700 skipped` was there only when the night duty worker
    had not finished by then, and so was the log line whose `late_s` points at 17:00.
    """
    caplog.set_level(logging.INFO, logger="staffvoice")
    records = await _round_with_downtime(loaded, night_answers)
    lines = sorted((r.getMessage(), getattr(r, "late_s", None)) for r in caplog.records
                   if getattr(r, "job", None) == "pulse")
    # Both worlds leave exactly this: the day workers' send time done, and the night send
    # time, found 25 hours late, skipped.
    assert records == [("pulse", "remind:R:20261202T1000", "done"),
                       ("pulse", "remind:R:20261202T1700", "skipped")]
    assert lines == [("missed beyond its grace period; skipped", 25 * 3600)]


async def _round_on_time(core: Core, night_answers: bool) -> list[dict[str, object]]:
    """The scheduler running through Wednesday's 17:00 send time as in production (an interval
    tick every 30 s, and a wake-up when a ticker says work is due); every column of the pulse
    records once the round closed (the round's id written R)."""
    await _night_worker_invited(core, night_answers)
    clock = core.clock
    sched = Scheduler(core, Always(), interval_s=30)
    clock.set(MONDAY_10 + timedelta(days=2))  # type: ignore[attr-defined]  # Wednesday 10:00
    await sched.tick()  # the day workers' reminders
    # An interval tick at 16:59:45 lands the next one at 17:00:15, 15 s after the send time.
    clock.set(MONDAY_10 + timedelta(days=2, hours=6, minutes=59, seconds=45))  # type: ignore[attr-defined]
    end = MONDAY_10 + timedelta(days=2, hours=7, minutes=1)
    while clock.now() < end:
        await sched.tick()
        step = clock.now() + timedelta(seconds=sched.interval_s)
        soon = await sched.soonest_due(clock.now())
        clock.set(min(step, soon) if soon else step)  # type: ignore[attr-defined]
    clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await sched.tick()  # Friday 17:00 has passed: the round closes
    tables = await dump(core.db)
    [rnd] = tables["pulse_rounds"]
    assert rnd["state"] == "closed"
    return sorted(({**r, "key": r["key"].replace(rnd["id"], "R")}
                   for r in tables["scheduler_occurrences"] if r["key"].startswith("remind:")),
                  key=lambda r: str(r["key"]))


async def test_the_reminder_records_are_stored_alike_whether_or_not_the_lone_worker_finished(
        db_url: str, _template: str, tmp_path: Path, settings: Settings) -> None:
    """Attack, known author: the night duty worker alone works 17:00-23:00. Read every column
    of the record of that send time, in a world where they answered on Monday and in one where
    they did not.

    Before: with them finished, nothing asked the scheduler to wake at 17:00, so the record
    waited for the interval tick (`at` 17:00:15); without, it was written at 17:00:00.
    """
    seen = []
    for night_answers in (True, False):
        if db_url.startswith("sqlite"):  # each world from the migrated, empty database
            path = tmp_path / f"world-{night_answers}.db"
            shutil.copy(_template, path)
            db = Database(f"sqlite+svinline:///{path}")
        else:
            db = Database(db_url)
            async with db.engine.begin() as conn:
                await conn.execute(text(_emptying()))
        core = Core(db, settings=settings, clock=FakeClock(MONDAY_10))
        await core.start()
        await loader.load(core.db, EXAMPLE.read_text(), core.router)
        seen.append(await _round_on_time(core, night_answers))
        await db.dispose()
    answered, did_not = seen
    assert answered == did_not
    night = [r for r in did_not if str(r["key"]).endswith("T1700")]
    assert [(r["outcome"], r["at"]) for r in night] == [("done", night[0]["due_at"])]
