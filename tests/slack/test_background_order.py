"""Slack's acks go before the work left from earlier acks (bot/background.py): a form
submitted while three direct messages wait to be handled after their acks is handled (its
answer travels in its ack) right after the message being handled when it arrived, not after
all three. Order of events only, never time."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from adapters.slack import render
from bot.core import Core
from bot.model import Event, FormSubmitEvent, MessageEvent
from bot.port import Port
from tests.conformance.drivers.slack import APP_ID, SIGNING_SECRET, SlackDriver, sign
from tests.fakes.slack_api import FakeSlack

PEOPLE = [f"practitioner{n}@northbridge.example" for n in (1, 2, 3, 4)]


def _raw(driver: SlackDriver, body: str, content_type: str) -> bytes:
    """One signed HTTP request to /slack/events, as bytes on the wire."""
    head = {"Host": "localhost", "Content-Type": content_type,
            "Content-Length": str(len(body.encode())), **sign(SIGNING_SECRET, body)}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST /slack/events HTTP/1.1\r\n{lines}\r\n{body}".encode()


def _message(driver: SlackDriver, email: str, n: int) -> bytes:
    u = driver.user(email)
    ts = f"{int(time.time())}.{n:06d}"
    return _raw(driver, json.dumps({
        "type": "event_callback", "team_id": driver.fake.team, "api_app_id": APP_ID,
        "event_id": f"EvORDER{n:04d}", "event_time": int(time.time()),
        "event": {"type": "message", "channel": driver.fake.dm_of(u.id), "user": u.id,
                  "text": render.escape("status"), "ts": ts, "event_ts": ts,
                  "channel_type": "im", "team": driver.fake.team}}), "application/json")


def _submission(driver: SlackDriver, email: str) -> bytes:
    u = driver.user(email)
    view = {"id": "VORDER1", "hash": "h1", "type": "modal", "callback_id": "feedback.submit",
            "private_metadata": "", "title": {"type": "plain_text", "text": "Feedback"},
            "blocks": [], "state": {"values": {}}}
    payload = {"type": "view_submission", "team": {"id": driver.fake.team},
               "user": {"id": u.id, "username": u.name, "team_id": driver.fake.team},
               "api_app_id": APP_ID, "trigger_id": "1.order", "view": view}
    return _raw(driver, urlencode({"payload": json.dumps(payload)}),
                "application/x-www-form-urlencoded")


async def _connections(driver: SlackDriver, n: int) -> list[socket.socket]:
    """Keep-alive connections the server has accepted (as Slack's are)."""
    loop = asyncio.get_running_loop()
    where = urlsplit(driver.url)
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (where.hostname, where.port))
        socks.append(sock)
    for _ in range(20):  # the server's accepts run on this loop
        await asyncio.sleep(0)
    return socks


async def test_a_form_arriving_during_work_after_acks_is_handled_before_the_rest(loaded: Core) -> None:
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    for email in PEOPLE:  # each has been here before: known to the adapter's directory
        await driver.say(email, "status")
    order: list[str] = []
    sent: list[int] = []
    handle = loaded.handle
    socks = await _connections(driver, 4)
    submission = _submission(driver, PEOPLE[3])

    async def recorded(event: Event, port: Port) -> Any:
        if isinstance(event, MessageEvent):
            order.append(f"message from {event.user.user_id}")
            if not sent:  # a form arrives while the first message is handled
                sent.append(socks[3].send(submission))
        elif isinstance(event, FormSubmitEvent):
            order.append("form")
        return await handle(event, port)

    loaded.handle = recorded  # type: ignore[method-assign]
    try:
        for n, email in enumerate(PEOPLE[:3]):  # three messages in one burst: acked, work queued
            socks[n].send(_message(driver, email, n))
        for _ in range(200):
            if len(order) == 4:
                break
            await asyncio.sleep(0.01)
        await driver.adapter.drain()  # type: ignore[union-attr]
    finally:
        del loaded.handle
        for sock in socks:
            sock.close()
        await driver.close()
    ids = [driver.user(email).id for email in PEOPLE[:3]]
    assert order == [f"message from {ids[0]}", "form", f"message from {ids[1]}",
                     f"message from {ids[2]}"]


async def test_a_message_is_acked_before_its_own_work_starts(loaded: Core) -> None:
    """The ack's bytes are on the connection (loopback delivers a write at once) when the
    core starts on the message: the work after the ack does not delay the ack."""
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    await driver.say(PEOPLE[0], "status")  # known to the directory, the connection pool warm
    acked: list[bool] = []
    handle = loaded.handle
    (sock,) = await _connections(driver, 1)

    async def recorded(event: Event, port: Port) -> Any:
        try:
            acked.append(sock.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.1 200"))
        except BlockingIOError:
            acked.append(False)  # nothing written yet
        return await handle(event, port)

    loaded.handle = recorded  # type: ignore[method-assign]
    try:
        sock.send(_message(driver, PEOPLE[0], 1))
        for _ in range(200):
            if acked:
                break
            await asyncio.sleep(0.01)
        await driver.adapter.drain()  # type: ignore[union-attr]
    finally:
        del loaded.handle
        sock.close()
        await driver.close()
    assert acked == [True]
