"""Steps the anonymity stories share (the dashboard they read is `server`, in conftest.py)."""

from __future__ import annotations

from datetime import datetime

from bot.core import Core


def at(core: Core, day: datetime, hour: int, minute: int) -> None:
    """Set the story's clock (a FakeClock) to `hour:minute` on `day`."""
    core.clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]
