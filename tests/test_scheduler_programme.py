"""The real features on the scheduler through a week of the example programme.

Saturday 1 May to Monday 10 May 2027 in Northbridge (Europe/London, summer time): a weekend,
the Early May bank holiday on Monday 3rd, and the process down on Tuesday morning from 08:30
to 11:00. The scheduler ticks hourly, as `staffvoice serve` would with
STAFFVOICE_SCHEDULER_INTERVAL=3600 (the default 30 s gives the same times, slower to simulate). Every message the platform receives is asserted, with its
local time: pulse invitations and reminders, a milestone check-in, the two weekly digests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Person
from bot.pulse.tables import PulseParticipation, PulseRound
from bot.scheduling.leader import Always
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tables import JobRecord
from tests.test_scheduler_week import RecordingPort

LONDON = ZoneInfo("Europe/London")
ORG = "@northbridge.example"
NIGHT = f"nightduty{ORG}"
ANSWERED = f"practitioner2{ORG}"


def local(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2027, 5, day, hh, mm, tzinfo=LONDON)


def kind(conv: str, text: str) -> str:
    """What a message is, from its first line (the features own the wording)."""
    first = text.strip().splitlines()[0].lower()
    if not conv.startswith("D-U-"):
        return "leadership digest" if "leadership" in first else "roadmap digest"
    if "reminder" in first:
        return "pulse reminder"
    if "check-in" in first:
        return "check-in"
    return "pulse invitation"


STEP = timedelta(hours=1)
DOWN, UP = local(4, 8, 30), local(4, 11)


def console_port(core: Core, clock: FakeClock) -> RecordingPort:
    port = RecordingPort(clock)
    port.platform, port.workspace = "console", "local"  # the example's channels are console:local/...
    core.add_port(port)
    return port


async def drive(core: Core, clock: FakeClock, tick: Callable[[], Awaitable[None]],
                outage: Callable[[], Awaitable[bool]]) -> None:
    """Tick hourly from Saturday noon to the next Monday; `outage` runs at Tuesday 08:30 and
    says whether the service was down (the clock then jumps to 11:00)."""
    clock.set(local(1, 12))
    hit = False
    while clock.now() <= local(10, 10):
        if not hit and clock.now() >= DOWN:
            hit = True
            if await outage():
                clock.set(UP)
        await tick()
        if clock.now() == local(4, 12):
            async with core.db.session() as s:  # one person finishes the survey before Wednesday
                pid = (await s.execute(select(Person.id).where(Person.email == ANSWERED))).scalar_one()
                await s.execute(update(PulseParticipation)
                                .where(PulseParticipation.person_id == pid).values(finished=True))
        clock.advance(STEP)


def seen(port: RecordingPort) -> Counter[tuple[str, str, str]]:
    return Counter(
        (t.astimezone(LONDON).strftime("%a %d %H:%M"), kind(conv, text),
         conv.removeprefix("D-U-"))
        for t, conv, text in port.log
    )


async def expected(core: Core, tuesday: str) -> Counter[tuple[str, str, str]]:
    """Every message of the week; Tuesday's first working moment's work goes at `tuesday`."""
    async with core.db.session() as s:
        everyone = sorted((await s.execute(select(Person.email))).scalars())
    office = [e for e in everyone if e != NIGHT]
    out: Counter[tuple[str, str, str]] = Counter()

    def add(when: str, what: str, who: list[str]) -> None:
        for w in who:
            out[(when, what, w)] += 1

    # Saturday, Sunday and the bank holiday Monday: nothing.
    add(f"Tue 04 {tuesday}", "roadmap digest", ["change-updates"])
    add(f"Tue 04 {tuesday}", "leadership digest", ["leadership"])
    add(f"Tue 04 {tuesday}", "pulse invitation", office)
    add("Tue 04 17:00", "pulse invitation", [NIGHT])  # the night worker's shift starts at 17:00
    add("Wed 05 10:00", "pulse reminder", [e for e in office if e != ANSWERED])
    add("Wed 05 17:00", "pulse reminder", [NIGHT])
    # The next week: the weekly check-in (a week after the roadmap was first seen, Saturday, so
    # at the owner's next working moment), both digests, then Monday's new round.
    add("Mon 10 09:00", "check-in", [f"changeofficer{ORG}"])
    add("Mon 10 09:00", "roadmap digest", ["change-updates"])
    add("Mon 10 09:00", "leadership digest", ["leadership"])
    add("Mon 10 10:00", "pulse invitation", office)
    return out


async def test_a_week_of_the_example_programme_on_the_real_features(
        loaded: Core, clock: FakeClock) -> None:
    core = loaded
    port = console_port(core, clock)
    sched = Scheduler(core, Always(), interval_s=STEP.total_seconds())

    async def tick() -> None:
        await sched.tick()

    async def outage() -> bool:
        nonlocal sched
        sched = Scheduler(core, Always(), interval_s=STEP.total_seconds())  # restarted at 11:00
        return True

    await drive(core, clock, tick, outage)

    # Tuesday's 09:00 fell in the outage, so what was due then went out once, after the restart.
    want = await expected(core, "11:00")
    got = seen(port)
    assert got == want, (got - want, want - got)

    async with core.db.session() as s:
        rounds = list((await s.execute(select(PulseRound).order_by(PulseRound.opens_at))).scalars())
        jobs = {j.name: j for j in (await s.execute(select(JobRecord))).scalars()}
    # The round opened on the bank holiday itself (its invitations waited) and closed on Friday.
    assert [r.opens_at for r in rounds] == [local(3, 10), local(10, 10)]
    assert rounds[0].state == "closed" and rounds[0].closes_at == local(7, 17)
    assert {"pulse", "milestone_checkins", "roadmap_digest", "leadership_digest"} <= set(jobs)
    assert all(j.errors == 0 for j in jobs.values()), {n: j.errors for n, j in jobs.items()}
    assert jobs["pulse"].last_run_at == local(10, 10)
