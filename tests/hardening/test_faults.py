"""Faults: the database goes away while events arrive and while a broadcast sends; the platform
answers 500s and times out. Each with the counts: nothing lost, nothing twice, never a 500."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

import adapters.slack.app as slack_app
import adapters.slack.mount as slack_mount
from adapters.fake.http_port import HttpPort
from bot.broadcasts import service
from bot.broadcasts.limiter import Limiter
from bot.broadcasts.sender import Sender
from bot.clock import FakeClock
from bot.core import Core
from staffvoice.serve.lifecycle import _supervise
from tests.conformance.drivers.slack import SIGNING_SECRET, SlackDriver, sign
from tests.conformance.drivers.teams import TeamsDriver
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform
from tests.hardening.checks import ErrorLog
from tests.hardening.outage import Outage
from tests.test_broadcast_engine import FAST, everyone_count, open_dms, publish, send_until_settled

PEOPLE = [f"practitioner{i}@northbridge.example" for i in range(1, 6)]
OUTAGE_S = 1.5


async def slack_dm(slack: SlackDriver, email: str, event_id: str, retry: int = 0) -> int:
    assert slack.http is not None
    u = slack.user(email)
    body = json.dumps({"type": "event_callback", "team_id": slack.fake.team, "event_id": event_id,
                       "event_time": int(time.time()),
                       "event": {"type": "message", "channel": slack.fake.dm_of(u.id), "user": u.id,
                                 "text": "whoami", "ts": f"{time.time():.6f}", "channel_type": "im"}})
    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, body)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"}
    async with slack.http.post(slack.url, data=body.encode(), headers=headers) as r:
        return r.status


def answered(seen: list[str], email: str) -> int:
    return sum(email in text for text in seen)


async def test_a_slack_event_just_after_one_the_core_stored_does_not_ping_the_database(
        slack: SlackDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """/slack/events defers (503) an event the database could not take; the core storing one
    of our events a moment ago says it answers as well as a ping that recent, so no ping is
    sent (a ping is a transaction of its own: bench/README.md, eleventh session). An event the
    core failed says nothing: past the window the database is asked, and refuses."""
    assert slack.adapter is not None
    monkeypatch.setattr(slack_mount, "PING_FRESH_S", 60.0)
    now = [1000.0]
    monkeypatch.setattr(slack_app, "time", type("Clock", (), {"monotonic": lambda: now[0]}),
                        raising=False)
    asked: list[float] = []
    real = slack.core.db.ping

    async def ping(fresh_for: float = 0.0) -> bool:
        asked.append(fresh_for)
        return await real()  # asked every time: the endpoint's own window is under test

    monkeypatch.setattr(slack.core.db, "ping", ping)
    first, second, third, fourth = PEOPLE[:4]
    for email in PEOPLE[:4]:
        slack.user(email)
    assert await slack_dm(slack, first, "Ev0FRESH1") == 200
    await slack.adapter.drain()
    assert len(asked) == 1  # nothing stored yet: the database is asked
    now[0] += 1
    assert await slack_dm(slack, second, "Ev0FRESH2") == 200
    await slack.adapter.drain()
    assert len(asked) == 1  # the core stored the first a second ago: not asked again
    assert [answered(slack.seen(e), e) for e in (first, second)] == [1, 1]
    outage = Outage(slack.core.db)
    outage.down = True  # the database goes away
    now[0] += 1
    assert await slack_dm(slack, third, "Ev0FRESH3") == 200  # acked: the window still holds
    await slack.adapter.drain()  # the core fails it ("internal"): no sign of an answer
    now[0] += 59.5  # 60.5 s after the last event stored, 59.5 s after the failed one
    assert await slack_dm(slack, fourth, "Ev0FRESH4") == 503  # asked, refused: deferred
    assert len(asked) == 2
    outage.down = False
    outage.remove()
    assert await slack_dm(slack, fourth, "Ev0FRESH4", retry=1) == 200  # Slack's redelivery
    await slack.adapter.drain()
    assert answered(slack.seen(fourth), fourth) == 1


async def test_a_slack_event_whose_reply_outlasted_the_database_does_not_stand_for_a_ping(
        slack: SlackDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event stands for a ping as of when the database answered it, not when its handling
    ended: a reply that took 10 s to send (Slack slow, a 429's wait) while the database went
    away says nothing of the database now. The next event is asked about (503, Slack sends it
    again), not acked and then lost."""
    assert slack.adapter is not None
    now = [1000.0]
    monkeypatch.setattr(slack_app, "time", type("Clock", (), {"monotonic": lambda: now[0]}),
                        raising=False)
    real_ping = slack.core.db.ping

    async def ping(fresh_for: float = 0.0) -> bool:
        return await real_ping()  # asked every time: the endpoint's own window is under test

    monkeypatch.setattr(slack.core.db, "ping", ping)
    first, second = PEOPLE[:2]
    for email in (first, second):
        slack.user(email)
    outage = Outage(slack.core.db)
    port = slack.adapter.port
    real_send = port.send

    async def slow_send(*args: object, **kwargs: object) -> object:
        ref = await real_send(*args, **kwargs)  # type: ignore[arg-type]
        outage.down = True  # the database goes away while the reply is on its way
        now[0] += 10.0  # which took 10 s
        return ref

    monkeypatch.setattr(port, "send", slow_send)
    assert await slack_dm(slack, first, "Ev0SLOWREPLY1") == 200
    await slack.adapter.drain()
    assert answered(slack.seen(first), first) == 1  # the first was answered
    monkeypatch.setattr(port, "send", real_send)
    # The database has been away for 10 s: this event must not be acked without asking it.
    assert await slack_dm(slack, second, "Ev0SLOWREPLY2") == 503
    outage.down = False
    outage.remove()
    assert await slack_dm(slack, second, "Ev0SLOWREPLY2", retry=1) == 200
    await slack.adapter.drain()
    assert answered(slack.seen(second), second) == 1


async def test_database_outage_while_slack_events_arrive(slack: SlackDriver, errors: ErrorLog) -> None:
    assert slack.adapter is not None
    for email in PEOPLE:
        slack.user(email)
    outage = Outage(slack.core.db)
    async with outage.during():
        statuses = [await slack_dm(slack, e, f"Ev0DOWN{i}") for i, e in enumerate(PEOPLE)]
        await slack.adapter.drain()
        await asyncio.sleep(OUTAGE_S)
    assert 500 not in statuses, statuses
    # Slack retries what was not acknowledged (1 minute later in real life; now here).
    for i, (email, status) in enumerate(zip(PEOPLE, statuses, strict=True)):
        if status != 200:
            assert status in (503, 429), status  # an answer Slack retries, not a crash
            assert await slack_dm(slack, email, f"Ev0DOWN{i}", retry=1) == 200
    await slack.adapter.drain()
    assert [answered(slack.seen(e), e) for e in PEOPLE] == [1] * len(PEOPLE), statuses
    assert outage.refused > 0 or not slack.core.db.is_sqlite  # PostgreSQL: the server was down
    outage.remove()


async def test_database_outage_while_teams_activities_arrive(teams: TeamsDriver, errors: ErrorLog) -> None:
    assert teams.http is not None
    outage = Outage(teams.core.db)
    activities = []
    for email in PEOPLE:
        uid, cid = teams.dm_id(email)
        teams.fake.state.users[uid].installed = True
        activities.append(teams.activity(uid, cid, "personal", text="whoami", textFormat="plain"))

    async def post(a: dict) -> int:  # type: ignore[type-arg]
        assert teams.http is not None
        async with teams.http.post(teams.url, json=a, headers={
                "Authorization": f"Bearer {teams.fake.sign()}"}) as r:
            return r.status

    async with outage.during():
        statuses = [await post(a) for a in activities]
        await asyncio.sleep(OUTAGE_S)
    assert 500 not in statuses, statuses
    for a, status in zip(activities, statuses, strict=True):
        if status not in (200, 201, 202):
            assert status in (503, 429), status
            assert await post(a) in (200, 201, 202)  # the channel redelivers the same activity
    assert [answered(teams.seen(e), e) for e in PEOPLE] == [1] * len(PEOPLE), statuses
    outage.remove()


async def test_the_database_going_away_during_a_teams_turn_that_read_nothing_more_is_no_500(
        teams: TeamsDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint's pre-turn read leaves its transaction open for the turn's admission
    (storage.db.Opened). A typing activity takes none: the endpoint gives it back at the end.
    The database going away meanwhile (PostgreSQL: every connection ended) must not turn that
    rollback of a read into an HTTP 500; nor into a failed send when it is given back before
    a call to the Bot Connector."""
    from adapters.teams.agent import TeamsAgent
    from tests.hardening.outage import real_outage_end, real_outage_start

    uid, cid = teams.dm_id(PEOPLE[0])
    teams.fake.state.users[uid].installed = True
    real_turn = TeamsAgent.on_turn
    killed: list[object] = []

    async def on_turn(self: TeamsAgent, context: object) -> None:
        if not teams.core.db.is_sqlite:
            killed.append(await real_outage_start(teams.core.db))
            await real_outage_end(teams.core.db, killed[-1])
        await real_turn(self, context)  # type: ignore[arg-type]

    monkeypatch.setattr(TeamsAgent, "on_turn", on_turn)
    assert teams.http is not None
    a = teams.activity(uid, cid, "personal")
    a["type"] = "typing"
    async with teams.http.post(teams.url, json=a, headers={
            "Authorization": f"Bearer {teams.fake.sign()}"}) as r:
        assert r.status in (200, 201, 202), r.status
    monkeypatch.setattr(TeamsAgent, "on_turn", real_turn)
    assert await teams.post(teams.activity(uid, cid, "personal", text="whoami",
                                           textFormat="plain")) in (200, 201, 202)
    assert answered(teams.seen(PEOPLE[0]), PEOPLE[0]) == 1


@pytest.fixture
async def platform() -> AsyncIterator[RateLimitedPlatform]:
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50,
                                           latency_s=0.02))
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def port(loaded: Core, platform: RateLimitedPlatform) -> AsyncIterator[HttpPort]:
    hp = HttpPort(platform.url)
    loaded.add_port(hp)
    yield hp
    await hp.close()


async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_database_outage_while_a_broadcast_sends(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await open_dms(loaded)
    bid = await publish(loaded)
    n = await everyone_count(loaded)
    outage = Outage(loaded.db)
    stop = asyncio.Event()

    async def worker(core: Core, stop: asyncio.Event) -> None:
        await Sender(core, sender_id="replica-a", limiter=Limiter(FAST), batch=4).run(stop, poll_s=0.05)

    # The serving process supervises the sender and restarts it after a crash.
    monkeypatch.setattr(asyncio, "wait_for", _short_waits(asyncio.wait_for))
    task = asyncio.create_task(_supervise("broadcast-sender", worker, loaded, stop))
    try:
        await until(lambda: len(platform.keyed()) >= 5)
        async with outage.during():
            sent_when_down = len(platform.keyed())
            await asyncio.sleep(OUTAGE_S)
        assert sent_when_down < n, "the outage hit in the middle of the broadcast"
        # Time moves on (the fake clock by 30 s a tick): leases of rows in flight during the
        # outage run out, retries come due, and the sender resumes.
        deadline = time.monotonic() + 30
        while (len(platform.keys()) < n
               or (await service.status(loaded, bid)).broadcast.state != "done"):
            assert time.monotonic() < deadline, (await service.status(loaded, bid)).counts
            clock.advance(timedelta(seconds=30))
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        outage.remove()
    assert len(platform.keys()) == n and platform.duplicates() == 0
    assert (await service.status(loaded, bid)).counts["sent"] == n
    assert outage.refused > 0 or not loaded.db.is_sqlite


def _short_waits(real):  # type: ignore[no-untyped-def]
    """The supervisor pauses 5 s before restarting a crashed worker; 0.2 s here."""

    async def wait_for(aw, timeout):  # type: ignore[no-untyped-def]
        return await real(aw, min(timeout, 0.2) if timeout == 5 else timeout)

    return wait_for


async def test_platform_500s_and_timeouts_during_a_broadcast(
    loaded: Core, port: HttpPort, platform: RateLimitedPlatform, clock: FakeClock
) -> None:
    await open_dms(loaded)
    bid = await publish(loaded)
    n = await everyone_count(loaded)
    platform.fail_next = 6  # six 503s in a row
    platform.config.latency_s = 0.5  # and every send slower than the sender waits (timeouts)
    sender = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST), send_timeout_s=0.2,
                    backoff_s=0.01)
    await sender.drain()
    timed_out = platform.requests
    platform.config.latency_s = 0.0
    await asyncio.sleep(0.6)  # the slow requests the sender gave up on land anyway
    await send_until_settled(loaded, sender, clock)
    assert platform.failed_5xx == 6 or platform.requests >= 6
    assert timed_out > 0
    st = await service.status(loaded, bid)
    assert st.counts["sent"] == n and st.broadcast.state == "done"
    # Sends that timed out on our side but arrived are reconciled by key, never sent twice.
    assert len(platform.keys()) == n and platform.duplicates() == 0
