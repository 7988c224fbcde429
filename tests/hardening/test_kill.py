"""The process is killed (SIGKILL) in the middle of a pulse round and of a broadcast; a new
process picks up; we count what everyone received."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text

from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.liveness import NAMESPACE, lock_key
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Broadcast, Delivery, WorkspaceLease
from bot.core import Core
from bot.people.tables import Person
from bot.programme.core_sections import get_setting
from bot.pulse.tables import PulseParticipation
from bot.workhours import Pattern, is_working_moment
from storage.db import Database
from tests.conftest import MONDAY_10, PG_URL, ROOT
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform
from tests.hardening.runner import FAST, MondayClock
from tests.test_broadcast_engine import everyone_count, open_dms, publish


@pytest.fixture
async def platform() -> AsyncIterator[RateLimitedPlatform]:
    # Slow enough (30 ms a send) that a kill lands in the middle of the work.
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50,
                                           latency_s=0.03))
    await p.start()
    yield p
    await p.stop()


async def start(mode: str, db_url: str, platform: RateLimitedPlatform,
                epoch: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.hardening.runner", mode, db_url, platform.url, str(epoch),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"started", line + (await proc.stderr.read() if proc.stderr else b"")
    return proc


async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def until_done(core: Core, bid: str, timeout: float = 60.0) -> None:
    """Until the broadcast's state is "done" (its last state in the failure message)."""

    async def state() -> str:
        async with core.db.session() as s:
            return str((await s.get(Broadcast, bid)).state)  # type: ignore[union-attr]

    deadline = time.monotonic() + timeout
    while await state() != "done":
        assert time.monotonic() < deadline, await state()
        await asyncio.sleep(0.05)


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.wait()


async def test_killed_during_a_pulse_round_nobody_is_missed(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    await open_dms(loaded)
    epoch = time.time()
    # After 6 invitations the platform holds further sends in flight, so the kill always lands
    # mid-round with requests outstanding (a fast machine once sent all 24 before the kill).
    platform.hold_after = 6
    first = await start("pulse", db_url, platform, epoch)
    await until(lambda: platform.held >= 1)
    await kill(first)
    killed_after = len(platform.deliveries)
    platform.release()  # what was in flight reaches the platform; the answers are lost

    second = await start("pulse", db_url, platform, epoch)
    assert second.stdout is not None
    try:
        assert (await asyncio.wait_for(second.stdout.readline(), 60)).strip() == b"done"
        await second.wait()
    finally:
        if second.returncode is None:  # never leave it running after a failure
            await kill(second)

    async with loaded.db.session() as s:
        parts = (await s.execute(select(PulseParticipation))).scalars().all()
        prog = await get_setting(s, "programme", {})
        at_work = {p.id for p in (await s.execute(select(Person))).scalars()
                   if is_working_moment(Pattern.from_settings(prog, p.tz, p.work_pattern), MONDAY_10)}
    invited = [p for p in parts if p.invited_at is not None]
    per_conversation = Counter(d.conversation for d in platform.deliveries
                               if "question 1 of 7" in d.text)
    assert 0 < killed_after < len(invited), "the kill landed in the middle of the round"
    assert {p.person_id for p in invited} == {p.person_id for p in parts if p.person_id in at_work}, \
        "everyone at work was invited"
    assert len(per_conversation) == len(invited), "every invitation reached its DM"
    # Invitations go through the delivery ledger: the ones in flight when the process died are
    # looked up by their key before being sent again, so none is sent twice, none is missed.
    twice = sum(per_conversation.values()) - len(per_conversation)
    assert twice == 0, per_conversation
    print(f"pulse kill: {killed_after} sent before the kill, {len(invited)} invited, {twice} twice")


async def test_killed_during_a_broadcast_the_next_process_finishes_it_without_duplicates(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    from adapters.fake.http_port import HttpPort

    await open_dms(loaded)
    hp = HttpPort(platform.url)
    loaded.add_port(hp)  # the audience is everyone on the connected platforms
    try:
        bid = await publish(loaded)
    finally:
        await hp.close()
    n = await everyone_count(loaded)
    epoch = time.time()
    first = await start("broadcast", db_url, platform, epoch)
    await until(lambda: len(platform.keyed()) >= 6)
    await kill(first)
    killed_after = len(platform.keyed())
    assert killed_after < n, "the kill landed in the middle of the broadcast"

    second = await start("broadcast", db_url, platform, epoch)
    try:
        await until(lambda: len(platform.keys()) >= n, timeout=90)

        await until_done(loaded, bid, timeout=30)
    finally:
        await kill(second)
    assert len(platform.keys()) == n and platform.duplicates() == 0


# pg_locks lists the whole cluster's locks: only this database's are ours (another run on the
# same server has its own "replica-a", whose backend this test must not count or terminate).
A_LOCK = ("FROM pg_locks WHERE locktype = 'advisory' AND classid = :n AND objid = :k "
          "AND objsubid = 2 "
          "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def lock(sender_id: str) -> dict[str, int]:
    return {"n": NAMESPACE, "k": lock_key(sender_id) & 0xFFFFFFFF}


async def until_waiting(core: Core, holder: str) -> None:
    """Until another replica waits on `holder`'s liveness lock."""
    deadline = time.monotonic() + 60
    while True:
        async with core.db.session() as s:
            if await s.scalar(text(f"SELECT count(*) {A_LOCK} AND NOT granted"), lock(holder)):
                return
        assert time.monotonic() < deadline, "nobody waits on the lock"
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not PG_URL, reason="the liveness lock is PostgreSQL's")
async def test_a_standby_replica_takes_over_the_moment_the_sending_one_is_killed(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    """Two replicas under their own ids: the one sending is killed with sends in flight, and
    its leases would last an hour; the other learns from PostgreSQL that it is gone, takes its
    workspace and its rows, asks the platform about those in flight, and finishes: everyone
    once, nobody twice."""
    from adapters.fake.http_port import HttpPort

    await open_dms(loaded)
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    try:
        bid = await publish(loaded)
    finally:
        await hp.close()
    n = await everyone_count(loaded)
    epoch = time.time()
    platform.hold_after = 6  # the holder is killed with requests outstanding
    holder = await start("broadcast-holder", db_url, platform, epoch)
    await until(lambda: platform.held >= 1)  # it holds the workspace, and sends are in flight

    core = Core(Database(db_url), settings=loaded.settings, clock=MondayClock(epoch))
    port = HttpPort(platform.url)
    core.add_port(port)
    standby = Sender(core, sender_id="replica-standby", limiter=Limiter(FAST), batch=4,
                     send_timeout_s=2.0)
    stop = asyncio.Event()
    running = asyncio.create_task(standby.run(stop, poll_s=0.1))
    try:
        await until_waiting(loaded, "replica-holder")  # it waits on the holder's lock
        assert standby.stats.sent == 0
        await kill(holder)
        platform.release()  # what was in flight reaches the platform; the answers are lost

        await until_done(loaded, bid)
    finally:
        stop.set()
        await running
        if holder.returncode is None:  # never leave it running after a failure
            await kill(holder)
        await port.close()
        await core.db.dispose()

    assert len(platform.keys()) == n and platform.duplicates() == 0
    async with loaded.db.session() as s:
        rows = (await s.execute(select(Delivery).where(Delivery.broadcast_id == bid))).scalars().all()
        lease = (await s.execute(select(WorkspaceLease))).scalars().one()
    assert len(rows) == n and {r.state for r in rows} == {"sent"}
    assert {r.conversation["conversation_id"] for r in rows} == {d.conversation for d in platform.keyed()}
    # The standby recorded every row the holder had not: the sends in flight when it was killed
    # were found on the platform (not sent again), the others sent.
    by_holder = sum(1 for r in rows if r.claimed_by == "replica-holder")
    assert 0 < by_holder < n and standby.stats.sent == n - by_holder
    assert standby.stats.reconciled >= 1
    assert lease.holder == "replica-standby"


@pytest.mark.skipif(not PG_URL, reason="the liveness lock is PostgreSQL's")
async def test_a_replica_cut_off_from_its_lock_stops_sending_what_another_took_over(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    """The sending replica is alive but its lock's connection is cut (a server restart, a
    proxy): the standby takes over its workspace and rows at once. The cut-off replica still has
    a slowly paced batch in hand; it must not send those rows, or they would go twice."""
    from adapters.fake.http_port import HttpPort

    await open_dms(loaded)
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    try:
        bid = await publish(loaded)
    finally:
        await hp.close()
    n = await everyone_count(loaded)
    clock = MondayClock(time.time())
    cores, ports, runs = [], [], []
    stop = asyncio.Event()

    def replica(name: str, limiter: Limiter, batch: int) -> Sender:
        core = Core(Database(db_url), settings=loaded.settings, clock=clock)
        port = HttpPort(platform.url)
        core.add_port(port)
        cores.append(core)
        ports.append(port)
        sender = Sender(core, sender_id=name, limiter=limiter, batch=batch, send_timeout_s=2.0)
        runs.append(asyncio.create_task(sender.run(stop, poll_s=0.1)))
        return sender

    try:
        # Two sends a second: most of its batch of 12 is still waiting its turn when cut off.
        a = replica("replica-a", Limiter({"fakehttp": Limits(2.0, 2.0)}), 12)
        await until(lambda: len(platform.keyed()) >= 2)
        b = replica("replica-b", Limiter(FAST), 4)
        await until_waiting(loaded, "replica-a")  # b waits on a's lock
        async with loaded.db.session() as s:
            cut = await s.scalar(text(
                f"SELECT count(pg_terminate_backend(pid)) {A_LOCK} AND granted"), lock("replica-a"))
        assert cut == 1

        await until_done(loaded, bid)
    finally:
        stop.set()
        await asyncio.gather(*runs)
        for core, port in zip(cores, ports, strict=True):
            await port.close()
            await core.db.dispose()

    assert len(platform.keys()) == n and platform.duplicates() == 0
    # A send in flight at the cut lands: `a` counts it, and `b`, taking the row over in doubt,
    # finds it delivered (reconciled, not sent again) and counts it too. How many such sends
    # there are depends on where the cut falls between a's paced sends.
    assert n <= a.stats.sent + b.stats.sent <= n + b.stats.reconciled
    assert b.stats.sent > n // 2
    async with loaded.db.session() as s:
        rows = (await s.execute(select(Delivery).where(Delivery.broadcast_id == bid))).scalars().all()
    assert len(rows) == n and {r.state for r in rows} == {"sent"}
