"""The Slack adapter's port, as `serve` builds it (one bot token), talking to the fake Slack
Web API (tests/fakes/slack_api.py): shared by the stories that drive the core and the
broadcast engine straight at Slack (platform errors, reconciliation after a dead sender).

Each test module keeps a two-line `slack` fixture over `slack_on`, so the fixture a test asks
for is visible in its own file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select

from adapters.slack.config import SlackConfig
from adapters.slack.port import Directory, SlackPort, Workspaces
from bot.core import Core
from bot.model import text_message
from bot.people.tables import Person
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack


async def connect(core: Core, fake: FakeSlack) -> tuple[Workspaces, SlackPort]:
    """The Slack adapter's port, as `serve` builds it, talking to the fake; the core's."""
    ws = Workspaces(SlackConfig(signing_secret="s", bot_token=BOT_TOKEN, api_url=fake.url))
    await ws.start()
    port = SlackPort(ws, Directory(ws))
    core.add_port(port)
    return ws, port


@asynccontextmanager
async def slack_on(core: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    """A fake Slack where everyone of the loaded programme has an account, and the port."""
    fake = FakeSlack(retry_after=0)
    await fake.start()
    async with core.db.session() as s:
        for email in (await s.execute(select(Person.email))).scalars():
            fake.add_user(str(email))
    ws, port = await connect(core, fake)
    try:
        yield fake, port
    finally:
        await ws.close()
        await fake.close()


@asynccontextmanager
async def reinstalled(core: Core, fake: FakeSlack) -> AsyncIterator[None]:
    """An admin reinstalls the app and the bot restarts with the new token (for the block)."""
    fake.restore()
    ws, _port = await connect(core, fake)
    try:
        yield
    finally:
        await ws.close()


@asynccontextmanager
async def slack_with_leads_heard(core: Core, leads: list[str]) -> AsyncIterator[SlackDriver]:
    """The whole Slack adapter (its HTTP entry point) on a fake Slack, after the bot has DMed
    each of `leads` once (their DMs are open, as a deactivated user's stays)."""
    d = SlackDriver(core, FakeSlack(retry_after=0))
    await d.start()
    try:
        for lead in leads:
            async with core.db.session() as s:
                pid = (await s.execute(select(Person.id).where(Person.email == lead))).scalar_one()
            assert await core.dm(pid, text_message("Welcome")) is not None
        d.fake.calls.clear()
        yield d
    finally:
        await d.close()
