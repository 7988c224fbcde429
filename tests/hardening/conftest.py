"""Hardening fixtures: the real adapters on real aiohttp servers, with a pulse round open."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.pulse.tables import PulseRound
from tests.conformance.drivers.slack import SlackDriver
from tests.conformance.drivers.teams import TeamsDriver
from tests.fakes.slack_api import FakeSlack
from tests.hardening.checks import ErrorLog, error_log


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    with error_log() as handler:
        yield handler


async def open_round(core: Core) -> list[str]:
    """Monday 10:00: the weekly pulse opens and everyone gets question 1; the round ids."""
    await core.tick()
    async with core.db.session() as s:
        return list((await s.execute(select(PulseRound.id))).scalars())


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    # Fuzzing sends hundreds of events a minute into the same DMs: with Slack's rate tiers on,
    # the fake would make it wait as Slack would (tests/slack covers the tiers themselves).
    driver = SlackDriver(loaded, FakeSlack(retry_after=0, tiers=False))
    await driver.start()
    driver.fake.add_channel("C0TEAMROOM")
    yield driver
    await driver.close()


@pytest.fixture
async def teams(loaded: Core) -> AsyncIterator[TeamsDriver]:
    d = await TeamsDriver(loaded).start()
    yield d
    await d.close()
