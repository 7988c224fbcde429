"""Only Slack gets in: unsigned, forged, stale or malformed requests run no handler and never 500."""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import func, select

from bot.dispatch_tables import ProcessedEvent
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.slack import SIGNING_SECRET, SlackDriver, sign

PRACTITIONER = "practitioner1@northbridge.example"


def dm_event(slack: SlackDriver, text: str, event_id: str = "Ev0SECURE1") -> str:
    u = slack.user(PRACTITIONER)
    ts = f"{int(time.time())}.000100"
    return json.dumps({
        "type": "event_callback", "team_id": slack.fake.team, "api_app_id": "A0X",
        "event_id": event_id, "event_time": int(time.time()),
        "event": {"type": "message", "channel": slack.fake.dm_of(u.id), "user": u.id,
                  "text": text, "ts": ts, "channel_type": "im"},
    })


async def raw_post(slack: SlackDriver, body: str, headers: dict[str, str],
                   content_type: str = "application/json") -> tuple[int, str]:
    assert slack.http is not None and slack.adapter is not None
    async with slack.http.post(slack.url, data=body.encode(),
                               headers={"Content-Type": content_type, **headers}) as resp:
        status, text = resp.status, await resp.text()
    await slack.adapter.drain()
    return status, text


async def nothing_ran(slack: SlackDriver) -> bool:
    async with slack.core.db.session() as s:
        handled = (await s.execute(select(func.count()).select_from(ProcessedEvent))).scalar_one()
    return handled == 0 and slack.fake.messages == [] and slack.fake.calls == []


async def test_a_forged_signature_is_refused_and_nothing_runs(slack: SlackDriver) -> None:
    body = dm_event(slack, "help")
    headers = sign("not-the-secret", body)
    assert (await raw_post(slack, body, headers))[0] == 401
    assert await nothing_ran(slack)


async def test_a_replayed_old_request_is_refused(slack: SlackDriver) -> None:
    body = dm_event(slack, "help")
    headers = sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 301)
    assert (await raw_post(slack, body, headers))[0] == 401
    assert await nothing_ran(slack)


async def test_missing_headers_are_refused(slack: SlackDriver) -> None:
    body = dm_event(slack, "help")
    assert (await raw_post(slack, body, {}))[0] == 401
    ts_only = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    assert (await raw_post(slack, body, ts_only))[0] == 401
    assert await nothing_ran(slack)


async def test_garbage_headers_or_bytes_are_refused_not_500(slack: SlackDriver) -> None:
    body = dm_event(slack, "help")
    bad_ts = {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=abc"}
    assert (await raw_post(slack, body, bad_ts))[0] == 401
    assert slack.http is not None
    latin = "café".encode("latin-1")
    async with slack.http.post(slack.url, data=latin, headers={
            "Content-Type": "application/json", "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=abc"}) as resp:
        assert resp.status == 401
    assert await nothing_ran(slack)


async def test_a_body_changed_after_signing_is_refused(slack: SlackDriver) -> None:
    body = dm_event(slack, "help")
    headers = sign(SIGNING_SECRET, body)
    assert (await raw_post(slack, body.replace("help", "grant"), headers))[0] == 401
    assert await nothing_ran(slack)


async def test_malformed_payloads_get_a_4xx_and_no_personal_data_in_logs(
    slack: SlackDriver, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    secret_text = "my manager at the front door is unkind"
    bodies = [
        ("{not json " + secret_text, "application/json"),
        (json.dumps(["a", secret_text]), "application/json"),
        (json.dumps({"no_type": secret_text}), "application/json"),
        ("payload=%7Bbroken" + secret_text.replace(" ", "+"), "application/x-www-form-urlencoded"),
        (json.dumps({"type": "event_callback", "event": {"text": secret_text}}), "application/json"),
    ]
    for body, ctype in bodies:
        status, _ = await raw_post(slack, body, sign(SIGNING_SECRET, body), ctype)
        assert 400 <= status < 500, (body, status)
    # A well-formed event nobody subscribed to: answered without a 500, logged by type only.
    other = json.dumps({"type": "event_callback", "team_id": slack.fake.team, "event_id": "Ev0OTHER",
                        "event": {"type": "reaction_added", "user": "U1", "reaction": secret_text}})
    status, _ = await raw_post(slack, other, sign(SIGNING_SECRET, other))
    assert status < 500
    assert secret_text not in caplog.text
    assert slack.fake.messages == []


async def test_url_verification_is_answered(slack: SlackDriver) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    status, text = await raw_post(slack, body, sign(SIGNING_SECRET, body))
    assert status == 200 and "c-123" in text


async def test_a_slack_retry_is_answered_once(slack: SlackDriver) -> None:
    body = dm_event(slack, "whoami", event_id="Ev0RETRY01")
    assert (await raw_post(slack, body, sign(SIGNING_SECRET, body)))[0] == 200
    retry = {**sign(SIGNING_SECRET, body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await raw_post(slack, body, retry))[0] == 200
    assert len(replies(slack.seen(PRACTITIONER))) == 1


async def test_user_text_never_becomes_a_mention_or_a_link() -> None:
    from adapters.slack.render import message_payload
    from bot.model import Context, Fields, Text, text_message

    nasty = "<!channel> <@U0ADMIN> <http://evil.example|your payslip> & more"
    msg = text_message(nasty, Context(nasty), Fields(((nasty, nasty),)))
    payload = message_payload(msg)
    dumped = json.dumps(payload)
    assert "<!channel>" not in dumped and "<@U0ADMIN>" not in dumped and "<http" not in dumped
    assert "&lt;!channel&gt;" in payload["text"]
    assert payload["blocks"][0]["text"]["text"].startswith("&lt;!channel&gt; &lt;@U0ADMIN&gt;")
    assert Text  # the neutral block type the core sends
