"""Stories (PostgreSQL): several replicas send one broadcast, and the workspace still sees no
more than its rate limit, because only one replica at a time holds a workspace's send lease.

Each replica's limiter paces only its own sends; without the lease, two replicas send at twice
the limit and the platform would answer 429s. With it, the second replica takes other workspaces
or waits; a replica that dies holds its lease until it runs out, then another takes over.

The limits are judged on the slots the replicas' limiters granted (tests/pacing.py), replayed into
the platform's token bucket: arrival times would judge the machine's scheduling instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from adapters.fake.http_port import HttpPort
from bot.broadcasts import leases, ledger, service
from bot.broadcasts.limiter import Limits
from bot.broadcasts.sender import Sender
from bot.clock import FakeClock
from bot.core import Core
from bot.model import ConversationRef, Message, MessageRef
from bot.people.tables import Identity, Person
from storage.db import Database
from tests.conftest import PG_URL
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform
from tests.pacing import RecordingLimiter, rate, refusals

pytestmark = pytest.mark.skipif(not PG_URL, reason="replicas share a PostgreSQL ledger")
RATE = 40.0
BURST = 3.0  # a lease changing hands between passes starts the new holder's limiter afresh
CHANGE = "changelead@northbridge.example"


@pytest.fixture
async def platform(loaded: Core) -> AsyncIterator[RateLimitedPlatform]:
    # The platform itself does not throttle: the stories judge the limiters' slots against a
    # bucket of RATE per second and a burst of BURST (a stalled event loop cannot fail them).
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50))
    await p.start()
    hp = HttpPort(p.url)
    loaded.add_port(hp)  # the replica the change team talks to queues the broadcast
    yield p
    await hp.close()
    await p.stop()


async def settle(senders: list[Sender], bid: str, clock: FakeClock) -> list[int]:
    """Run every replica's sender at once until the broadcast is done; sends per replica."""
    sent = [0] * len(senders)
    for _ in range(20):
        before = [s.stats.sent for s in senders]
        await asyncio.gather(*(s.drain() for s in senders))
        sent = [a + s.stats.sent - b for a, s, b in zip(sent, senders, before, strict=True)]
        if (await service.status(senders[0].core, bid)).broadcast.state == "done":
            return [s.stats.sent for s in senders]
        clock.advance(timedelta(seconds=2))
    raise AssertionError("the broadcast never finished")


async def staff(core: Core, n: int, workspaces: tuple[str, ...]) -> int:
    """`n` more people; everyone spread over the workspaces with a known DM, on office hours
    (the night worker's shift has its own stories). Returns how many people there are."""
    async with core.db.session() as s:
        await s.execute(update(Person).values(work_pattern=None))
        for i in range(n):
            s.add(Person(email=f"staff{i}@northbridge.example", display_name=f"Staff {i}"))
        await s.flush()
        ids = list((await s.execute(select(Person.id).order_by(Person.id))).scalars())
        for i, pid in enumerate(ids):
            ws, uid = workspaces[i % len(workspaces)], f"U{i}"
            s.add(Identity(platform="fakehttp", workspace=ws, user_id=uid, person_id=pid,
                           dm={"platform": "fakehttp", "workspace": ws, "conversation_id": f"D-{uid}",
                               "is_direct": True, "data": []}))
    return len(ids)


async def publish(core: Core, audience: str) -> str:
    async with core.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    return await service.publish_to_staff(core, author, title="Early win", text="Thank you all.",
                                          audience=audience)


class RecordingPort(HttpPort):
    """The replica's port, noting when each broadcast send to a workspace was in flight."""

    def __init__(self, url: str, name: str, log: list[tuple[str, float, float, str]]) -> None:
        super().__init__(url)
        self.name, self.log = name, log

    async def send_keyed(self, conversation: ConversationRef, message: Message,
                         key: str) -> MessageRef:
        start = time.monotonic()
        try:
            return await super().send_keyed(conversation, message, key)
        finally:
            self.log.append((conversation.workspace, start, time.monotonic(), self.name))


def one_at_a_time(log: list[tuple[str, float, float, str]]) -> dict[str, list[str]]:
    """Per workspace, the replicas that sent to it in turn; fails if two ever overlapped."""
    turns: dict[str, list[str]] = {}
    for ws in {w for w, *_ in log}:
        sends = sorted((a, b, who) for w, a, b, who in log if w == ws)
        runs: list[list[tuple[float, float, str]]] = []
        for send in sends:
            if runs and runs[-1][-1][2] == send[2]:
                runs[-1].append(send)
            else:
                runs.append([send])
        for prev, nxt in zip(runs, runs[1:], strict=False):
            assert max(b for _, b, _ in prev) <= nxt[0][0], f"{ws}: two replicas sent at once"
        turns[ws] = [r[0][2] for r in runs]
    return turns


async def replicas(core: Core, platform: RateLimitedPlatform, clock: FakeClock, n: int = 2,
                   log: list[tuple[str, float, float, str]] | None = None
                   ) -> tuple[list[Core], list[HttpPort]]:
    cores, ports = [], []
    for i in range(n):  # own engine, own pool, own port, own limiter: separate processes
        c = Core(Database(core.db.url), settings=core.settings, clock=clock)
        hp = RecordingPort(platform.url, f"replica-{i}", log if log is not None else [])
        c.add_port(hp)
        cores.append(c)
        ports.append(hp)
    return cores, ports


async def close(cores: list[Core], ports: list[HttpPort]) -> None:
    for c, hp in zip(cores, ports, strict=True):
        await hp.close()
        await c.db.dispose()


def limiter(slots: list[tuple[str, float]]) -> RecordingLimiter:
    """A replica's own limiter; every replica notes its slots in `slots` (one clock for all)."""
    return RecordingLimiter({"fakehttp": Limits(workspace_per_s=RATE, conversation_per_s=RATE)},
                            slots)


def in_workspace(slots: list[tuple[str, float]], workspace: str) -> list[float]:
    return [at for ws, at in slots if ws == workspace]


async def test_two_replicas_together_stay_within_one_workspace_limit(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    n = await staff(loaded, 40, ("W1",))
    bid = await publish(loaded, "everyone")
    log: list[tuple[str, float, float, str]] = []
    slots: list[tuple[str, float]] = []
    cores, ports = await replicas(loaded, platform, clock, log=log)
    try:
        senders = [Sender(c, sender_id=f"replica-{i}", limiter=limiter(slots), batch=10)
                   for i, c in enumerate(cores)]
        per_replica = await settle(senders, bid, clock)
    finally:
        await close(cores, ports)
    sent = platform.keyed()
    assert len(sent) == n and platform.duplicates() == 0
    # One replica sends while the other waits; W1 may change hands between passes, never
    # while a send is in flight.
    assert one_at_a_time(log)["W1"]
    assert min(per_replica) <= 1 and sum(per_replica) == n
    # Both replicas' slots together: the platform would refuse none (the control, without
    # the lease, has dozens refused), and the sustained rate is the workspace's.
    w1 = in_workspace(slots, "W1")
    assert refusals(w1, RATE, BURST) == 0 and rate(w1) <= RATE * 1.1


async def test_without_the_lease_two_replicas_exceed_the_limit(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    """The control: what the lease prevents."""
    await staff(loaded, 40, ("W1",))
    bid = await publish(loaded, "everyone")
    slots: list[tuple[str, float]] = []
    cores, ports = await replicas(loaded, platform, clock)
    try:
        senders = [Sender(c, sender_id=f"replica-{i}", limiter=limiter(slots), batch=10,
                          workspace_lease=False) for i, c in enumerate(cores)]
        await settle(senders, bid, clock)
    finally:
        await close(cores, ports)
    assert refusals(in_workspace(slots, "W1"), RATE, BURST) >= 10 and platform.duplicates() == 0


async def test_each_workspace_is_sent_to_by_one_replica_at_a_time(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await staff(loaded, 40, ("W1", "W2"))
    bid = await publish(loaded, "everyone")
    log: list[tuple[str, float, float, str]] = []
    slots: list[tuple[str, float]] = []
    cores, ports = await replicas(loaded, platform, clock, log=log)
    try:
        senders = [Sender(c, sender_id=f"replica-{i}", limiter=limiter(slots), batch=10)
                   for i, c in enumerate(cores)]
        await settle(senders, bid, clock)
    finally:
        await close(cores, ports)
    turns = one_at_a_time(log)  # a workspace may change hands between passes, never mid-send
    assert set(turns) == {"W1", "W2"}
    assert platform.duplicates() == 0
    assert all(refusals(in_workspace(slots, ws), RATE, BURST) == 0 for ws in ("W1", "W2"))
    assert (await service.status(loaded, bid)).broadcast.state == "done"


async def test_a_dead_replicas_lease_runs_out_and_another_takes_over(
    loaded: Core, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    n = await staff(loaded, 6, ("W1",))
    bid = await publish(loaded, "everyone")
    ttl = timedelta(seconds=20)
    # replica-a took W1's lease, then died without giving it back.
    assert await leases.hold(loaded.db, "replica-a", {("fakehttp", "W1")}, clock.now(), ttl)
    cores, ports = await replicas(loaded, platform, clock, n=1)
    try:
        b = Sender(cores[0], sender_id="replica-b", limiter=limiter([]), workspace_lease_ttl=ttl)
        await b.drain()
        assert not any(d.workspace == "W1" for d in platform.keyed()), "W1 is still held"
        clock.advance(ttl + timedelta(seconds=1))
        await ledger.release_stale(loaded.db, clock.now())
        await settle([b], bid, clock)
    finally:
        await close(cores, ports)
    assert len(platform.keyed()) == n and platform.duplicates() == 0
    assert (await service.status(loaded, bid)).broadcast.state == "done"
