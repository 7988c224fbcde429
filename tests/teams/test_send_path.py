"""The Teams send path: our own payload posted as it is, and no turn left in a reference cycle.

A send used to go through the SDK's `send_to_conversation`, which takes an `Activity`: the
payload was validated into the model and dumped back to a dict before aiohttp encoded it. It is
now posted through the same pooled session (adapters/teams/connector.send_activity); the first
test shows the model gave every payload we send back unchanged, so the bytes on the wire are
the same. An invoke's answer used to go through `TurnContext.send_activity`, whose handler
chain's closures hold the TurnContext: each invoke (a dialog opened or submitted) left ~77
objects in a cycle that only the garbage collector frees (bench/README.md, eleventh session).
"""

from __future__ import annotations

import gc
import json
from typing import Any

from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import TurnContext

from adapters.teams import dialogs, render
from adapters.teams.port import wire_bytes
from bot.model import FormSubmitEvent, Message, MessageEvent, Text
from tests.conformance.drivers.teams import TeamsDriver
from tests.conformance.test_feedback import CONCERN
from tests.teams.test_render import EVERY_BLOCK

WHO = "practitioner2@northbridge.example"


def _through_the_model(payload: dict[str, Any]) -> dict[str, Any]:
    """What the SDK's send_to_conversation posted for a payload."""
    return dict(Activity.model_validate(payload).model_dump(by_alias=True, exclude_unset=True,
                                                            mode="json"))


def test_every_payload_we_send_is_what_the_sdk_model_sent() -> None:
    form = next(b for b in EVERY_BLOCK.blocks if b.__class__.__name__ == "Form")
    quoted = Message((Text("“Quoted” — and accented: café, naïve " * 400),))
    payloads = [render.activity_json(EVERY_BLOCK), render.activity_json(quoted),
                dialogs.opener(form)]  # type: ignore[arg-type]
    for payload in payloads:
        assert _through_the_model(payload) == payload
        assert json.dumps(_through_the_model(payload)) == json.dumps(payload)  # key order too
        assert wire_bytes(payload) == len(json.dumps(_through_the_model(payload)).encode())


HELD = (TurnContext, Activity, MessageEvent, FormSubmitEvent)


async def test_teams_turns_leave_no_cycles_holding_the_turn(
    teams: TeamsDriver, saved_garbage: list[object]
) -> None:
    await teams.say(WHO, "feedback")  # the first: the account linked, settings read
    assert teams.form(WHO) is not None
    gc.collect()
    saved_garbage.clear()
    # A message, a dialog opened from its card (task/fetch), then submitted (task/submit):
    # "Before you send", then sent.
    await teams.say(WHO, "whoami")
    await teams.say(WHO, "feedback")
    assert await teams.submit(WHO, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    assert await teams.submit(WHO, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    gc.collect()
    left = sorted({type(o).__qualname__ for o in saved_garbage if isinstance(o, HELD)})
    assert set(teams.statuses) <= {200, 202}
    thanks = teams.form(WHO)
    assert thanks is not None and not thanks.inputs  # the dialog's last step: sent
    assert left == []
