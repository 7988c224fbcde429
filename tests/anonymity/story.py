"""Steps the anonymity stories share (the dashboard they read is `server`, in conftest.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core import Core


def at(core: Core, day: datetime, hour: int, minute: int) -> None:
    """Set the story's clock (a FakeClock) to `hour:minute` on `day`."""
    core.clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]


async def answer_urgently(d: Any, email: str, text: str) -> None:
    """The author taps "Read the answer" and answers with `text`, a disclosure, sending it
    anyway when "Before you send" asks."""
    await d.tap(email, "Read the answer")
    errors = await d.submit(email, {"text": text})
    if errors is None and d.form(email) is not None:  # "Before you send"
        errors = await d.submit(email, {"text": text})
    assert errors is None
