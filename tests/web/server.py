"""The dashboard as `staffvoice serve` builds it, on 127.0.0.1 and an ephemeral port, with the
fake OpenID Connect provider registered as Slack (shared by the web and browser tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from bot.core import Core
from tests.fakes.oidc import FakeOIDC


@dataclass
class Server:
    url: str
    core: Core
    oidc: FakeOIDC
    runner: web.AppRunner


@asynccontextmanager
async def serve_dashboard(core: Core, bound: str = "127.0.0.1") -> AsyncIterator[Server]:
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    fake = FakeOIDC()
    issuer = await fake.start()
    env = {"STAFFVOICE_BOUND_HOSTS": bound,
           "STAFFVOICE_WEB_SLACK_CLIENT_ID": fake.client_id,
           "STAFFVOICE_WEB_SLACK_CLIENT_SECRET": fake.client_secret,
           "STAFFVOICE_WEB_SLACK_ISSUER": issuer}
    app, _ = build_app(core, env, Health(core))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fake.redirect_uris.add(f"{url}/app/auth/slack/callback")
    try:
        yield Server(url, core, fake, runner)
    finally:
        await runner.cleanup()
        await fake.stop()
