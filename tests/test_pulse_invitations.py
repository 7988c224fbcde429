"""Stories: a pulse round's invitations go through the delivery ledger, exactly once each.

The sender is killed again and again in the middle of a round (with sends in flight); it comes
back under the same name, or another replica takes over once its leases ran out. Everyone at
work is invited once: nobody twice, nobody missed. The platform is the rate-limited fake over
HTTP, which does not deduplicate, so a repeat would be counted. Runs on SQLite and, with
STAFFVOICE_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from adapters.fake.http_port import HttpPort
from bot.broadcasts import ledger
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Identity, Person
from bot.programme.core_sections import get_setting
from bot.pulse import invitations
from bot.pulse import service as pulse
from bot.pulse.tables import PulseParticipation, PulseSurvey
from bot.workhours import Pattern, is_working_moment
from tests.conftest import MONDAY_10
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform

FAST = {"fakehttp": Limits(workspace_per_s=2000, conversation_per_s=2000, burst=20)}
INVITE = "question 1 of 7"
SURVEY = "weekly-pulse"


@pytest.fixture
async def platform(loaded: Core) -> AsyncIterator[RateLimitedPlatform]:
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50,
                                           latency_s=0.005))
    await p.start()
    hp = HttpPort(p.url)
    loaded.add_port(hp)
    yield p
    await hp.close()
    await p.stop()


async def staff(core: Core, n: int) -> None:
    """`n` more people in the office; everyone has a known DM on the fake platform."""
    async with core.db.session() as s:
        for i in range(n):
            s.add(Person(email=f"staff{i}@northbridge.example", display_name=f"Staff {i}"))
        await s.flush()
        for pid, email in (await s.execute(select(Person.id, Person.email))).all():
            uid = f"U-{email}"
            s.add(Identity(platform="fakehttp", workspace="W1", user_id=uid, person_id=pid,
                           dm={"platform": "fakehttp", "workspace": "W1",
                               "conversation_id": f"D-{uid}", "is_direct": True, "data": []}))


async def open_and_queue(core: Core) -> str:
    """The weekly round opens at Monday 10:00 and its invitations are queued (none sent)."""
    async with core.db.session() as s:
        survey = await s.get(PulseSurvey, SURVEY)
        assert survey is not None
        rnd = await pulse.open_round(s, survey, MONDAY_10, core.secret)
        assert rnd is not None
        rid = rnd.id
    queued = await invitations.enqueue(core, rid, MONDAY_10, MONDAY_10, "pulse")
    assert queued > 0
    return rid


async def at_work(core: Core) -> set[str]:
    """The DM conversations of everyone asked who is at work on Monday at 10:00."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {})
        people = (await s.execute(select(Person))).scalars().all()
        return {f"D-U-{p.email}" for p in people
                if is_working_moment(Pattern.from_settings(prog, p.tz, p.work_pattern),
                                     MONDAY_10)}


def invitations_by_conversation(platform: RateLimitedPlatform) -> Counter[str]:
    """Every invitation the platform delivered (keyed or not), per DM."""
    return Counter(d.conversation for d in platform.deliveries if INVITE in d.text)


async def kill_mid_send(core: Core, platform: RateLimitedPlatform, name: str) -> None:
    """Start a sender, let a few more invitations through, then kill it with sends in flight."""
    platform.hold_after = len(platform.keyed()) + 5
    platform.held = 0
    sender = Sender(core, sender_id=name, limiter=Limiter(FAST), batch=8, send_timeout_s=2.0)
    task = asyncio.create_task(sender.drain())
    while platform.held == 0:  # a sender that ended first fails here, not hangs
        assert not task.done(), task
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    platform.release()
    await asyncio.sleep(0.1)  # the requests the dead sender had in flight land


async def due_now(core: Core) -> int:
    now = core.clock.now()
    async with core.db.session() as s:
        return int(await s.scalar(select(func.count()).where(
            Delivery.kind == "pulse", Delivery.state.in_(ledger.OPEN),
            Delivery.not_before.is_(None) | (Delivery.not_before <= now))) or 0)


async def test_a_sender_killed_four_times_mid_round_invites_everyone_at_work_once(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await staff(loaded, 60)
    rid = await open_and_queue(loaded)
    expected = await at_work(loaded)
    for i in range(4):
        await kill_mid_send(loaded, platform, "replica-a")
        async with loaded.db.session() as s:
            stuck = await s.scalar(select(func.count()).where(Delivery.state == "sending"))
        assert stuck, "the kill left invitations whose outcome is unknown"
        if i % 2 == 0:  # it comes back under its own name: its rows are in doubt at once
            assert await Sender(loaded, sender_id="replica-a", send_timeout_s=2.0).recover()
        else:  # or another replica finds them once their leases ran out
            clock.advance(timedelta(seconds=61))
            assert await ledger.release_stale(loaded.db, clock.now())
        clock.advance(timedelta(seconds=3))  # past the in-doubt grace
    assert 0 < len(platform.keyed()) < len(expected), "the kills landed mid-round"
    survivor = Sender(loaded, sender_id="replica-b", limiter=Limiter(FAST), batch=8)
    for _ in range(10):
        await survivor.drain()
        if not await due_now(loaded):
            break
        clock.advance(timedelta(seconds=5))

    got = invitations_by_conversation(platform)
    assert set(got) == expected, "everyone at work was invited, nobody else yet"
    assert max(got.values()) == 1 and platform.duplicates() == 0, "nobody twice"
    assert survivor.stats.reconciled > 0, "in-flight sends were found by their key, not resent"
    async with loaded.db.session() as s:
        invited = list((await s.execute(
            select(Identity.dm).join(PulseParticipation,
                                     PulseParticipation.person_id == Identity.person_id)
            .where(PulseParticipation.round_id == rid,
                   PulseParticipation.invited_at.is_not(None)))).scalars())
    assert {d["conversation_id"] for d in invited} == expected, "participation says who has it"


async def test_the_night_worker_is_invited_when_their_shift_starts_and_not_before(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await staff(loaded, 0)
    await open_and_queue(loaded)
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    night = "D-U-nightduty@northbridge.example"
    assert night not in invitations_by_conversation(platform)
    clock.set(MONDAY_10 + timedelta(hours=7, minutes=1))  # 17:01, their shift
    await sender.drain()
    assert invitations_by_conversation(platform)[night] == 1


async def test_someone_who_leaves_before_their_shift_is_not_invited(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await staff(loaded, 0)
    await open_and_queue(loaded)  # the night worker's invitation waits for 17:00
    async with loaded.db.session() as s:
        await s.execute(update(Person).where(Person.email == "nightduty@northbridge.example")
                        .values(left_on=MONDAY_10.date()))
    clock.set(MONDAY_10 + timedelta(hours=7, minutes=1))
    await Sender(loaded, limiter=Limiter(FAST)).drain()
    assert "D-U-nightduty@northbridge.example" not in invitations_by_conversation(platform)
    async with loaded.db.session() as s:
        row = (await s.execute(select(Delivery).join(Person, Person.id == Delivery.person_id)
                               .where(Person.email == "nightduty@northbridge.example"))).scalar_one()
    assert row.state == "skipped" and "no longer asked" in (row.error or "")


async def test_a_paused_surveys_invitations_wait_and_go_after_resume(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await staff(loaded, 0)
    await open_and_queue(loaded)
    async with loaded.db.session() as s:
        await s.execute(update(PulseSurvey).values(paused=True))
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    assert invitations_by_conversation(platform) == Counter()
    async with loaded.db.session() as s:
        await s.execute(update(PulseSurvey).values(paused=False))
    clock.advance(timedelta(seconds=invitations.PAUSED_RECHECK_S + 1))
    await sender.drain()
    assert set(invitations_by_conversation(platform)) == await at_work(loaded)


async def test_closing_the_round_deletes_its_invitation_rows(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    """The ledger rows name who was asked in the round: they go when the round closes."""
    await staff(loaded, 0)
    rid = await open_and_queue(loaded)
    await Sender(loaded, limiter=Limiter(FAST)).drain()
    async with loaded.db.session() as s:
        assert await s.scalar(select(func.count()).where(Delivery.subject == rid))
        rnd = await pulse.round_by_id(s, rid)
        assert rnd is not None
        await pulse.close_round(s, rnd, clock.now(), loaded.secret)
    async with loaded.db.session() as s:
        left = await s.scalar(select(func.count()).where(Delivery.kind == "pulse"))
        rnd = await pulse.round_by_id(s, rid)
    assert left == 0
    assert rnd is not None and rnd.n_invited == len(await at_work(loaded))


async def test_admitting_latecomers_reads_only_the_joiners_not_the_audience(
    loaded: Core, platform: RateLimitedPlatform
) -> None:
    await staff(loaded, 40)
    await open_and_queue(loaded)
    async with loaded.db.session() as s:
        s.add(Person(email="agency.worker@northbridge.example", display_name="Agency Worker",
                     team_id="assessment"))
    loads: list[str] = []

    def on_load(person: Person, _ctx: object) -> None:
        loads.append(person.email or "")

    event.listen(Person, "load", on_load)
    try:
        async with loaded.db.session() as s:
            survey = await s.get(PulseSurvey, SURVEY)
            rnd = await pulse.open_round_of(s, SURVEY)
            assert survey is not None and rnd is not None
            assert await pulse.admit_latecomers(s, rnd, survey) == 1
            assert await pulse.admit_latecomers(s, rnd, survey) == 0  # once
    finally:
        event.remove(Person, "load", on_load)
    # A set-based query: the audience (45 people) is not read to find the one joiner.
    assert loads == []
    async with loaded.db.session() as s:
        joined = await s.scalar(select(func.count()).select_from(PulseParticipation).join(
            Person, Person.id == PulseParticipation.person_id).where(
            Person.email == "agency.worker@northbridge.example"))
    assert joined == 1


async def test_the_scheduler_killed_mid_round_then_a_minute_later_nobody_is_invited_twice(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    """Only the scheduled work (`tick`), as a process runs it: stopped hard while invitations
    are in flight, and run again a minute later by the next process."""
    platform.config.latency_s = 0.02  # a send in flight when the process stops
    await staff(loaded, 60)
    expected = await at_work(loaded)
    first = asyncio.create_task(loaded.tick())
    # Stopped when at least 5 went and one more is in flight (arrived, not answered yet).
    while len(platform.deliveries) < 5 or platform.requests == len(platform.deliveries):
        await asyncio.sleep(0.001)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(0.2)  # what was in flight lands
    assert 0 < len(platform.deliveries) < len(expected)
    clock.advance(timedelta(seconds=61))
    await loaded.tick()
    clock.advance(timedelta(seconds=5))
    await loaded.tick()
    got = invitations_by_conversation(platform)
    assert set(got) == expected and max(got.values()) == 1, got
