"""Slack's work after its acks is one queue (adapters/slack/app.py, SlackAdapter.queue): the
Home tab and a member's deactivation take their place behind the messages acked before them,
and past QUEUE_MAX pieces the events endpoint defers what would queue more (503: Slack
delivers an event again), so the queue and its memory stay bounded under sustained overload.
Order and counts only, never time."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from adapters.slack import app as slack_app
from bot.core import Core
from bot.model import Event, HomeOpenedEvent, MessageEvent
from bot.people import reach
from bot.port import Port
from tests.conformance.drivers.slack import APP_ID, SIGNING_SECRET, SlackDriver, sign
from tests.fakes.slack_api import FakeSlack
from tests.slack.test_background_order import _connections, _message, _raw, _submission

PEOPLE = [f"practitioner{n}@northbridge.example" for n in (1, 2, 3, 4)]


def _event(driver: SlackDriver, event: dict[str, Any], n: int) -> bytes:
    return _raw(driver, json.dumps({
        "type": "event_callback", "team_id": driver.fake.team, "api_app_id": APP_ID,
        "event_id": f"EvQUEUE{n:04d}", "event_time": int(time.time()), "event": event}),
        "application/json")


async def _started(loaded: Core) -> SlackDriver:
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    for email in PEOPLE:  # each has been here before: known to the adapter's directory
        await driver.say(email, "status")
    return driver


async def _burst_order(loaded: Core, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """Two messages, a Home tab opened and a deactivation arrive in one burst; the order in
    which their work after the ack began, and the people's Slack ids."""
    driver = await _started(loaded)
    ids = [driver.user(email).id for email in PEOPLE]
    order: list[str] = []
    handle = loaded.handle

    async def recorded(event: Event, port: Port) -> Any:
        if isinstance(event, MessageEvent):
            order.append(f"message from {event.user.user_id}")
        elif isinstance(event, HomeOpenedEvent):
            order.append(f"home of {event.user.user_id}")
        return await handle(event, port)

    deactivated = reach.account_deactivated

    async def recorded_deactivation(core: Core, platform: str, team: str, user_id: str) -> Any:
        order.append(f"deactivated {user_id}")
        return await deactivated(core, platform, team, user_id)

    monkeypatch.setattr(reach, "account_deactivated", recorded_deactivation)
    loaded.handle = recorded  # type: ignore[method-assign]
    socks = await _connections(driver, 4)
    driver.fake.deactivate(ids[3])
    try:
        burst = [_message(driver, PEOPLE[0], 1), _message(driver, PEOPLE[1], 2),
                 _event(driver, {"type": "app_home_opened", "user": ids[2], "tab": "home",
                                 "channel": driver.fake.dm_of(ids[2]), "event_ts": "1.1"}, 3),
                 _event(driver, driver.fake.user_change_event(ids[3]), 4)]
        for sock, raw in zip(socks, burst, strict=True):
            sock.send(raw)
        for _ in range(300):
            if len(order) == 4:
                break
            await asyncio.sleep(0.01)
        await driver.adapter.drain()  # type: ignore[union-attr]
        assert ids[2] in driver.fake.homes  # the Home tab was published all the same
    finally:
        del loaded.handle
        for sock in socks:
            sock.close()
        await driver.close()
    return order, ids


async def test_the_home_tab_and_a_deactivation_wait_behind_messages_acked_before_them(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    order, ids = await _burst_order(loaded, monkeypatch)
    assert order == [f"message from {ids[0]}", f"message from {ids[1]}", f"home of {ids[2]}",
                     f"deactivated {ids[3]}"]


async def test_before_the_home_tab_and_a_deactivation_overtook_queued_messages(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """ALL_QUEUED = False (the switch for an A/B): both started at once, ahead of the
    messages that were waiting for their turns."""
    monkeypatch.setattr(slack_app, "ALL_QUEUED", False)
    order, ids = await _burst_order(loaded, monkeypatch)
    assert order == [f"home of {ids[2]}", f"deactivated {ids[3]}", f"message from {ids[0]}",
                     f"message from {ids[1]}"]


def _messages_wait(loaded: Core) -> asyncio.Event:
    """The core is slow: each message's work waits (keeping its place in the queue) until the
    event returned is set; anything else is handled at once. `del loaded.handle` undoes it."""
    busy = asyncio.Event()
    handle = loaded.handle

    async def slow(event: Event, port: Port) -> Any:
        if isinstance(event, MessageEvent):
            await busy.wait()
        return await handle(event, port)

    loaded.handle = slow  # type: ignore[method-assign]
    return busy


async def _post(driver: SlackDriver, raw: bytes, retry: int = 0) -> tuple[int, dict[str, str]]:
    """Post the body of `raw` (from _raw) as Slack does, signed afresh; no drain after."""
    assert driver.http is not None
    head, body = raw.split(b"\r\n\r\n", 1)
    content_type = next(line.split(": ", 1)[1] for line in head.decode().split("\r\n")
                        if line.startswith("Content-Type: "))
    headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body.decode())}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"}
    async with driver.http.post(driver.url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def test_a_message_past_the_queue_bound_is_deferred_and_handled_when_slack_sends_it_again(
        loaded: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(slack_app, "QUEUE_MAX", 2)
    driver = await _started(loaded)
    adapter = driver.adapter
    assert adapter is not None
    seen_before = {email: len(driver.seen(email)) for email in PEOPLE}
    handled: list[str] = []
    busy = asyncio.Event()  # the core is slow: two messages' work is still queued
    handle = loaded.handle

    async def slow(event: Event, port: Port) -> Any:
        if isinstance(event, MessageEvent):
            await busy.wait()
            handled.append(event.user.user_id)
        return await handle(event, port)

    loaded.handle = slow  # type: ignore[method-assign]
    ids = [driver.user(email).id for email in PEOPLE]
    try:
        first = [await _post(driver, _message(driver, PEOPLE[n], n + 10)) for n in (0, 1)]
        assert [status for status, _ in first] == [200, 200]
        assert adapter.queued == 2 and adapter.backlog_full()
        third = _message(driver, PEOPLE[2], 12)
        status, headers = await _post(driver, third)
        assert (status, headers.get("Retry-After")) == (503, "5")  # not acked: not lost
        assert (await _post(driver, third, retry=1))[0] == 503  # Slack's first retry, too soon
        # The operator is told, once, not once per request refused.
        said = [r for r in caplog.records if "too much work queued" in r.getMessage()]
        assert len(said) == 1
        # A form answers in its ack and queues nothing: still taken.
        form_status, _ = await _post(driver, _submission(driver, PEOPLE[3]))
        assert form_status == 200
        assert adapter.queued == 2
        busy.set()
        await adapter.drain()
        assert adapter.queued == 0
        # Slack's redelivery of the deferred event (the same event id) is taken and handled.
        assert (await _post(driver, third, retry=2))[0] == 200
        await adapter.drain()
    finally:
        busy.set()  # a failed assertion above leaves no work waiting for ever
        del loaded.handle
        await driver.close()
    assert handled == [ids[0], ids[1], ids[2]]
    for email in PEOPLE[:3]:  # each got the answer to "status", once
        assert len(driver.seen(email)) == seen_before[email] + 1


async def test_taps_and_commands_past_the_queue_bound_are_taken_slack_never_sends_them_again(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack delivers an event again after a 503, but never an interaction or a command: a
    refused tap showed the person only a warning sign by the button and was lost (a pulse
    answer), and "Open the form", whose work skips the queue (its trigger expires in 3 s),
    opened nothing. Past the bound they are taken all the same; events are still deferred."""
    monkeypatch.setattr(slack_app, "QUEUE_MAX", 1)
    driver = await _started(loaded)
    adapter = driver.adapter
    assert adapter is not None
    person = driver.user(PEOPLE[0])
    await driver.say(PEOPLE[0], "feedback")  # the driver taps "Open the form", as a person would
    first = driver.fake.open_view(person.id)
    assert first is not None, driver.seen(PEOPLE[0])
    driver.fake.close_view(first.id)  # the person cancels it, and will open it again

    posted: list[str] = []  # a tap and a command as the driver would post them, not posted yet

    async def kept(body: str, content_type: str, on_answer: Any = None) -> tuple[int, str]:
        posted.append(body)
        return 200, ""

    with monkeypatch.context() as m:
        m.setattr(driver, "post", kept)
        await driver.tap(PEOPLE[0], "Open the form")
        await driver.command(PEOPLE[2], "status")
    tap, command = (_raw(driver, body, "application/x-www-form-urlencoded") for body in posted)

    busy = _messages_wait(loaded)
    seen_before = len(driver.seen(PEOPLE[2]))
    try:
        assert (await _post(driver, _message(driver, PEOPLE[1], 20)))[0] == 200
        assert adapter.backlog_full()
        assert (await _post(driver, _message(driver, PEOPLE[3], 21)))[0] == 503  # an event
        assert (await _post(driver, tap))[0] == 200
        assert (await _post(driver, command))[0] == 200
        busy.set()
        await adapter.drain()
    finally:
        busy.set()
        del loaded.handle
        await driver.close()
    again = driver.fake.open_view(person.id)
    assert again is not None and again.view["callback_id"] == first.view["callback_id"]
    assert len(driver.seen(PEOPLE[2])) == seen_before + 1  # the command was answered


async def test_one_persons_work_after_acks_waits_for_their_earlier_work_to_finish(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight pieces run at once: queued in order, one person's second message and Home tab
    started while their first message was still being handled (its reply on its way, or, on
    PostgreSQL, its queries), so the Home tab could be drawn without it. Now each waits for
    that person's earlier work to end; other people's work goes on meanwhile."""
    driver = await _started(loaded)
    ids = [driver.user(email).id for email in PEOPLE]
    order: list[str] = []
    first_done = asyncio.Event()
    handle = loaded.handle

    async def recorded(event: Event, port: Port) -> Any:
        if isinstance(event, MessageEvent):
            n = sum(1 for o in order
                    if o.startswith(f"message from {event.user.user_id}") and "done" not in o)
            name = f"message from {event.user.user_id} #{n + 1}"
            order.append(name)
            if name == f"message from {ids[0]} #1":
                await first_done.wait()  # the first message is still being handled
                result = await handle(event, port)
                order.append(f"{name} done")
                return result
        elif isinstance(event, HomeOpenedEvent):
            order.append(f"home of {event.user.user_id}")
        return await handle(event, port)

    loaded.handle = recorded  # type: ignore[method-assign]
    burst = [_message(driver, PEOPLE[0], 30), _message(driver, PEOPLE[0], 31),
             _event(driver, {"type": "app_home_opened", "user": ids[0], "tab": "home",
                             "channel": driver.fake.dm_of(ids[0]), "event_ts": "1.2"}, 32),
             _message(driver, PEOPLE[1], 33)]
    try:
        for raw in burst:
            assert (await _post(driver, raw))[0] == 200
        for _ in range(300):  # someone else's message is handled meanwhile
            if f"message from {ids[1]} #1" in order:
                break
            await asyncio.sleep(0.01)
        first_done.set()
        await driver.adapter.drain()  # type: ignore[union-attr]
    finally:
        first_done.set()
        del loaded.handle
        await driver.close()
    assert order == [f"message from {ids[0]} #1", f"message from {ids[1]} #1",
                     f"message from {ids[0]} #1 done", f"message from {ids[0]} #2",
                     f"home of {ids[0]}"]


async def test_an_uninstall_past_the_queue_bound_is_taken_it_queues_nothing(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """An uninstall or a revoked token is acted on in its ack and queues nothing: past the
    bound it is taken (the cached client dropped at once), where messages are deferred; lost
    after Slack's three retries, it would have left its installation stored (review18)."""
    monkeypatch.setattr(slack_app, "QUEUE_MAX", 1)
    driver = await _started(loaded)
    adapter = driver.adapter
    assert adapter is not None
    team = driver.fake.team
    busy = _messages_wait(loaded)
    try:
        assert (await _post(driver, _message(driver, PEOPLE[1], 30)))[0] == 200
        assert adapter.backlog_full()
        assert (await _post(driver, _message(driver, PEOPLE[2], 31)))[0] == 503
        forgotten: list[str] = []
        monkeypatch.setattr(adapter.workspaces, "forget", forgotten.append)
        for n, kind in enumerate(("tokens_revoked", "app_uninstalled")):
            assert (await _post(driver, _event(driver, {"type": kind}, 40 + n)))[0] == 200, kind
        assert forgotten == [team, team]  # acted on in the ack, the queue still full
        # A Home tab opened, or a member deactivated, queues work: deferred like a message.
        user = driver.user(PEOPLE[3]).id
        assert (await _post(driver, _event(driver, {"type": "app_home_opened", "user": user,
                                                    "tab": "home", "channel": "D1"}, 50)))[0] == 503
        assert (await _post(driver, _event(driver, {"type": "user_change", "user": {
            "id": user, "deleted": True}}, 51)))[0] == 503
        busy.set()
        await adapter.drain()
    finally:
        busy.set()
        del loaded.handle
        await driver.close()
