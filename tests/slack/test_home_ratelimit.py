"""A Home tab whose views.publish Slack refuses (429 + Retry-After) waits for its retry without
holding one of the queue's BACKGROUND_AT_ONCE places (adapters/slack/app.py, SlackAdapter
queue): the Home tabs of a busy moment no longer hold up other people's messages while they
wait out Slack's limit. Order and counts against the fake Slack, which answers 429."""

from __future__ import annotations

import json
import time

from adapters.slack import app as slack_app
from adapters.slack import render
from bot.core import Core
from tests.conformance.drivers.slack import APP_ID, SIGNING_SECRET, SlackDriver, sign
from tests.fakes.slack_api import FakeSlack

OPENERS = [f"practitioner{n}@northbridge.example" for n in range(1, 9)]
WRITER = "practitioner9@northbridge.example"


async def _acked(driver: SlackDriver, event: dict[str, object], n: int) -> None:
    """Slack delivers `event` and has its ack; the work after it is queued."""
    assert driver.http is not None
    body = json.dumps({"type": "event_callback", "team_id": driver.fake.team,
                       "api_app_id": APP_ID, "event_id": f"EvHOME{n:04d}",
                       "event_time": int(time.time()), "event": event})
    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, body)}
    async with driver.http.post(driver.url, data=body.encode(), headers=headers) as resp:
        assert resp.status == 200


async def test_home_tabs_waiting_out_a_429_do_not_hold_up_someone_elses_message(
        loaded: Core) -> None:
    """Eight people open their Home tab at once (as many as the queue runs at once) and
    Slack answers each first views.publish 429, Retry-After 1 s; then someone sends a message.

    Before: each Home tab waited out the Retry-After inline in its place in the queue, so the
    message was handled only once a Home tab was published (9 views.publish calls before its
    reply); now it is answered while they wait, and every Home tab is still published."""
    assert len(OPENERS) == slack_app.BACKGROUND_AT_ONCE
    driver = SlackDriver(loaded, FakeSlack(retry_after=1))  # under max_inline_wait_s: waited for
    await driver.start()
    try:
        for email in [*OPENERS, WRITER]:  # each has been here before
            await driver.say(email, "status")
        driver.fake.calls.clear()
        driver.fake.throttle["views.publish"] = len(OPENERS)  # every first try: 429
        n = 0
        for email in OPENERS:
            u = driver.user(email)
            n += 1
            await _acked(driver, {"type": "app_home_opened", "user": u.id, "tab": "home",
                                  "channel": driver.fake.dm_of(u.id), "event_ts": f"1.{n}"}, n)
        writer = driver.user(WRITER)
        ts = f"{int(time.time())}.000099"
        await _acked(driver, {"type": "message", "channel": driver.fake.dm_of(writer.id),
                              "user": writer.id, "text": render.escape("status"), "ts": ts,
                              "event_ts": ts, "channel_type": "im", "team": driver.fake.team}, 99)
        assert driver.adapter is not None
        await driver.adapter.drain()

        calls = [(c.method, c.args.get("channel")) for c in driver.fake.calls]
        reply = calls.index(("chat.postMessage", driver.fake.dm_of(writer.id)))
        publishes_before = sum(1 for m, _ in calls[:reply] if m == "views.publish")
        assert driver.fake.refused["views.publish"] == len(OPENERS)
        assert publishes_before <= len(OPENERS)  # only the refused first tries: none published
        assert sorted(driver.fake.homes) == sorted(driver.user(e).id for e in OPENERS)
    finally:
        await driver.close()

