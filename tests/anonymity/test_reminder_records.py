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
from datetime import timedelta

import pytest

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import MONDAY_10
from tests.test_feedback_helpers import dump

NIGHT = "nightduty@northbridge.example"  # the only person who works 17:00-23:00


async def _round_with_downtime(core: Core, night_answers: bool) -> list[tuple[str, str, str]]:
    """A round in which the bot is down from Wednesday 10:30 to Thursday 18:00; what the
    scheduler's records hold once it closed (the round's id written R)."""
    d = FakeDriver(core)
    clock = core.clock
    await core.tick()
    clock.set(MONDAY_10 + timedelta(hours=8))  # type: ignore[attr-defined]  # Monday 18:00
    await core.tick()  # the night duty worker is at work: invited
    if night_answers:
        for label in ("4", "4", "4", "4", "4", "8", "Skip"):
            await d.tap(NIGHT, label)
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
