"""SIGTERM while Slack's work after its acks is stuck (a Slack call waiting out a long
Retry-After, a hung database): `serve`'s shutdown waits for it at most
STAFFVOICE_SHUTDOWN_GRACE, counts what it drops in the log, and still writes what the
flushers hold (docs/invariants.md N4, N21, N25) before the process ends. Order and counts;
the grace here is a short test timeout, and nothing is asserted about how long anything took."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from sqlalchemy import select

from adapters.slack import render
from bot.core import Core
from bot.model import Event, MessageEvent
from bot.people import held
from bot.people.tables import Identity
from bot.port import Port
from bot.scheduling.scheduler import Scheduler
from staffvoice.serve import lifecycle
from staffvoice.serve.health import Health
from tests.conformance.drivers.slack import APP_ID, SIGNING_SECRET, SlackDriver, sign
from tests.fakes.slack_api import FakeSlack

FIRST = "practitioner1@northbridge.example"  # a first contact: their link is held for a flush
STUCK = "practitioner2@northbridge.example"


async def _acked(driver: SlackDriver, email: str, text: str, n: int) -> None:
    """`email` sends `text` in their DM; Slack has the ack, the work after it is queued."""
    assert driver.http is not None
    u = driver.user(email)
    ts = f"{int(time.time())}.{n:06d}"
    body = json.dumps({
        "type": "event_callback", "team_id": driver.fake.team, "api_app_id": APP_ID,
        "event_id": f"EvSTOP{n:04d}", "event_time": int(time.time()),
        "event": {"type": "message", "channel": driver.fake.dm_of(u.id), "user": u.id,
                  "text": render.escape(text), "ts": ts, "event_ts": ts,
                  "channel_type": "im", "team": driver.fake.team}})
    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, body)}
    async with driver.http.post(driver.url, data=body.encode(), headers=headers) as resp:
        assert resp.status == 200


async def _identity(core: Core, user_id: str) -> Identity | None:
    async with core.db.session() as s:
        return (await s.execute(select(Identity).where(Identity.user_id == user_id))).scalar_one_or_none()


async def test_stuck_slack_work_is_dropped_at_the_grace_counted_and_held_writes_still_land(
        loaded: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A person's first message is handled (their link and DM route held, not yet written);
    another person's message hangs in the core, and their next waits behind it. SIGTERM.

    Before: the adapter's drain (aiohttp's on_cleanup) waited for the hung message without
    end, so the shutdown never reached the last flush: the orchestrator's SIGKILL lost the
    held link (and any feedback counts, marks, notice rows) with the process."""
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    try:
        await driver.say(FIRST, "status")
        first = driver.user(FIRST).id
        assert held.held(loaded)  # held in this process, for the flusher
        assert await _identity(loaded, first) is None

        hung = asyncio.Event()  # never set: the platform or the database never answers
        started: list[str] = []
        cancelled: list[str] = []
        handle = loaded.handle

        async def stuck(event: Event, port: Port) -> Any:
            if isinstance(event, MessageEvent) and event.text == "stuck":
                started.append(event.text)
                try:
                    await hung.wait()
                except asyncio.CancelledError:
                    cancelled.append(event.text)
                    raise
            return await handle(event, port)

        loaded.handle = stuck  # type: ignore[method-assign]
        await _acked(driver, STUCK, "stuck", 1)
        await _acked(driver, STUCK, "status", 2)  # the same person's: waits behind the first
        assert driver.adapter is not None
        for _ in range(500):  # the first has begun (its slot taken), controlled, no timing
            if started:
                break
            await asyncio.sleep(0.01)
        assert started == ["stuck"]

        monkeypatch.setattr(lifecycle, "DRAIN_S", 2.0)  # a short grace for the test
        caplog.set_level(logging.WARNING, logger="staffvoice.slack")
        runner, driver.runner = driver.runner, None
        assert runner is not None
        await asyncio.wait_for(  # without the bound: never returns (the test's own limit)
            lifecycle._shutdown(Health(loaded), [], runner, Scheduler(loaded),
                                asyncio.Event(), []), 60)

        assert cancelled == ["stuck"]  # cut at the grace, not left running
        [dropped] = [r for r in caplog.records
                     if r.getMessage().startswith("slack work acked but not finished")]
        assert (dropped.not_started, dropped.in_progress, dropped.other) == (1, 1, 0)  # type: ignore[attr-defined]
        assert not driver.adapter.tasks
        ident = await _identity(loaded, first)
        assert ident is not None and ident.dm is not None  # the held link and route: written
        assert not held.held(loaded)
    finally:
        await driver.close()
