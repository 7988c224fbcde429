"""A Port that talks to the rate-limited fake platform over HTTP (and supports keyed sends)."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.model import ConversationRef, Event, Form, Message, MessageRef, UserRef, plain_text
from bot.port import RateLimited, TransientError, Unreachable


class HttpPort:
    """Implements the core's Port plus `send_keyed`/`find_sent` against `RateLimitedPlatform`."""

    def __init__(self, base_url: str, platform: str = "fakehttp", workspace: str = "W1",
                 timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.platform = platform
        self.workspace = workspace
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.forms: dict[str, Form] = {}

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(self.base_url + path, json=body) as r:
                data: dict[str, Any] = await r.json()
                if r.status == 429:
                    raise RateLimited(float(r.headers.get("Retry-After", "1")))
                if r.status == 403:
                    raise Unreachable(data.get("error", "forbidden"))
                if r.status == 404:
                    data["not_found"] = True
                    return data
                if r.status >= 500:
                    raise TransientError(f"HTTP {r.status} {data.get('error', '')}".strip())
                return data
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            raise TransientError(type(e).__name__) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        return await self.send_keyed(conversation, message, "")

    async def send_keyed(self, conversation: ConversationRef, message: Message,
                         key: str) -> MessageRef:
        data = await self._call("/send", {
            "workspace": conversation.workspace, "conversation": conversation.conversation_id,
            "key": key, "text": plain_text(message)})
        return MessageRef(conversation, data["message_id"])

    async def find_sent(self, conversation: ConversationRef, key: str) -> MessageRef | None:
        data = await self._call("/find", {"workspace": conversation.workspace,
                                          "conversation": conversation.conversation_id, "key": key})
        return None if data.get("not_found") else MessageRef(conversation, data["message_id"])

    async def update(self, ref: MessageRef, message: Message) -> None:
        await self._call("/update", {"message_id": ref.message_id, "text": plain_text(message)})

    async def delete(self, ref: MessageRef) -> None:
        data = await self._call("/delete", {
            "workspace": ref.conversation.workspace,
            "conversation": ref.conversation.conversation_id, "message_id": ref.message_id})
        if data.get("not_found"):
            raise LookupError("message not found")

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        data = await self._call("/open_dm", {"workspace": user.workspace, "user_id": user.user_id})
        return ConversationRef(self.platform, user.workspace, data["conversation"])

    async def open_form(self, event: Event, form: Form) -> None:
        self.forms[event.user.user_id] = form

    async def find_user(self, email: str) -> UserRef | None:
        data = await self._call("/lookup", {"email": email})
        return UserRef(self.platform, self.workspace, data["user_id"], email=email)
