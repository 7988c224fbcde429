"""FakePort: an in-memory chat platform that records everything sent."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bot.model import ConversationRef, Event, Form, Message, MessageRef, UserRef
from bot.port import Unreachable


@dataclass
class Posted:
    ref: MessageRef
    message: Message
    history: list[Message] = field(default_factory=list)
    deleted: bool = False


class FakePort:
    """Implements the port in memory. `blocked` users raise Unreachable."""

    platform = "fake"

    def __init__(self, workspace: str = "W1") -> None:
        self.workspace = workspace
        self.posted: dict[str, list[Posted]] = {}
        self.by_id: dict[str, Posted] = {}
        self.forms: dict[str, Form] = {}
        self.blocked: set[str] = set()
        self._ids = itertools.count(1)

    def dm_id(self, user_id: str) -> str:
        return f"D-{user_id}"

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        cid = conversation.conversation_id
        if cid.startswith("D-") and cid[2:] in self.blocked:
            raise Unreachable("user blocked the app")
        ref = MessageRef(conversation, f"m{next(self._ids)}")
        p = Posted(ref, message)
        self.posted.setdefault(cid, []).append(p)
        self.by_id[ref.message_id] = p
        return ref

    async def update(self, ref: MessageRef, message: Message) -> None:
        p = self.by_id[ref.message_id]
        p.history.append(p.message)
        p.message = message

    async def delete(self, ref: MessageRef) -> None:
        self.by_id[ref.message_id].deleted = True

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        if user.user_id in self.blocked:
            raise Unreachable("user blocked the app")
        return ConversationRef(self.platform, self.workspace, self.dm_id(user.user_id))

    async def find_user(self, email: str) -> UserRef | None:
        """Like Slack's users.lookupByEmail: everyone has an account unless `unknown`."""
        return UserRef(self.platform, self.workspace, f"U-{email}", email=email)

    async def open_form(self, event: Event, form: Form) -> None:
        self.forms[event.user.user_id] = form

    # -- reading back ------------------------------------------------------------------

    def messages(self, conversation_id: str) -> list[Posted]:
        return [p for p in self.posted.get(conversation_id, []) if not p.deleted]
