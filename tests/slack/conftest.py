"""A running Slack adapter on a real aiohttp server, talking to the fake Slack Web API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    yield driver
    await driver.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = FakeSlack(retry_after=0)
    await f.start()
    yield f
    await f.close()
