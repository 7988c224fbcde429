"""When the bot cannot get its own token (a wrong secret, Entra unreachable), a valid request is
answered 503 so the Bot Connector delivers it again, the log says once and plainly which
setting to fix (never the secret), and /readyz says Teams credentials are unusable
(issue 17 item 8)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.teams.mount import TEAMS_KEY, mount
from bot.core import Core
from staffvoice.serve.app import build_app
from staffvoice.serve.health import Health
from tests.conformance.drivers.teams import TeamsDriver

SECRET = "n0t-the-real-secret-value"
PRACTITIONER = "practitioner1@northbridge.example"


class MsalLikeTokens:
    """Fails the way the SDK's MsalAuth fails: ValueError carrying Entra's answer for a wrong
    secret, or requests' ConnectionError when login.microsoftonline.com cannot be reached."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.fixed: str | None = None

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        if self.fixed is not None:
            return self.fixed
        raise self.error


WRONG_SECRET = ValueError(
    "Failed to acquire token. {'error': 'invalid_client', 'error_description': "
    "'AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
    "request is the client secret value, not the client secret ID.', 'error_codes': [7000215]}")
NO_NETWORK = requests.exceptions.ConnectionError(
    "HTTPSConnectionPool(host='login.microsoftonline.com', port=443): Max retries exceeded")


@pytest.mark.parametrize(("error", "says"), [
    (WRONG_SECRET, "refused the client secret"),
    (NO_NETWORK, "could not be reached"),
])
async def test_a_valid_request_gets_503_and_one_clear_line_when_the_bot_has_no_token(
    teams: TeamsDriver, caplog: pytest.LogCaptureFixture, error: Exception, says: str,
) -> None:
    pool = teams.core.ports["teams"].pool  # type: ignore[attr-defined]
    pool.tokens = MsalLikeTokens(error)
    uid, cid = teams.dm_id(PRACTITIONER)
    teams.fake.state.users[uid].installed = True
    assert teams.http is not None
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            async with teams.http.post(
                teams.url, json=teams.activity(uid, cid, "personal", text="help"),
                headers={"Authorization": f"Bearer {teams.fake.sign()}"},
            ) as r:
                assert r.status == 503 and r.headers.get("Retry-After")
                assert "not a valid activity" not in await r.text()
    said = [r for r in caplog.records if "credentials" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]  # once, not per request
    assert says in said[0].getMessage() and said[0].exc_info is None
    everything = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "Traceback" not in everything and "error_description" not in everything
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r is not said[0]]

    # Fixed (a new secret): the next delivery is served, and the log says so.
    pool.tokens.fixed = teams.fake.outbound_token()
    await teams.post(teams.activity(uid, cid, "personal", text="help"))
    assert "whoami" in teams.seen(PRACTITIONER)[-1]
    assert pool.credentials_problem is None


async def test_readyz_says_teams_credentials_are_unusable(loaded: Core) -> None:
    from tests.fakes.teams_connector import FakeConnector

    fake = await FakeConnector().start()
    tokens = MsalLikeTokens(WRONG_SECRET)
    env = {
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": fake.state.app_id,
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET": SECRET,
        "STAFFVOICE_TEAMS_OPENID_METADATA": fake.metadata_url,
    }
    app, _ = build_app(loaded, {}, Health(loaded))
    assert mount(app, loaded, env, tokens=tokens)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        body: dict[str, Any] = {}
        for _ in range(100):  # the start-up probe asks for a token in the background
            r = await client.get("/readyz")
            body = await r.json()
            if body.get("teams") != "ok":
                break
        assert r.status == 503
        assert body["teams"].startswith("credentials unusable: Entra ID refused the client secret")
        assert "CLIENTSECRET" in body["teams"] and SECRET not in str(body)
        tokens.fixed = fake.outbound_token()
        await app[TEAMS_KEY].pool.token()
        r = await client.get("/readyz")
        assert (await r.json())["teams"] == "ok" and r.status == 200
    finally:
        await client.close()
        await fake.close()


def test_a_build_without_teams_has_nothing_to_say_on_readyz() -> None:
    app = web.Application()
    from adapters import readiness

    assert readiness.problems(app) == {}
