"""Each input the fuzzers found that broke something, kept as a plain, fast test."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.core import clean_event
from bot.model import FormSubmitEvent, UserRef
from tests.conformance.drivers.slack import SlackDriver
from tests.hardening.checks import ErrorLog, slack_leaks
from tests.hardening.test_fuzz_slack import interaction, post

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"


def test_inbound_text_is_made_encodable_and_typed() -> None:
    event = FormSubmitEvent("ev-\ud800", UserRef("slack", "T", "U"), None, form_id="f",
                            values={"a": "x\udc00y", "b": 5, "c": None},  # type: ignore[dict-item]
                            metadata="\ud83d")
    clean = clean_event(event)
    assert isinstance(clean, FormSubmitEvent)
    assert clean.values == {"a": "x\ufffdy", "b": "", "c": ""}
    assert clean.metadata == "\ufffd" and clean.event_id == "ev-\ufffd"
    for text in (clean.event_id, clean.metadata, *clean.values.values()):
        text.encode("utf-8")


def view_submission(slack: SlackDriver, email: str, form_id: str, values: Any,
                    **view: Any) -> dict[str, Any]:
    u = slack.user(email)
    vid = f"V0REG{time.time_ns()}"
    return {"type": "view_submission", "team": {"id": slack.fake.team}, "user": slack._user_json(u),
            "trigger_id": slack.fake.new_trigger(u.id),
            "view": {"id": vid, "hash": f"h{vid}", "type": "modal", "callback_id": form_id,
                     "private_metadata": "", "title": {"type": "plain_text", "text": "x"},
                     "blocks": [{"type": "input", "block_id": "text"}],
                     "state": {"values": values}, **view}}


async def test_wrongly_typed_form_values_never_500(slack: SlackDriver, errors: ErrorLog) -> None:
    bad_states: list[Any] = [
        {"text": {"value": {"type": "static_select", "selected_option": 1.5}}},
        {"text": {"value": {"type": "plain_text_input", "value": 12}}},
        {"text": {"value": {"type": "plain_text_input", "value": "\ud800 <!channel>"}}},
        {"text": {"value": 3}},
    ]
    for state in bad_states:
        payload = view_submission(slack, CHANGE, "feedback.publish", state)
        status = await post(slack, interaction(payload), "application/x-www-form-urlencoded")
        assert status < 500, (state, status)
    for view in ({"callback_id": ["feedback.submit"]}, {"blocks": None}, {"state": 7}):
        payload = view_submission(slack, CHANGE, "feedback.submit", {}, **view)
        status = await post(slack, interaction(payload), "application/x-www-form-urlencoded")
        assert status == 400, (view, status)
    assert errors.take() == []
    assert slack_leaks(slack.fake) == []


async def test_odd_taps_and_messages_are_refused_or_ignored(slack: SlackDriver, errors: ErrorLog) -> None:
    u = slack.user(PRACTITIONER)
    base = {"type": "block_actions", "user": slack._user_json(u), "team": {"id": slack.fake.team},
            "trigger_id": slack.fake.new_trigger(u.id)}
    for actions in ({"0": {"action_id": "x"}}, [], [{"action_id": 5}], ["x"]):
        status = await post(slack, interaction({**base, "actions": actions}),
                            "application/x-www-form-urlencoded")
        assert status == 400, (actions, status)
    select = {"action_id": "pulse.a.x.0#0", "type": "static_select", "selected_option": [1],
              "action_ts": "1.1"}
    status = await post(slack, interaction({**base, "actions": [select]}),
                        "application/x-www-form-urlencoded")
    assert status == 200
    message = {"type": "event_callback", "team_id": slack.fake.team, "event_id": "Ev0REGSUB",
               "event": {"type": "message", "user": u.id, "text": "help", "ts": "1.2",
                         "channel": slack.fake.dm_of(u.id), "channel_type": "im", "subtype": []}}
    assert await post(slack, json.dumps(message).encode(), "application/json") == 200
    assert errors.take() == []


async def test_teams_odd_activities_get_400_and_log_no_payload(teams, errors: ErrorLog) -> None:  # type: ignore[no-untyped-def]
    from tests.hardening.test_fuzz_teams import post as teams_post

    uid, cid = teams.dm_id(PRACTITIONER)
    secret = "my team lead shouts at the front door"
    for broken in ({"channelData": "x"}, {"entities": "x"}, {"entities": [1]},
                   {"channelData": {"team": "x"}}, {"textFormat": "", "text": secret}):
        activity = {**teams.activity(uid, cid, "personal", text=secret), **broken}
        status = await teams_post(teams, activity)
        assert status == 400, (broken, status)
    assert await teams_post(teams, b"[" * 50_000) in (400, 401)  # no serviceUrl to match the token
    assert errors.take() == []


async def test_a_stale_early_win_draft_button_gets_a_friendly_answer(slack: SlackDriver, errors: ErrorLog) -> None:
    u = slack.user(CHANGE)
    tap = {"type": "block_actions", "user": slack._user_json(u), "team": {"id": slack.fake.team},
           "trigger_id": slack.fake.new_trigger(u.id),
           "actions": [{"action_id": "ms:draft#0", "block_id": "b", "type": "button",
                        "value": "no-such-milestone", "action_ts": "1.5"}]}
    assert await post(slack, interaction(tap), "application/x-www-form-urlencoded") == 200
    assert errors.take() == []
    assert "no longer exists" in slack.seen(CHANGE)[-1]


@pytest.mark.parametrize("length", [100, 300])
async def test_an_over_long_platform_id_is_refused_cleanly(
    slack: SlackDriver, errors: ErrorLog, length: int
) -> None:
    """Longer ids than any platform issues: stored up to the column size, refused beyond it."""
    u = slack.user(PRACTITIONER)
    body = {"type": "event_callback", "team_id": "T" * length, "event_id": "Ev0LONGID",
            "event": {"type": "message", "user": u.id, "text": "help", "ts": "1.2",
                      "channel": slack.fake.dm_of(u.id), "channel_type": "im"}}
    assert await post(slack, json.dumps(body).encode(), "application/json") < 500
    assert errors.take() == []
