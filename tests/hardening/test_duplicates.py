"""Retries and redeliveries: the same Slack event four times, the same Teams activity twice,
exactly one effect (one reply, one stored answer)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from adapters.teams import render as teams_render
from bot.core import Core
from bot.pulse.tables import PulsePending
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.slack import SIGNING_SECRET, SlackDriver, sign
from tests.conformance.drivers.teams import TeamsDriver, card_of
from tests.fakes.slack_api import APP_TOKEN, FakeSlack
from tests.hardening.conftest import open_round

PRACTITIONER = "practitioner1@northbridge.example"


async def answers(core: Core) -> int:
    async with core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(PulsePending))).scalar_one())


async def deliver(slack: SlackDriver, body: str, content_type: str, retry: int) -> int:
    assert slack.http is not None
    headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    async with slack.http.post(slack.url, data=body.encode(), headers=headers) as r:
        return r.status


def dm_event(slack: SlackDriver, text: str, event_id: str) -> dict[str, Any]:
    u = slack.user(PRACTITIONER)
    return {"type": "event_callback", "team_id": slack.fake.team, "api_app_id": "A0X",
            "event_id": event_id, "event_time": int(time.time()),
            "event": {"type": "message", "channel": slack.fake.dm_of(u.id), "user": u.id,
                      "text": text, "ts": "1700000000.000100", "channel_type": "im"}}


def slack_tap(slack: SlackDriver, label: str) -> dict[str, Any]:
    """The block_actions payload of tapping `label` on the practitioner's pulse question."""
    u = slack.user(PRACTITIONER)
    m, block = next((m, b) for m in reversed(slack.dm(PRACTITIONER)) for b in m.blocks
                    if b["type"] == "actions" and any(e["text"]["text"] == label for e in b["elements"]))
    el = next(e for e in block["elements"] if e["text"]["text"] == label)
    return {"type": "block_actions", "user": slack._user_json(u), "team": {"id": slack.fake.team},
            "container": {"type": "message", "message_ts": m.ts, "channel_id": m.channel},
            "channel": {"id": m.channel}, "trigger_id": slack.fake.new_trigger(u.id),
            "actions": [{"action_id": el["action_id"], "block_id": block["block_id"],
                         "value": el.get("value", ""), "type": "button",
                         "action_ts": "1700000000.654321"}]}


async def test_a_slack_event_delivered_four_times_over_http_has_one_effect(slack: SlackDriver) -> None:
    assert slack.adapter is not None
    body = json.dumps(dm_event(slack, "whoami", "Ev0DUP0001"))
    # The first delivery and three retries, racing as they do when the first ack was slow.
    statuses = await asyncio.gather(*(deliver(slack, body, "application/json", n) for n in range(4)))
    await slack.adapter.drain()
    assert statuses == [200, 200, 200, 200]
    said = replies(slack.seen(PRACTITIONER))
    assert len(said) == 1 and PRACTITIONER in said[0]


async def test_a_pulse_tap_delivered_four_times_stores_one_answer(slack: SlackDriver) -> None:
    assert slack.adapter is not None
    await open_round(slack.core)
    body = urlencode({"payload": json.dumps(slack_tap(slack, "4"))})
    for n in range(4):
        assert await deliver(slack, body, "application/x-www-form-urlencoded", n) == 200
        await slack.adapter.drain()
    assert await answers(slack.core) == 1
    assert len(slack.fake.called("chat.update")) == 1  # the card moved on once
    assert any("question 2 of 7" in text for text in slack.seen(PRACTITIONER))


@pytest.fixture
async def socket_slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack(), env={"SLACK_SIGNING_SECRET": "", "SLACK_APP_TOKEN": APP_TOKEN})
    await driver.start()
    await driver.fake.socket_connected()
    yield driver
    await driver.close()


async def test_socket_mode_redelivers_without_retry_headers_and_counts_once(
    socket_slack: SlackDriver,
) -> None:
    slack = socket_slack
    assert slack.adapter is not None
    event = dm_event(slack, "whoami", "Ev0DUPSOCK")
    for n in range(4):
        # Socket Mode: a new envelope each time, no X-Slack-Retry-* headers; same event_id.
        ack = await slack.fake.socket_send("events_api", event, envelope_id=f"env-{n}", retry_attempt=n)
        assert ack["envelope_id"] == f"env-{n}"
        await slack.adapter.drain()
    assert len(replies(slack.seen(PRACTITIONER))) == 1
    await open_round(slack.core)
    tap = slack_tap(slack, "5")
    for n in range(4):
        await slack.fake.socket_send("interactive", tap, envelope_id=f"tap-{n}", retry_attempt=n)
        await slack.adapter.drain()
    assert await answers(slack.core) == 1


async def test_a_teams_activity_delivered_twice_has_one_effect(teams: TeamsDriver) -> None:
    uid, cid = teams.dm_id(PRACTITIONER)
    teams.fake.state.users[uid].installed = True
    said = teams.activity(uid, cid, "personal", text="whoami", textFormat="plain")
    before = len(replies(teams.seen(PRACTITIONER)))
    await asyncio.gather(teams.post(said), teams.post(said))
    assert len(replies(teams.seen(PRACTITIONER))) == before + 1

    await open_round(teams.core)
    post = next(p for p in reversed(teams.fake.in_conversation(cid)) if card_of(p.current))
    card = card_of(post.current) or {}
    data = next(a["data"] for el in card["body"] for a in _actions(el)
                if a.get("title") == "4" and (a.get("data") or {}).get(teams_render.KIND) == "action")
    tap = teams.activity(uid, cid, "personal", value=data, replyToId=post.id)
    await teams.post(tap)
    await teams.post(tap)
    assert await answers(teams.core) == 1
    assert len(teams.fake.state.posted[post.id].versions) == 2  # edited once


def _actions(el: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(el.get("actions", [])) if el.get("type") == "ActionSet" else []
    for child in el.get("items", []) + el.get("columns", []):
        out.extend(_actions(child))
    return out
