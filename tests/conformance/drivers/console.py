"""Driver on the console adapter: every step is a typed line, as a person would type it."""

from __future__ import annotations

from adapters.console.adapter import ConsoleChat
from bot.core import Core
from bot.feedback.service import settle_notices
from bot.model import Form, plain_text
from tests.conformance.drivers.base import labels_match


class ConsoleDriver:
    name = "console"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.output: list[str] = []
        self.chat = ConsoleChat(core, "nobody@example.invalid", write=self.output.append)
        self.port = self.chat.port

    async def _as(self, email: str) -> None:
        if self.chat.email != email.lower():
            await self.chat.line(f"/as {email}")

    async def say(self, email: str, text: str) -> None:
        await self._as(email)
        await self.chat.line(text)

    async def tap(self, email: str, label: str) -> None:
        await self._as(email)
        for i, (tap, _ref) in enumerate(self.port.taps.get(email.lower(), []), 1):
            if labels_match(tap.label, label):
                await self.chat.line(str(i))
                return
        raise AssertionError(f"{email} has no choice labelled {label!r}")

    def form(self, email: str) -> Form | None:
        of = self.port.forms.get(email.lower())
        return of.form if of else self.port.notices.get(email.lower())

    async def submit(self, email: str, values: dict[str, str]) -> dict[str, str] | None:
        from bot.model import NumberInput, SelectInput, ToggleInput

        await self._as(email)
        of = self.port.forms.get(email.lower())
        assert of is not None, f"{email} has no open form"
        before = len(self.output)
        for inp in of.form.inputs:
            v = values.get(inp.name, "")
            if isinstance(inp, SelectInput) and v:
                v = str(next(i for i, o in enumerate(inp.options, 1) if o.value == v))
            elif isinstance(inp, ToggleInput):
                v = "y" if v == "true" else "n"
            elif isinstance(inp, NumberInput):
                v = str(v)
            await self.chat.line(v)
        await settle_notices()  # a reply's notice to its author, sent in the background
        errors = [line for line in self.output[before:] if "(form not sent" in line]
        return {"_": "\n".join(self.output[before:])} if errors else None

    def seen(self, email: str) -> list[str]:
        ids = self.port.sent_to.get(email.lower(), [])
        return [plain_text(self.port.messages[i]) for i in ids if i in self.port.messages]

    def channel(self, ref: str) -> list[str]:
        ids = self.port.sent_to.get(ref, [])
        return [plain_text(self.port.messages[i]) for i in ids if i in self.port.messages]

    async def close(self) -> None:
        pass


async def make(core: Core) -> ConsoleDriver:
    return ConsoleDriver(core)
