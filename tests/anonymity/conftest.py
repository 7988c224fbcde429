"""Fixtures the anonymity attacks share: the dashboard served for the loaded programme."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from tests.web.server import Server, serve_dashboard


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    """The web dashboard of `loaded`, on an ephemeral port (sign in with `server.oidc`)."""
    async with serve_dashboard(loaded) as running:
        yield running
