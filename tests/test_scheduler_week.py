"""The scheduler through a week of a programme, driven by a controllable clock.

Christmas week 2026 in Northbridge (Europe/London, GB-ENG holidays): Friday 25 December and
Monday 28 December (Boxing Day, substituted) are bank holidays, with a weekend between. A pulse
round opens on Thursday 24th, reminds on Tuesday 29th and closes on Wednesday 30th; a milestone
owner gets a check-in every working day at 09:30; a weekly digest goes to the leadership channel
on Thursdays at 12:00. The process is down twice: briefly (inside the grace period) and long.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from adapters.fake.port import FakePort
from bot.clock import FakeClock
from bot.core import Core
from bot.model import ConversationRef, Message, MessageRef, plain_text, text_message
from bot.people.service import person_by_email
from bot.people.tables import Person
from bot.router import Router
from bot.scheduling.jobs import once, timed
from bot.scheduling.leader import Always
from bot.scheduling.prompts import prompt_due, send_time
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tables import JobRecord, Occurrence
from bot.workhours import Pattern, is_working_moment, pattern_for

LONDON = ZoneInfo("Europe/London")
ORG = "@northbridge.example"
P1, P2, P3 = (f"practitioner{i}{ORG}" for i in (1, 2, 3))
NIGHT = f"nightduty{ORG}"
OWNER = f"lead.assessment{ORG}"
CHANNEL = "fake:W1/leadership"


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """A moment in December 2026 (London is on UTC in winter)."""
    return datetime(2026, 12, day, hh, mm, tzinfo=UTC)


OPENS, REMIND, CLOSES = at(24, 9), at(29, 10), at(30, 16)
INVITED = (P1, P2, P3, NIGHT)
ANSWERED = {P2}  # answered before the reminder, so is not reminded


class RecordingPort(FakePort):
    """A FakePort that notes the clock time of every message it carries."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.log: list[tuple[datetime, str, str]] = []

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        ref = await super().send(conversation, message)
        self.log.append((self.clock.now(), conversation.conversation_id, plain_text(message)))
        return ref


async def _person(core: Core, email: str) -> tuple[Person, Pattern]:
    async with core.db.session() as s:
        person = await person_by_email(s, email)
        assert person is not None, email
        return person, await pattern_for(s, person)


class RoundTicker:
    """Pulse round 1: invitations, a reminder to those who have not answered, closing."""

    async def __call__(self, core: Core, now: datetime) -> int:
        n = 0
        for email in INVITED:
            person, pattern = await _person(core, email)
            if await prompt_due(core, "round", f"invite:{email}", pattern, OPENS, now):
                await core.dm(person.id, text_message("Pulse round 1 is open"))
                n += 1
            if (email not in ANSWERED and now < CLOSES
                    and await prompt_due(core, "round", f"remind:{email}", pattern, REMIND, now)):
                await core.dm(person.id, text_message("Reminder: pulse round 1 closes soon"))
                n += 1
        if now >= CLOSES and await once(core, "round", "close", CLOSES, now):
            await core.post_channel(CHANNEL, text_message("Pulse round 1 closed"))
            n += 1
        return n

    async def next_due(self, core: Core, now: datetime) -> datetime | None:
        times = [CLOSES]
        for email in INVITED:
            _, pattern = await _person(core, email)
            times.append(send_time(pattern, OPENS))
            if email not in ANSWERED:
                times.append(send_time(pattern, REMIND))
        return min((t for t in times if t > now), default=None)


class CheckinTicker:
    """Milestone check-in for its owner at 09:30 on each of their working days."""

    @staticmethod
    def slot(day: date) -> datetime:
        return datetime.combine(day, time(9, 30), LONDON).astimezone(UTC)

    async def __call__(self, core: Core, now: datetime) -> int:
        person, pattern = await _person(core, OWNER)
        day = now.astimezone(LONDON).date()
        slot = self.slot(day)
        if not is_working_moment(pattern, slot):
            return 0  # a weekend or bank holiday: no check-in that day
        if await prompt_due(core, "checkin", f"checkin:{day}", pattern, slot, now):
            await core.dm(person.id, text_message("Check-in: how is 'Family network meetings' going?"))
            return 1
        return 0

    async def next_due(self, core: Core, now: datetime) -> datetime | None:
        _, pattern = await _person(core, OWNER)
        day = now.astimezone(LONDON).date()
        for i in range(14):
            slot = self.slot(day + timedelta(days=i))
            if slot > now and is_working_moment(pattern, slot):
                return slot
        return None


async def post_digest(core: Core, occurrence: datetime) -> int:
    """Weekly digest to the leadership channel."""
    await core.post_channel(CHANNEL, text_message("Weekly digest"))
    return 1


def programme_router() -> Router:
    r = Router()
    r.ticker("round", RoundTicker())
    r.ticker("checkin", CheckinTicker())
    r.ticker("digest", timed("digest", post_digest, day_of_week="thu", hour=12))
    return r


async def simulate(core: Core, clock: FakeClock, make: Callable[[], Scheduler], start: datetime,
                   end: datetime, gaps: list[tuple[datetime, datetime]],
                   step: timedelta = timedelta(hours=4)) -> None:
    """Tick every few hours and whenever a job says work is due; skip the gaps, restarting after each."""
    clock.set(start)
    sched = make()
    while clock.now() <= end:
        for down, up in gaps:
            if down <= clock.now() < up:
                clock.set(up)
                sched = make()  # a new process: nothing kept in memory
        await sched.tick()
        nxt = clock.now() + step
        soon = await sched.soonest_due(clock.now())
        clock.set(min(nxt, soon) if soon else nxt)


def dm(email: str) -> str:
    return f"D-U-{email}"


EXPECTED = [
    (at(24, 9), dm(P1), "Pulse round 1 is open"),
    (at(24, 9), dm(P2), "Pulse round 1 is open"),
    (at(24, 9), dm(P3), "Pulse round 1 is open"),
    (at(24, 9, 30), dm(OWNER), "Check-in: how is 'Family network meetings' going?"),
    (at(24, 12), "leadership", "Weekly digest"),
    (at(24, 17), dm(NIGHT), "Pulse round 1 is open"),  # the night worker's shift starts at 17:00
    # Friday 25th and Monday 28th are bank holidays, Saturday and Sunday a weekend: nothing.
    (at(29, 9, 30), dm(OWNER), "Check-in: how is 'Family network meetings' going?"),
    # Down from 09:55 to 11:30: the 10:00 reminders go once, at start, inside their grace.
    (at(29, 11, 30), dm(P1), "Reminder: pulse round 1 closes soon"),
    (at(29, 11, 30), dm(P3), "Reminder: pulse round 1 closes soon"),
    (at(29, 17), dm(NIGHT), "Reminder: pulse round 1 closes soon"),
    (at(30, 9, 30), dm(OWNER), "Check-in: how is 'Family network meetings' going?"),
    (at(30, 16), "leadership", "Pulse round 1 closed"),
    (at(31, 9, 30), dm(OWNER), "Check-in: how is 'Family network meetings' going?"),
    # Down from 11:00 to 17:00: the 12:00 digest is past its 4-hour grace and is skipped.
]
GAPS = [(at(29, 9, 55), at(29, 11, 30)), (at(31, 11), at(31, 17))]


async def test_a_week_of_prompts_each_at_its_time(loaded: Core, clock: FakeClock) -> None:
    core = loaded
    core.router = programme_router()
    port = RecordingPort(clock)
    core.add_port(port)

    await simulate(core, clock, lambda: Scheduler(core, Always(), interval_s=4 * 3600), at(24, 8), at(31, 18), GAPS)

    assert sorted(port.log) == sorted(EXPECTED)
    # Never a DM outside the recipient's own working hours.
    for when, conv, _ in port.log:
        if conv.startswith("D-U-"):
            _, pattern = await _person(core, conv[4:])
            assert is_working_moment(pattern, when), (when, conv)
    async with core.db.session() as s:
        jobs = {j.name: j for j in (await s.execute(select(JobRecord))).scalars()}
        occ = {(o.job, o.key): o for o in (await s.execute(select(Occurrence))).scalars()}
    # The digest missed beyond its grace is recorded as skipped, not silently dropped.
    assert occ[("digest", at(31, 12).isoformat())].outcome == "skipped"
    assert jobs["digest"].skipped == 1
    assert occ[("round", f"remind:{P1}")].outcome == "done"
    assert all(j.errors == 0 for j in jobs.values())


async def test_the_first_run_after_downtime_is_recorded_as_a_catch_up(
        loaded: Core, clock: FakeClock) -> None:
    core = loaded
    core.router = programme_router()
    core.add_port(RecordingPort(clock))
    clock.set(at(29, 9, 50))
    await Scheduler(core, Always()).tick()
    clock.set(at(29, 11, 30))
    results = {r.name: r for r in await Scheduler(core, Always()).tick() or []}
    assert results["round"].outcome == "caught-up" and results["round"].count == 2
    clock.set(at(31, 17))
    await Scheduler(core, Always()).tick()
    async with core.db.session() as s:
        digest = await s.get(JobRecord, "digest")
    assert digest is not None and digest.last_outcome == "skipped" and digest.skipped == 1


async def test_a_failing_job_is_recorded_and_the_others_still_run(
        loaded: Core, clock: FakeClock) -> None:
    core = loaded
    r = programme_router()

    async def broken(core: Core, now: datetime) -> int:
        raise RuntimeError("boom")

    r.tickers = {"broken": broken, **r.tickers}
    core.router = r
    port = RecordingPort(clock)
    core.add_port(port)
    clock.set(at(24, 9))
    results = {x.name: x.outcome for x in await Scheduler(core, Always()).tick() or []}
    assert results["broken"] == "error" and results["round"] == "ok"
    assert len(port.log) == 3
