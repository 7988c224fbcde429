"""The Teams adapter with activities shaped like the Microsoft 365 Agents Playground's.

The Playground (npm `@microsoft/m365agentsplayground`, run against an anonymous local server)
gives its personal chat a new random id every time it starts, while the bot's database lives
on. The person is the same, so the bot must write to the chat they use now, not the old one
(which the Playground answers 404 ConversationNotFound). The shapes below were written from
what Playground 0.2.28 sends; no network or Node.js is needed.
"""

from __future__ import annotations

from typing import Any

from adapters.teams import references as refs
from adapters.teams.connector import ConnectorPool
from adapters.teams.port import TeamsPort
from bot.clock import FakeClock
from bot.model import UserRef
from storage.db import Database

TENANT = "00000000-0000-0000-0000-0000000000001"
BOT = "00000000-0000-0000-0000-00000000000011"
SERVICE = "http://localhost:56150/_connector"
USER = "user-id-0"


def playground_message(conversation_id: str, text: str = "help") -> dict[str, Any]:
    """A personal-chat message as the Playground posts it to /api/messages."""
    return {
        "type": "message",
        "text": text,
        "id": f"msg-{conversation_id}",
        "from": {"id": USER, "name": "Alex Wilber",
                 "aadObjectId": "00000000-0000-0000-0000-0000000000020"},
        "timestamp": "2026-11-30T10:00:00.000Z",
        "localTimezone": "UTC",
        "serviceUrl": SERVICE,
        "conversation": {"conversationType": "personal", "tenantId": TENANT, "id": conversation_id},
        "recipient": {"id": BOT, "name": "Test Bot"},
        "textFormat": "plain",
        "locale": "en-US",
        "entities": [{"type": "clientInfo", "locale": "en-US", "country": "US",
                      "platform": "Web", "timezone": "UTC"}],
        "channelData": {"tenant": {"id": TENANT}},
        "channelId": "msteams",
    }


async def test_a_restarted_playground_personal_chat_replaces_the_old_one(
    db: Database, clock: FakeClock
) -> None:
    # Yesterday's Playground session, then today's: same person, a new personal chat id.
    await refs.remember(db, playground_message("bbc9a5bc-old-session"), clock.now())
    await refs.remember(db, playground_message("4325cab7-new-session"), clock.now())

    port = TeamsPort(db, ConnectorPool(None), clock)
    dm = await port.open_dm(UserRef("teams", TENANT, USER))

    assert dm.conversation_id == "4325cab7-new-session"
    assert dict(dm.data)["serviceUrl"] == SERVICE
    old = await refs.conversation(db, "bbc9a5bc-old-session")
    assert old is not None and not old.installed  # superseded, kept (never written to again)


async def test_coming_back_to_the_old_chat_makes_it_current_again(
    db: Database, clock: FakeClock
) -> None:
    await refs.remember(db, playground_message("chat-a"), clock.now())
    await refs.remember(db, playground_message("chat-b"), clock.now())
    await refs.remember(db, playground_message("chat-a"), clock.now())

    row = await refs.personal(db, TENANT, USER)
    assert row is not None and row.conversation_id == "chat-a" and row.installed
    other = await refs.conversation(db, "chat-b")
    assert other is not None and not other.installed
