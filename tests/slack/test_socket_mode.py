"""Socket Mode: no public URL; events arrive over a WebSocket and redeliveries count once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest

from adapters import stopping
from bot.core import Core
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import APP_TOKEN, FakeSlack

PRACTITIONER = "practitioner5@northbridge.example"


@pytest.fixture
async def socket_slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack(), env={"SLACK_SIGNING_SECRET": "", "SLACK_APP_TOKEN": APP_TOKEN})
    await driver.start()
    await driver.fake.socket_connected()
    yield driver
    await driver.close()


async def test_a_dm_over_socket_mode_is_acked_and_answered_once(socket_slack: SlackDriver) -> None:
    slack, fake = socket_slack, socket_slack.fake
    u = slack.user(PRACTITIONER)
    payload = {
        "type": "event_callback", "team_id": fake.team, "api_app_id": "A0FAKE", "event_id": "Ev0SOCKET1",
        "event_time": int(time.time()),
        "event": {"type": "message", "channel": fake.dm_of(u.id), "user": u.id, "text": "whoami",
                  "ts": f"{int(time.time())}.000001", "channel_type": "im"},
    }
    ack = await fake.socket_send("events_api", payload, envelope_id="e1")
    assert ack["envelope_id"] == "e1"
    assert slack.adapter is not None
    await slack.adapter.drain()
    # Socket Mode resends an envelope it thinks was lost, without any retry header.
    await fake.socket_send("events_api", payload, envelope_id="e1-again", retry_attempt=1)
    await slack.adapter.drain()
    said = replies(slack.seen(PRACTITIONER))
    assert len(said) == 1 and PRACTITIONER in said[0]


async def test_the_http_endpoint_is_not_mounted_without_a_signing_secret(socket_slack: SlackDriver) -> None:
    assert socket_slack.http is not None
    async with socket_slack.http.post(socket_slack.url, data=json.dumps({"type": "x"})) as resp:
        assert resp.status in (404, 405)


async def test_a_modal_submission_with_errors_answers_in_the_socket_ack(socket_slack: SlackDriver) -> None:
    from bot.errors import FormInvalid

    async def check(ctx) -> None:  # type: ignore[no-untyped-def]
        raise FormInvalid({"name": "Please give a name."})

    socket_slack.core.router.form("test.sock", check)
    u = socket_slack.user(PRACTITIONER)
    view = {"id": "V1", "hash": "h1", "callback_id": "test.sock", "type": "modal",
            "blocks": [{"type": "input", "block_id": "name", "label": {"type": "plain_text", "text": "Name"},
                        "element": {"type": "plain_text_input", "action_id": "value"}}],
            "state": {"values": {"name": {"value": {"type": "plain_text_input", "value": None}}}}}
    ack = await socket_slack.fake.socket_send("interactive", {
        "type": "view_submission", "team": {"id": socket_slack.fake.team}, "user": socket_slack._user_json(u),
        "view": view, "trigger_id": socket_slack.fake.new_trigger(u.id),
    })
    assert ack["payload"] == {"response_action": "errors", "errors": {"name": "Please give a name."}}


async def test_a_socket_mode_close_that_never_ends_is_cut_at_the_shutdown_deadline(
        socket_slack: SlackDriver, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM while Slack's end of the Socket Mode WebSocket no longer answers (its Close
    frame never comes back). Before: the adapter's cleanup waited for the close without any
    bound, past serve's one shutdown deadline, so the last flush waited behind it."""
    d = socket_slack
    d.fake.stall_socket()
    runner, d.runner = d.runner, None
    assert runner is not None
    stopping.of(runner.app).at = asyncio.get_running_loop().time() + 0.3  # serve's deadline
    caplog.set_level(logging.WARNING, logger="staffvoice.slack")
    await asyncio.wait_for(runner.cleanup(), 5)  # the test's own limit: without the bound, more
    assert [r for r in caplog.records if "socket mode connection not closed" in r.getMessage()]
