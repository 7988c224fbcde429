"""Hostile input on /slack/events: never a 500, never an unhandled error, never a planted mention.

Every example is a real HTTP request to the real adapter on a real aiohttp server, signed with
the app's signing secret (so it reaches the listeners and the core) unless the example is about
unsigned requests. One server per test; hypothesis varies the body.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from bot.milestones.tables import Milestone
from bot.pulse.tables import PulseQuestion, PulseRound
from tests.conformance.drivers.slack import SIGNING_SECRET, SlackDriver
from tests.hardening.checks import ErrorLog, slack_leaks
from tests.hardening.conftest import open_round
from tests.hardening.payloads import (
    command_text,
    field_value,
    fuzz_settings,
    injection,
    json_value,
    nasty_text,
    short_wrongly_typed,
    wrongly_typed,
)

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"
IDS = itertools.count(1)
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", ""]
FORMS: dict[str, tuple[str, ...]] = {
    "feedback.submit": ("text", "theme", "replies"),
    "feedback.answer": ("text",),
    "feedback.reply": ("text",),
    "feedback.publish": ("title", "text", "items"),
    "ms:update": ("status", "progress", "note"),
    "ms:new": ("id", "title", "description", "owners", "team", "due", "cadence", "theme"),
    "ms:edit": ("title", "description", "owners", "team", "due", "cadence", "theme"),
    "bc-compose": ("title", "text", "image_url", "link_url", "link_label", "celebrate",
                   "audience", "when"),
    "pulse.define": ("id", "title", "every", "when", "timezone", "audience", "reminder_after",
                     "close_after", "anonymity", "questions"),
}


async def post(slack: SlackDriver, body: bytes, content_type: str, *, signed: bool = True,
               extra: dict[str, str] | None = None) -> int:
    assert slack.http is not None and slack.adapter is not None
    headers = {"Content-Type": content_type, **(extra or {})}
    if len(body) > 200_000:
        headers["Connection"] = "close"  # may be refused unread: do not reuse the connection
    if signed:
        headers.update(sign_bytes(body))
    async with slack.http.post(slack.url, data=body, headers=headers) as resp:
        await resp.read()
        status = resp.status
    await slack.adapter.drain()
    return status


def sign_bytes(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's signature over the raw bytes (the driver's `sign` takes text; junk is not text)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest.hexdigest()}"}


def interaction(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def check(slack: SlackDriver, errors: ErrorLog, status: int, since: int, what: Any) -> None:
    assert status < 500, (status, repr(what)[:300])
    logged = errors.take()
    assert not logged, (logged, repr(what)[:300])
    leaks = slack_leaks(slack.fake, since)
    assert not leaks, leaks


async def state(slack: SlackDriver) -> tuple[list[str], list[str]]:
    """Action ids a person can really tap now, and milestone ids (for form metadata)."""
    async with slack.core.db.session() as s:
        rounds = list((await s.execute(select(PulseRound.id, PulseRound.survey_id))).all())
        positions = list((await s.execute(select(PulseQuestion.position))).scalars())
        milestones = list((await s.execute(select(Milestone.id))).scalars())
    actions = [f"pulse.a.{r}.{p}" for r, _ in rounds for p in positions]
    actions += [f"pulse.n.{r}.{p}" for r, _ in rounds for p in positions[:3]]
    actions += ["ms:checkin", "ms:show", "ms:draft", "feedback.open", "feedback.read",
                "feedback.revoke", "feedback.item", "feedback.publish", "bc-draft:x",
                "bc-celebrate:x", "slack.form", "slack.link", "nothing.here"]
    return actions, milestones


# -- 1. raw bodies, signed and unsigned --------------------------------------------------

raw_body = st.one_of(
    st.binary(max_size=3000),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["type", "event", "event_id", "team_id", "payload", "command",
                                     "challenge", "ssl_check", "token"]),
                    json_value, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_value.map(lambda v: ("payload=" + quote(json.dumps(v))).encode()),
    st.binary(max_size=200).map(lambda b: b"payload=" + b + b"%ZZ%"),
    st.sampled_from([b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}", b"payload=%7B%22type%22%3A%22",
                     "{\"type\": \"event_callback\", \"x\": \"é\"}".encode("latin-1"),
                     b"{" * 5000, b"[" * 100_000]),
)


@fuzz_settings(300)
@given(body=raw_body, content_type=st.sampled_from(CONTENT_TYPES), signed=st.booleans())
async def test_raw_bodies_signed_or_not_never_500(
    slack: SlackDriver, errors: ErrorLog, body: bytes, content_type: str, signed: bool
) -> None:
    since = len(slack.fake.calls)
    status = await post(slack, body, content_type, signed=signed)
    if not signed:
        assert status in (401, 413), status  # 413: over 1 MB, refused before reading
        assert len(slack.fake.calls) == since  # nothing ran
    check(slack, errors, status, since, body)


# -- 2. DM messages and mentions with hostile text and wrongly typed fields --------------

# What a person controls, plus fields whose type Slack varies; `user` and `channel` are Slack's.
EVENT_FIELDS = ["text", "ts", "thread_ts", "subtype", "channel_type", "team", "bot_id", "blocks",
                "files", "client_msg_id", "edited"]


@fuzz_settings(300)
@given(text=st.one_of(command_text, nasty_text), broken=st.dictionaries(
    st.sampled_from(EVENT_FIELDS), field_value, max_size=2), mention=st.booleans(),
    envelope=st.dictionaries(st.sampled_from(["team_id", "event_id", "authorizations", "api_app_id"]),
                             short_wrongly_typed, max_size=1))
async def test_messages_with_hostile_text(
    slack: SlackDriver, errors: ErrorLog, text: str, broken: dict[str, Any], mention: bool,
    envelope: dict[str, Any],
) -> None:
    u = slack.user(PRACTITIONER)
    ts = f"{int(time.time())}.{next(IDS):06d}"
    event: dict[str, Any] = {"type": "app_mention" if mention else "message", "user": u.id,
                             "text": f"<@U0BOTUSER> {text}" if mention else text, "ts": ts,
                             "channel": "C0TEAMROOM" if mention else slack.fake.dm_of(u.id),
                             "channel_type": "channel" if mention else "im", "event_ts": ts}
    event.update(broken)
    body = {"type": "event_callback", "team_id": slack.fake.team, "api_app_id": "A0X",
            "event_id": f"Ev0FUZZ{next(IDS)}", "event_time": int(time.time()), "event": event,
            **envelope}
    since = len(slack.fake.calls)
    status = await post(slack, json.dumps(body).encode(), "application/json")
    check(slack, errors, status, since, body)


# -- 3. taps: real and made-up action ids, hostile values --------------------------------

@fuzz_settings(350)
@given(data=st.data())
async def test_taps_with_hostile_values(slack: SlackDriver, errors: ErrorLog, data: st.DataObject) -> None:
    if not hasattr(slack, "_fuzz_state"):
        await open_round(slack.core)
        slack._fuzz_state = await state(slack)  # type: ignore[attr-defined]
    actions, milestones = slack._fuzz_state  # type: ignore[attr-defined]
    email = data.draw(st.sampled_from([PRACTITIONER, CHANGE]))
    u = slack.user(email)
    base = data.draw(st.one_of(st.sampled_from(actions), st.sampled_from(actions).map(
        lambda a: a + data.draw(nasty_text)), nasty_text))
    value = data.draw(st.one_of(st.sampled_from(["1", "3", "5", "0", "10", "-1", "99", "prev", "skip",
                                                 "later", "go", "text", "edit", "cancel", "send"]),
                                st.sampled_from(milestones).map(lambda m: f"{m}|at_risk"),
                                nasty_text, wrongly_typed))
    dm = slack.dm(email)
    # A real message of theirs: Slack only delivers taps on messages that exist.
    ts = dm[data.draw(st.integers(0, 10**6)) % len(dm)].ts if dm else "1.1"
    action: dict[str, Any] = {"action_id": f"{base}#0", "block_id": "b", "type": "button",
                              "value": value, "action_ts": f"{time.time():.6f}{next(IDS)}"}
    if data.draw(st.booleans()):
        action = {"action_id": f"{base}#0", "block_id": "b", "type": "static_select",
                  "selected_option": data.draw(st.one_of(wrongly_typed, st.fixed_dictionaries(
                      {"value": field_value}))), "action_ts": f"{time.time():.6f}{next(IDS)}"}
    payload: dict[str, Any] = {
        "type": "block_actions", "user": slack._user_json(u), "team": {"id": slack.fake.team},
        "container": {"type": "message", "message_ts": ts, "channel_id": slack.fake.dm_of(u.id)},
        "channel": {"id": slack.fake.dm_of(u.id)}, "trigger_id": slack.fake.new_trigger(u.id),
        "actions": [action],
    }
    payload.update(data.draw(st.dictionaries(st.sampled_from(["container", "channel", "message",
                                                              "user", "team", "actions"]),
                                             json_value.filter(lambda v: len(str(v)) <= 60),
                                             max_size=1)))
    since = len(slack.fake.calls)
    status = await post(slack, interaction(payload), "application/x-www-form-urlencoded")
    check(slack, errors, status, since, payload)


# -- 4. every form, with hostile values and metadata ---------------------------------------

@fuzz_settings(400)
@given(data=st.data())
async def test_every_form_with_hostile_values(
    slack: SlackDriver, errors: ErrorLog, data: st.DataObject
) -> None:
    if not hasattr(slack, "_fuzz_state"):
        await open_round(slack.core)
        slack._fuzz_state = await state(slack)  # type: ignore[attr-defined]
    actions, milestones = slack._fuzz_state  # type: ignore[attr-defined]
    rounds = sorted({a.split(".")[2] for a in actions if a.startswith("pulse.a.")})
    forms = {**FORMS, **{f"pulse.f.{r}.7": ("comment",) for r in rounds}}
    form_id = data.draw(st.sampled_from(sorted(forms)))
    email = data.draw(st.sampled_from([CHANGE, CHANGE, PRACTITIONER]))
    u = slack.user(email)
    values: dict[str, Any] = {}
    for name in forms[form_id]:
        kind = data.draw(st.sampled_from(["plain_text_input", "static_select", "checkboxes",
                                          "number_input", "plain_text_input"]))
        v = data.draw(field_value)
        if kind == "static_select":
            entry: Any = {"type": kind, "selected_option": data.draw(st.one_of(
                st.none(), wrongly_typed, st.just({"value": v})))}
        elif kind == "checkboxes":
            entry = {"type": kind, "selected_options": data.draw(st.one_of(st.just([]), json_value))}
        else:
            entry = {"type": kind, "value": v}
        values[name] = {"value": entry}
    if data.draw(st.integers(0, 9)) == 0:
        values = data.draw(st.dictionaries(st.text(max_size=10), json_value, max_size=3))
    metadata = data.draw(st.one_of(st.sampled_from(milestones or ["x"]), nasty_text, st.just("")))
    vid = f"V0FUZZ{next(IDS)}"
    view: dict[str, Any] = {"id": vid, "hash": f"h{vid}", "type": "modal", "callback_id": form_id,
                            "private_metadata": metadata, "team_id": slack.fake.team,
                            "title": {"type": "plain_text", "text": "x"},
                            "blocks": [{"type": "input", "block_id": n} for n in forms[form_id]],
                            "state": {"values": values}}
    view.update(data.draw(st.dictionaries(st.sampled_from(["blocks", "state", "private_metadata",
                                                           "callback_id"]), wrongly_typed, max_size=1)))
    payload = {"type": "view_submission", "team": {"id": slack.fake.team},
               "user": slack._user_json(u), "trigger_id": slack.fake.new_trigger(u.id), "view": view}
    since = len(slack.fake.calls)
    status = await post(slack, interaction(payload), "application/x-www-form-urlencoded")
    check(slack, errors, status, since, payload)


# -- 5. slash commands -----------------------------------------------------------------

@fuzz_settings(200)
@given(text=st.one_of(command_text, nasty_text, injection),
       extra=st.dictionaries(st.sampled_from(["user_id", "team_id", "channel_id", "trigger_id",
                                              "command"]), st.text(max_size=30), max_size=1),
       email=st.sampled_from([PRACTITIONER, CHANGE]))
async def test_slash_commands_with_hostile_text(
    slack: SlackDriver, errors: ErrorLog, text: str, extra: dict[str, str], email: str
) -> None:
    u = slack.user(email)
    form = {"team_id": slack.fake.team, "channel_id": "C0GENERAL", "user_id": u.id,
            "user_name": u.name, "command": "/voice", "text": text,
            "trigger_id": slack.fake.new_trigger(u.id), **extra}
    body = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in form.items()}).encode()
    since = len(slack.fake.calls)
    status = await post(slack, body, "application/x-www-form-urlencoded")
    check(slack, errors, status, since, form)
