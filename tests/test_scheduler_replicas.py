"""Two replicas on one PostgreSQL: exactly one schedules, and the other takes over when it dies."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from bot.router import Router
from bot.scheduling.leader import PgLeader
from bot.scheduling.scheduler import Scheduler
from storage.db import Database
from tests.conftest import PG_URL
from tests.test_scheduler_week import (
    CHANNEL,
    EXPECTED,
    NIGHT,
    P1,
    P3,
    RecordingPort,
    at,
    dm,
    programme_router,
)

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (STAFFVOICE_TEST_DATABASE_URL)")

REMINDER = "Reminder: pulse round 1 closes soon"
# Without downtime the reminders go at 10:00 and the Thursday digest on the 31st is sent.
EXPECTED_NO_GAPS = sorted(
    [e for e in EXPECTED if e[2] != REMINDER or e[1] == dm(NIGHT)]
    + [(at(29, 10), dm(P1), REMINDER), (at(29, 10), dm(P3), REMINDER),
       (at(31, 12), CHANNEL.rpartition("/")[2], "Weekly digest")]
)


async def _kill_backend(db: Database, pid: int) -> None:
    """Terminate a session from outside, as if its machine had died, and wait until it is gone."""
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await conn.commit()
        for _ in range(100):
            left = (await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                                       {"p": pid})).scalar()
            await conn.commit()
            if not left:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the leader's session did not end")


async def test_two_replicas_run_a_week_without_duplicates_and_the_survivor_takes_over(
        loaded: Core, clock: FakeClock, settings: Settings) -> None:
    port = RecordingPort(clock)
    other = Core(Database(PG_URL), settings=settings, clock=clock)
    cores = [loaded, other]
    for c in cores:
        c.router = programme_router()
        c.add_port(port)
        await c.start()
    leaders = [PgLeader(PG_URL), PgLeader(PG_URL)]
    replicas = [Scheduler(c, lead, interval_s=4 * 3600, instance=f"replica-{i}")
                for i, (c, lead) in enumerate(zip(cores, leaders, strict=True))]
    alive = [0, 1]
    who: list[tuple[datetime, int]] = []
    killed_at: datetime | None = None
    try:
        clock.set(at(24, 8))
        while clock.now() <= at(31, 18):
            if killed_at is None and clock.now() >= at(29, 12):
                dead = who[-1][1]
                assert leaders[dead].backend_pid is not None
                await _kill_backend(loaded.db, leaders[dead].backend_pid)
                alive.remove(dead)  # the leader's process is gone with its connection
                killed_at = clock.now()
            results = await asyncio.gather(*(replicas[i].tick() for i in alive))
            ran = [i for i, r in zip(alive, results, strict=True) if r is not None]
            assert len(ran) == 1, f"{len(ran)} replicas ran the jobs at {clock.now()}"
            who.append((clock.now(), ran[0]))
            soon = [t for i in alive if (t := await replicas[i].soonest_due(clock.now()))]
            nxt = clock.now() + timedelta(hours=4)
            clock.set(min([nxt, *soon]))
    finally:
        for lead in leaders:
            await lead.release()
        await other.db.dispose()

    assert len(port.log) == len(set(port.log)), "a prompt was sent twice"
    assert sorted(port.log) == EXPECTED_NO_GAPS
    assert killed_at is not None
    before = {i for t, i in who if t < killed_at}
    after = {i for t, i in who if t >= killed_at}
    assert len(before) == 1 and len(after) == 1 and before != after
    # The survivor's very next tick after the death ran the jobs: no prompt waited for it.
    assert next(t for t, i in who if i in after) == killed_at


async def test_a_dead_leader_is_replaced_in_real_time(loaded: Core, settings: Settings) -> None:
    """With APScheduler running: the standby takes the lock on its next leadership check."""
    cores = [Core(Database(PG_URL), settings=settings, router=Router()) for _ in range(2)]
    leaders = [PgLeader(PG_URL), PgLeader(PG_URL)]
    replicas = [Scheduler(c, lead, interval_s=0.5, check_s=0.2) for c, lead in zip(cores, leaders, strict=True)]
    try:
        for r in replicas:
            r.start()
        for _ in range(100):
            if sum(r.is_leader for r in replicas) == 1:
                break
            await asyncio.sleep(0.05)
        first = next(i for i, r in enumerate(replicas) if r.is_leader)
        standby = replicas[1 - first]
        await _kill_backend(cores[0].db, leaders[first].backend_pid or 0)
        await replicas[first].stop()  # its process is gone
        started = time.monotonic()
        while not (standby.is_leader and standby.ticks):
            assert time.monotonic() - started < 5, "the standby never took over"
            await asyncio.sleep(0.05)
        # A 0.2 s check interval takes over (and ticks) in well under a second; production
        # checks every 15 s, so a dead leader is replaced within a minute.
        assert time.monotonic() - started < 2
    finally:
        for r in replicas:
            await r.stop()
        for c in cores:
            await c.db.dispose()


async def test_two_replicas_run_the_real_features_through_a_week_and_survive_a_dead_leader(
        loaded: Core, clock: FakeClock, settings: Settings) -> None:
    """The example programme on every feature: the leader dies on Tuesday at 08:30 and the
    survivor sends Tuesday's 09:00 work on time; nothing is sent twice all week."""
    from tests.test_scheduler_programme import STEP, console_port, drive, expected, seen

    other = Core(Database(PG_URL), settings=settings, clock=clock)
    port = console_port(loaded, clock)
    other.add_port(port)
    await other.start()
    leaders = [PgLeader(PG_URL), PgLeader(PG_URL)]
    replicas = [Scheduler(c, lead, interval_s=STEP.total_seconds(), instance=f"replica-{i}")
                for i, (c, lead) in enumerate(zip([loaded, other], leaders, strict=True))]
    alive = [0, 1]
    ran_by: list[int] = []

    async def tick() -> None:
        results = await asyncio.gather(*(replicas[i].tick() for i in alive))
        ran = [i for i, r in zip(alive, results, strict=True) if r is not None]
        assert len(ran) == 1, f"{len(ran)} replicas ran the jobs at {clock.now()}"
        ran_by.append(ran[0])

    async def outage() -> bool:
        dead = ran_by[-1]
        await _kill_backend(loaded.db, leaders[dead].backend_pid or 0)
        alive.remove(dead)
        return False  # the service stays up: the other replica carries on

    try:
        await drive(loaded, clock, tick, outage)
    finally:
        for lead in leaders:
            await lead.release()
        await other.db.dispose()

    assert len(set(ran_by)) == 2  # both led, one after the other
    want = await expected(loaded, "09:00")
    got = seen(port)
    assert got == want, (got - want, want - got)
