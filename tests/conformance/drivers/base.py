"""What every conformance driver can do: act as a user and read what users were shown."""

from __future__ import annotations

from typing import Protocol

from bot.core import Core
from bot.model import Form


class Driver(Protocol):
    name: str
    core: Core

    async def say(self, email: str, text: str) -> None:
        """The user writes `text` to the bot in their DM."""
        ...

    async def tap(self, email: str, label: str) -> None:
        """The user taps the choice labelled `label` on the newest message that has one."""
        ...

    async def submit(self, email: str, values: dict[str, str]) -> None:
        """The user fills in and submits the form that is open for them."""
        ...

    def form(self, email: str) -> Form | None:
        """The form currently open for the user, if any."""
        ...

    def seen(self, email: str) -> list[str]:
        """Plain text of every message in the user's DM, oldest first, as now shown."""
        ...

    def channel(self, ref: str) -> list[str]:
        """Plain text of every message posted to a channel reference."""
        ...

    async def close(self) -> None: ...


def labels_match(label: str, wanted: str) -> bool:
    return label.strip().lower() == wanted.strip().lower()


# Every platform account is shown the privacy notice before its first answer (bot/privacy).
NOTICE = "Before we start: how staffvoice uses your information"


def replies(seen: list[str]) -> list[str]:
    """What the bot said, without the one-off privacy notice on first contact."""
    return [m for m in seen if not m.startswith(NOTICE)]
