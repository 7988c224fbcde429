"""Driver on the core's in-memory FakePort."""

from __future__ import annotations

import itertools

from adapters.fake.port import FakePort
from bot.core import Core
from bot.feedback.service import settle_notices
from bot.model import (
    ActionEvent,
    Choices,
    ConversationRef,
    Form,
    FormSubmitEvent,
    MessageEvent,
    RatingScale,
    UserRef,
    plain_text,
)
from tests.conformance.drivers.base import labels_match


class FakeDriver:
    name = "fake"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.port = FakePort()
        core.add_port(self.port)
        self._ids = itertools.count(1)
        # A reply's notice to its author goes after the reply, in the background; the driver
        # shows it as the author would a moment later (off: a test holding that DM back).
        self.wait_for_notices = True

    def user(self, email: str) -> UserRef:
        return UserRef("fake", self.port.workspace, f"U-{email}", email=email)

    def conv(self, email: str) -> ConversationRef:
        return ConversationRef("fake", self.port.workspace, self.port.dm_id(f"U-{email}"))

    def _id(self) -> str:
        return f"fake-ev-{next(self._ids)}"

    def _close_notice(self, email: str) -> None:
        """Back in the chat: a screen with nothing to answer (a notice) was read and closed."""
        form = self.port.forms.get(f"U-{email}")
        if form is not None and form.notice:
            del self.port.forms[f"U-{email}"]

    async def say(self, email: str, text: str) -> None:
        self._close_notice(email)
        await self.core.handle(
            MessageEvent(self._id(), self.user(email), self.conv(email), text=text, trigger="t"),
            self.port,
        )

    async def tap(self, email: str, label: str) -> None:
        self._close_notice(email)
        for posted in reversed(self.port.messages(self.conv(email).conversation_id)):
            for b in posted.message.blocks:
                opts = b.options if isinstance(b, Choices) else b.options() if isinstance(b, RatingScale) else ()
                for o in opts:
                    if labels_match(o.label, label):
                        assert isinstance(b, Choices | RatingScale)
                        await self.core.handle(
                            ActionEvent(self._id(), self.user(email), self.conv(email),
                                        action_id=b.action_id, value=o.value, message=posted.ref,
                                        trigger="t"),
                            self.port,
                        )
                        return
        raise AssertionError(f"{email} has no choice labelled {label!r}")

    def form(self, email: str) -> Form | None:
        return self.port.forms.get(f"U-{email}")

    async def submit(self, email: str, values: dict[str, str]) -> dict[str, str] | None:
        form = self.port.forms.pop(f"U-{email}", None)
        assert form is not None, f"{email} has no open form"
        result = await self.core.handle(
            FormSubmitEvent(self._id(), self.user(email), None, form_id=form.form_id,
                            values=values, metadata=form.metadata, trigger="t"),
            self.port,
        )
        if self.wait_for_notices:
            await settle_notices()
        if result.form_errors:
            self.port.forms[f"U-{email}"] = form
        return result.form_errors

    def seen(self, email: str) -> list[str]:
        return [plain_text(p.message) for p in self.port.messages(self.conv(email).conversation_id)]

    def channel(self, ref: str) -> list[str]:
        return [plain_text(p.message) for p in self.port.messages(ref)]

    async def close(self) -> None:
        pass


async def make(core: Core) -> FakeDriver:
    return FakeDriver(core)
