"""Downtime on the real features: what is still worth sending goes once at start, the rest is
recorded as skipped; and `staffvoice schedule list` shows real times for each job.

Each test restarts the process (a new Scheduler) after a gap with a FakeClock. The example
programme's weekly pulse opens on Mondays at 10:00, reminds on Wednesdays at 10:00 and closes
on Fridays at 17:00 (London, which is UTC in winter); digests go at the week's first working
moment; the Family network meetings milestone has a weekly check-in.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.broadcasts import service as broadcasts
from bot.broadcasts.feature import settle
from bot.broadcasts.tables import Broadcast, Delivery
from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from bot.milestones.tables import MilestoneCheckin
from bot.people.tables import Person
from bot.pulse.tables import PulseRound
from bot.scheduling.jobs import JobResult, next_due
from bot.scheduling.leader import Always
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tables import JobRecord, Occurrence
from staffvoice.cli import main
from tests.test_scheduler_programme import console_port
from tests.test_scheduler_week import RecordingPort

ORG = "@northbridge.example"
NIGHT = f"nightduty{ORG}"
OWNER = f"changeofficer{ORG}"
FNM = "Family network meetings offered at every assessment"
LONDON = ZoneInfo("Europe/London")
INVITE = "Six quick questions"  # the weekly pulse's intro opens its invitation


def utc(day: int, hh: int, mm: int = 0, month: int = 12) -> datetime:
    """A moment in December 2026 (London is on UTC in winter)."""
    return datetime(2026, month, day, hh, mm, tzinfo=UTC)


MON = utc(30, 10, month=11)  # the round opens; Wednesday 2 December 10:00 it reminds


async def start_at(core: Core, clock: FakeClock, when: datetime) -> dict[str, JobResult]:
    """A process (re)started at `when` runs its first tick."""
    clock.set(when)
    return {r.name: r for r in await Scheduler(core, Always()).tick() or []}


def sent(port: RecordingPort, what: str, since: datetime | None = None) -> list[tuple[datetime, str]]:
    """(time, recipient) of every message whose first line contains `what`."""
    return [(t, conv.removeprefix("D-U-")) for t, conv, text in port.log
            if what in text.strip().splitlines()[0] and (since is None or t >= since)]


async def office(core: Core) -> set[str]:
    async with core.db.session() as s:
        return set((await s.execute(select(Person.email))).scalars()) - {NIGHT}


async def occurrences(core: Core, job: str) -> dict[str, Occurrence]:
    async with core.db.session() as s:
        rows = (await s.execute(select(Occurrence).where(Occurrence.job == job))).scalars()
        return {o.key: o for o in rows}


async def job(core: Core, name: str) -> JobRecord:
    async with core.db.session() as s:
        rec = await s.get(JobRecord, name)
    assert rec is not None
    return rec


# -- pulse --------------------------------------------------------------------------------


async def round_open_then_down_before_the_reminder(core: Core, clock: FakeClock) -> RecordingPort:
    port = console_port(core, clock)
    await start_at(core, clock, MON)
    assert {who for _, who in sent(port, INVITE)} == await office(core)
    await start_at(core, clock, MON.replace(hour=17))  # the night worker's shift
    await start_at(core, clock, utc(2, 9, 50))  # the last tick before the process goes down
    return port


async def test_a_reminder_found_inside_its_grace_goes_once_at_start(
        loaded: Core, clock: FakeClock) -> None:
    port = await round_open_then_down_before_the_reminder(loaded, clock)
    results = await start_at(loaded, clock, utc(2, 12))  # back two hours after 10:00
    await start_at(loaded, clock, utc(2, 12, 1))
    reminders = sent(port, "gentle reminder")
    assert sorted(who for _, who in reminders) == sorted(await office(loaded))
    assert {t for t, _ in reminders} == {utc(2, 12)}
    assert results["pulse"].outcome == "caught-up"
    late = await occurrences(loaded, "pulse")
    assert [o.outcome for k, o in late.items() if k.startswith("remind:")] == ["caught-up"]


async def test_a_reminder_found_beyond_its_grace_is_skipped_and_recorded(
        loaded: Core, clock: FakeClock) -> None:
    port = await round_open_then_down_before_the_reminder(loaded, clock)
    results = await start_at(loaded, clock, utc(2, 15))  # five hours after 10:00: too late
    for when in (utc(2, 15, 1), utc(2, 17), utc(3, 10)):
        await start_at(loaded, clock, when)
    # Nobody in the office is reminded; the night worker's reminder was due at 17:00 (their
    # shift), after the restart, so it goes on time.
    assert sent(port, "gentle reminder") == [(utc(2, 17), NIGHT)]
    assert results["pulse"].outcome == "skipped" and results["pulse"].skipped == 1
    late = await occurrences(loaded, "pulse")
    [key] = [k for k, o in late.items() if o.outcome == "skipped"]
    assert key.startswith("remind:") and late[key].due_at == utc(2, 10)
    assert (await job(loaded, "pulse")).skipped == 1


async def test_a_round_whose_window_passed_while_down_is_skipped_one_still_open_opens_late(
        loaded: Core, clock: FakeClock) -> None:
    port = console_port(loaded, clock)
    await start_at(loaded, clock, utc(30, 9, month=11))  # up before Monday's round; then down
    await start_at(loaded, clock, utc(5, 12))  # Saturday: Monday 10:00 to Friday 17:00 passed
    async with loaded.db.session() as s:
        assert (await s.execute(select(PulseRound))).first() is None
    assert sent(port, INVITE) == []
    late = await occurrences(loaded, "pulse")
    assert {k: o.outcome for k, o in late.items()} == {"open:weekly-pulse:20261130T1000": "skipped"}

    await start_at(loaded, clock, utc(7, 9))  # down again over next Monday's opening
    await start_at(loaded, clock, utc(8, 11))
    async with loaded.db.session() as s:
        [rnd] = (await s.execute(select(PulseRound))).scalars()
    assert rnd.opens_at == utc(7, 10)  # its window is still open: it opens late, once
    invited = sent(port, INVITE)
    assert {t for t, _ in invited} == {utc(8, 11)} and len(invited) == len(await office(loaded))
    late = await occurrences(loaded, "pulse")
    assert late["open:weekly-pulse:20261207T1000"].outcome == "caught-up"
    assert late[f"invite:{rnd.id}:20261207T1000"].outcome == "caught-up"


# -- milestone check-ins -----------------------------------------------------------------


async def test_a_check_in_found_inside_one_cadence_goes_once_at_start(
        loaded: Core, clock: FakeClock) -> None:
    port = console_port(loaded, clock)
    await start_at(loaded, clock, MON)  # the weekly cadence counts from here
    await start_at(loaded, clock, utc(7, 9))  # then down over Monday 10:00, when it is due
    await start_at(loaded, clock, utc(8, 11))
    await start_at(loaded, clock, utc(8, 11, 1))
    assert sent(port, f"Check-in: {FNM}") == [(utc(8, 11), OWNER)]
    late = await occurrences(loaded, "milestone_checkins")
    assert [o.outcome for o in late.values() if o.due_at == utc(7, 10)] == ["caught-up"]


async def test_check_ins_more_than_a_cadence_late_are_skipped_and_only_the_current_one_goes(
        loaded: Core, clock: FakeClock) -> None:
    port = console_port(loaded, clock)
    await start_at(loaded, clock, MON)
    await start_at(loaded, clock, utc(7, 9))
    await start_at(loaded, clock, utc(22, 11))  # down for two weeks: 7th and 14th passed
    await start_at(loaded, clock, utc(22, 11, 1))
    assert sent(port, f"Check-in: {FNM}") == [(utc(22, 11), OWNER)]  # the 21st's, once
    late = await occurrences(loaded, "milestone_checkins")
    assert {k: o.outcome for k, o in late.items() if "family-network" in k} == {
        "checkin:family-network-meetings:20261207T1000": "skipped",
        "checkin:family-network-meetings:20261214T1000": "skipped",
    }
    assert (await job(loaded, "milestone_checkins")).skipped >= 2


async def test_a_reminder_more_than_a_cadence_late_is_skipped_and_the_next_cycle_asks_afresh(
        loaded: Core, clock: FakeClock) -> None:
    port = console_port(loaded, clock)
    await start_at(loaded, clock, MON)
    await start_at(loaded, clock, utc(7, 10))  # the check-in goes on time; reminder due the 9th
    await start_at(loaded, clock, utc(8, 12))
    await start_at(loaded, clock, utc(17, 11))  # back eight days after the reminder was due
    assert sent(port, f"Reminder: Check-in: {FNM}") == []
    assert sent(port, f"Check-in: {FNM}") == [(utc(7, 10), OWNER), (utc(17, 11), OWNER)]
    async with loaded.db.session() as s:
        states = [c.state for c in (await s.execute(
            select(MilestoneCheckin).where(MilestoneCheckin.milestone_id == "family-network-meetings")
            .order_by(MilestoneCheckin.cycle_at))).scalars()]
    assert states == ["skipped", "sent"]
    late = await occurrences(loaded, "milestone_checkins")
    assert [o.outcome for k, o in late.items() if k.startswith("reminder:")] == ["skipped"]


# -- digests -----------------------------------------------------------------------------


async def digests_posted_then_down_next_monday(core: Core, clock: FakeClock) -> RecordingPort:
    port = console_port(core, clock)
    await start_at(core, clock, utc(4, 16))  # Friday: this week's digests go (first run)
    assert len(sent(port, "Roadmap this week")) == len(sent(port, "Leadership digest")) == 1
    await start_at(core, clock, utc(7, 8))  # up early on Monday, then down over 09:00
    return port


async def test_digests_found_inside_their_grace_post_once_at_start(
        loaded: Core, clock: FakeClock) -> None:
    port = await digests_posted_then_down_next_monday(loaded, clock)
    await start_at(loaded, clock, utc(7, 12))
    await start_at(loaded, clock, utc(7, 12, 1))
    for what, name in (("Roadmap this week", "roadmap_digest"),
                       ("Leadership digest", "leadership_digest")):
        assert [t for t, _ in sent(port, what, since=utc(7, 0))] == [utc(7, 12)]
        late = await occurrences(loaded, name)
        assert {k: o.outcome for k, o in late.items()} == {"week:2026-12-07": "caught-up"}


async def test_digests_found_beyond_their_grace_are_skipped_until_next_week(
        loaded: Core, clock: FakeClock) -> None:
    port = await digests_posted_then_down_next_monday(loaded, clock)
    # Back at 18:00, after hours and nine hours late: judged at once, not at Tuesday 09:00.
    for when in (utc(7, 18), utc(8, 9), utc(11, 12), utc(14, 9)):
        await start_at(loaded, clock, when)
    for what, name in (("Roadmap this week", "roadmap_digest"),
                       ("Leadership digest", "leadership_digest")):
        assert [t for t, _ in sent(port, what, since=utc(7, 0))] == [utc(14, 9)]
        late = await occurrences(loaded, name)
        assert {k: (o.outcome, o.at) for k, o in late.items()} == {
            "week:2026-12-07": ("skipped", utc(7, 18))}
        assert (await job(loaded, name)).skipped == 1


# -- scheduled broadcasts ------------------------------------------------------------------


async def test_a_scheduled_broadcast_missed_while_down_goes_once_inside_its_grace(
        loaded: Core, clock: FakeClock) -> None:
    port = RecordingPort(clock)
    loaded.add_port(port)
    async with loaded.db.session() as s:
        author = (await s.execute(select(Person.id).where(
            Person.email == f"changelead{ORG}"))).scalar_one()
        form = await broadcasts.validate(s, {
            "title": "Early win: weekly group supervision", "text": "Every team, every week.",
            "audience": "roles: leader", "when": "2026-11-30 14:00", "celebrate": "false"},
            {"fake"}, clock.now())
    b = await broadcasts.store(loaded, author, form)
    assert (await broadcasts.confirm(loaded, b.id, author)).state == "scheduled"
    await start_at(loaded, clock, MON)  # up at 10:00, then down over 14:00
    # The broadcast's own time (the scheduler wakes for the 12:00 feedback release first).
    assert await next_due(loaded, loaded.router.tickers["broadcasts"], MON) == utc(30, 14, month=11)
    await start_at(loaded, clock, utc(30, 15, month=11))  # an hour late
    await start_at(loaded, clock, utc(30, 15, 1, month=11))
    await settle()
    got = [t for t, conv, text in port.log
           if conv == f"D-U-director{ORG}" and "Every team, every week." in text]
    assert got == [utc(30, 15, month=11)]
    late = await occurrences(loaded, "broadcasts")
    assert {k: o.outcome for k, o in late.items()} == {f"scheduled:{b.id}": "caught-up"}


async def test_a_scheduled_broadcast_found_beyond_its_grace_is_not_sent_and_its_author_is_told(
        loaded: Core, clock: FakeClock) -> None:
    port = RecordingPort(clock)
    loaded.add_port(port)
    async with loaded.db.session() as s:
        author = (await s.execute(select(Person.id).where(
            Person.email == f"changelead{ORG}"))).scalar_one()
        form = await broadcasts.validate(s, {
            "title": "Briefing at 15:00 today", "text": "Room 2.", "audience": "roles: leader",
            "when": "2026-11-30 11:00", "celebrate": "false"}, {"fake"}, clock.now())
    b = await broadcasts.store(loaded, author, form)
    await broadcasts.confirm(loaded, b.id, author)
    await start_at(loaded, clock, MON)
    await start_at(loaded, clock, utc(30, 16, month=11))  # five hours late
    await start_at(loaded, clock, utc(30, 16, 1, month=11))
    await settle()
    async with loaded.db.session() as s:
        row = await s.get(Broadcast, b.id)
        assert row is not None and row.state == "cancelled"
        assert (await s.execute(select(Delivery).where(Delivery.broadcast_id == b.id))).first() is None
    told = [text for _, conv, text in port.log if conv == f"D-U-changelead{ORG}"]
    assert any("'Briefing at 15:00 today' was not sent: it was due Mon 30 Nov 11:00" in t
               for t in told)
    assert not any("Room 2." in text for _, conv, text in port.log if "director" in conv)
    late = await occurrences(loaded, "broadcasts")
    assert {k: o.outcome for k, o in late.items()} == {f"scheduled:{b.id}": "skipped"}


# -- what `staffvoice schedule list` shows -------------------------------------------------


def local(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2027, 5, day, hh, mm, tzinfo=LONDON)


async def test_schedule_list_shows_real_times_and_what_was_found_late(
        loaded: Core, clock: FakeClock, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Saturday 1 May 2027; Monday 3rd is a bank holiday; the process is down until Tuesday 15:00."""

    async def schedule_list(at: str) -> dict[str, str]:
        assert await asyncio.to_thread(lambda: main(["schedule", "list", "--at", at], settings=settings)) == 0
        table = capsys.readouterr().out.split("Found late")[0]
        return {line.split()[0]: line for line in table.splitlines() if line.startswith("  ")}

    console_port(loaded, clock)
    lines = await schedule_list("2027-05-01 12:00")
    assert "Mon 03 May 10:00 BST" in lines["pulse"]  # the round opens on the bank holiday
    assert "Tue 04 May 09:00 BST" in lines["roadmap_digest"]  # the week's first working moment
    assert "Tue 04 May 09:00 BST" in lines["leadership_digest"]
    assert "Mon 10 May 09:00 BST" in lines["milestone_checkins"]  # a week on, at work
    assert "nothing due" in lines["broadcasts"] and "never" in lines["pulse"]

    await start_at(loaded, clock, local(1, 12))
    sched = Scheduler(loaded, Always())
    clock.set(local(4, 15))
    await sched.tick()
    # The night worker's invitation waits for their shift: the scheduler wakes for it.
    assert await sched.soonest_due(clock.now()) == local(4, 17)

    out_lines = await schedule_list("2027-05-04 15:00")
    assert "Tue 04 May 17:00 BST" in out_lines["pulse"] and "caught-up" in out_lines["pulse"]
    for digest in ("roadmap_digest", "leadership_digest"):
        assert "Mon 10 May 09:00 BST" in out_lines[digest] and "skipped" in out_lines[digest]
    assert await asyncio.to_thread(lambda: main(["schedule", "list", "--at", "2027-05-04 15:00"], settings=settings)) == 0
    text = capsys.readouterr().out
    late = text.split("Found late after downtime (last 8 days):")[1].splitlines()
    assert any("pulse" in x and "open" in x and "due Mon 03 May 10:00 BST, caught up Tue 04 May 15:00 BST" in x
               for x in late)
    assert any("roadmap_digest" in x and "due Tue 04 May 09:00 BST, skipped Tue 04 May 15:00 BST" in x
               for x in late)

    assert await asyncio.to_thread(lambda: main(["schedule", "list", "--at", "Tuesday"], settings=settings)) == 2
    assert "expected a date and time like 2027-05-04 09:00" in capsys.readouterr().err


async def test_a_job_queued_when_the_scheduler_stops_leaves_no_error_in_the_log(caplog) -> None:  # type: ignore[no-untyped-def]
    """APScheduler cancels a queued job at shutdown and logs it as an error with a traceback;
    ours drops that record (nothing failed) and keeps real job errors."""
    import asyncio
    import logging
    from datetime import UTC, datetime

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    import bot.scheduling.scheduler  # noqa: F401  (installs the filter)

    async def fine() -> None:
        await asyncio.sleep(0)

    async def broken() -> None:
        raise ValueError("a real failure")

    caplog.set_level(logging.INFO, logger="apscheduler")
    aps = AsyncIOScheduler(timezone=UTC)
    aps.add_job(broken, next_run_time=datetime.now(UTC), id="broken")
    aps.start()
    await asyncio.sleep(0.2)  # the broken job runs and fails
    aps.add_job(fine, next_run_time=datetime.now(UTC), id="queued")
    aps.wakeup()
    for _ in range(100):  # until the job is handed to the executor, then stop at once
        await asyncio.sleep(0)
        if aps._executors["default"]._pending_futures:
            break
    assert aps._executors["default"]._pending_futures, "the job was never queued"
    aps.shutdown(wait=False)
    await asyncio.sleep(0.05)
    errors = [r for r in caplog.records if r.name == "apscheduler.executors.default"
              and r.levelno >= logging.ERROR]
    assert [r.exc_info[1].__class__ for r in errors if r.exc_info] == [ValueError]
