"""The port: the few things the core asks of a chat platform."""

from __future__ import annotations

from typing import Protocol

from bot.model import ConversationRef, Event, Form, Message, MessageRef, UserRef


class PlatformError(Exception):
    """A platform call failed."""


class Unreachable(PlatformError):
    """The user blocked the app, uninstalled it or does not exist: record, do not retry."""


class RateLimited(PlatformError):
    """HTTP 429: wait `retry_after` seconds before calling this workspace again."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(PlatformError):
    """5xx, timeouts: retry with backoff."""


class Port(Protocol):
    """What an adapter offers the core. Every method may raise a PlatformError."""

    platform: str

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        """Post a message; returns a reference for later edits."""
        ...

    async def update(self, ref: MessageRef, message: Message) -> None:
        """Edit a message in place."""
        ...

    async def delete(self, ref: MessageRef) -> None:
        """Delete a message the bot sent."""
        ...

    async def open_dm(self, user: UserRef) -> ConversationRef:
        """The direct conversation with a user (opened if needed)."""
        ...

    async def open_form(self, event: Event, form: Form) -> None:
        """Show a form to the user who caused `event`."""
        ...

    async def find_user(self, email: str) -> UserRef | None:
        """The platform account with this (verified) email, if the platform can tell."""
        ...
