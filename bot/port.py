"""The port: the few things the core asks of a chat platform."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


class AppNotAuthorised(TransientError):
    """The platform refused the app itself in a workspace or tenant: token revoked, app
    uninstalled, workspace deleted, credentials rejected. Nobody there can be reached until an
    admin reinstalls or fixes it, so it says nothing about the recipient (never mark them
    unreachable); like any transient failure it is tried again later, and the adapter answers
    it locally for a while instead of asking the platform again (no spinning). `code`: the
    platform's own word for it ('token_revoked', 'HTTP 401')."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


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

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        """The direct conversation with a user (opened if needed). `remember=False`: store
        nothing about the user or the conversation (a DM whose moment would link them to
        something anonymous, `Core.dm(quiet=True)`)."""
        ...

    async def open_form(self, event: Event, form: Form) -> None:
        """Show a form to the user who caused `event`."""
        ...

    async def find_user(self, email: str) -> UserRef | None:
        """The platform account with this (verified) email, if the platform can tell."""
        ...


# -- optional extensions: a port offers them when its platform can -----------------------


@dataclass(frozen=True)
class AudienceRef:
    """A group of people the platform knows: 'slack:T1/usergroup:S123', 'slack:T1/channel:C123',
    'teams:<tenant>/team:<team id>'."""

    platform: str
    workspace: str
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}/{self.kind}:{self.id}"


def parse_audience_ref(ref: str) -> AudienceRef:
    """'platform:workspace/kind:id' -> AudienceRef; ValueError when it is not that shape."""
    platform, _, rest = ref.strip().partition(":")
    workspace, _, group = rest.partition("/")
    kind, _, gid = group.partition(":")  # Teams ids hold ':' themselves ('19:...@thread')
    if not (platform and workspace and kind and gid):
        raise ValueError(f"'{ref}' is not platform:workspace/kind:id")
    return AudienceRef(platform, workspace, kind, gid)


@runtime_checkable
class MemberLister(Protocol):
    """Optional: the people in a platform group (a Slack user group or channel, a Teams team).

    Returns every human member, page by page, with their verified email where the platform
    tells it (so the core can link them to people); raises Unreachable for a group the app
    cannot see and PlatformError for one that does not exist.
    """

    async def members(self, audience: str) -> list[UserRef]: ...


@runtime_checkable
class RefusalAware(Protocol):
    """Optional: a platform that remembers refusing the app itself (AppNotAuthorised)."""

    def app_refused(self) -> str | None:
        """Why the platform refuses the app now (in some workspace or tenant), else None.
        Lets a lookup that found nobody tell "nobody there" from "could not ask"."""
        ...


@runtime_checkable
class SizeLimited(Protocol):
    """Optional: a platform that refuses messages over a size, measured as it sends them."""

    def too_big(self, message: Message) -> str | None:
        """Why `message` cannot go as one message (size and limit, in words); None if it can."""
        ...


def too_big(ports: Iterable[object], message: Message) -> str | None:
    """The first connected platform's reason why `message` is too big to send, if any."""
    for port in ports:
        if isinstance(port, SizeLimited):
            problem = port.too_big(message)
            if problem:
                return problem
    return None
