"""Teams test fixtures: the fake connector and a real server with the adapter mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from tests.conformance.drivers.teams import TeamsDriver


@pytest.fixture
async def teams(loaded: Core) -> AsyncIterator[TeamsDriver]:
    """The conformance driver: app installed in the council's team, roster known."""
    d = await TeamsDriver(loaded).start()
    yield d
    await d.close()
