"""The turn's activity as the agent reads it: from the body the endpoint parsed, the same as the
SDK's model dump of it (which walked the whole parsed model again on every turn), except that a
timestamp stays as it was received."""

from __future__ import annotations

from typing import Any

import pytest
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import TurnContext

from adapters.teams import agent
from tests.conformance.drivers.teams import CHANNEL_ID, TeamsDriver
from tests.conformance.test_feedback import CONCERN

WHO = "practitioner2@northbridge.example"
LEAD = "changelead@northbridge.example"
STAMPS = ("timestamp", "localTimestamp")


def _when(stamp: str) -> Any:
    return Activity.model_validate({"type": "message", "timestamp": stamp}).timestamp


async def test_the_agent_reads_what_the_sdk_model_dump_gave(
    teams: TeamsDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[dict[str, Any], dict[str, Any]]] = []
    ours = agent.inbound

    def compared(context: TurnContext) -> dict[str, Any]:
        a = ours(context)
        assert agent.INBOUND.get() is not None  # from the parsed body, not dumped
        read.append((a, context.activity.model_dump(by_alias=True, exclude_none=True,
                                                    mode="json")))
        return a

    monkeypatch.setattr(agent, "inbound", compared)
    lead = teams.fake.user_by_email(LEAD)
    # A reinstall with odd but valid parts: nulls in an account, a field the model ignores.
    odd = teams.activity(lead.id, CHANNEL_ID, "channel", type="installationUpdate",
                         action="add-upgrade", somethingNew={"x": 1})
    odd["from"]["aadObjectId"] = None
    odd["timestamp"] = "2026-12-07T00:31:41.1234567Z"  # seven digits, as Teams writes them
    await teams.post(odd)
    await teams.say(WHO, "feedback")  # a message, then the dialog opened (task/fetch)
    await teams.mention(WHO, "whoami")
    assert await teams.submit(WHO, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    kinds = {(a.get("type"), a.get("name")) for a, _ in read}
    assert kinds >= {("installationUpdate", None), ("message", None), ("invoke", "task/fetch"),
                     ("invoke", "task/submit")}
    for a, dumped in read:
        assert {k: v for k, v in a.items() if k not in STAMPS} == \
            {k: v for k, v in dumped.items() if k not in STAMPS}
        assert [_when(a[k]) for k in STAMPS if k in a] == \
            [_when(dumped[k]) for k in STAMPS if k in dumped]
    assert "somethingNew" not in read[0][0] and "aadObjectId" not in read[0][0]["from"]
