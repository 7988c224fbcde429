"""Every dashboard page a person opens is written to the audit trail (issue 21 point 4): who,
which page, surface "web", the chain still verifying; a refused page is not a view."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.audit import trail
from bot.core import Core
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

LEADER = "director@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


async def _views(core: Core) -> list[trail.Line]:
    return [e for e in await trail.entries(core.db) if e.action == "view.dashboard"]


async def test_each_page_a_leader_opens_is_an_audit_entry(server: Server) -> None:
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        for path in ("/app/", "/app/pulse", "/app/feedback", "/app/safeguarding"):
            resp = await http.get(server.url + path)
            assert resp.status in (200, 403), path
    views = await _views(server.core)
    seen = [v.target for v in views]
    assert {"home", "pulse"} <= set(seen)
    assert all(v.who == LEADER and v.surface == "web" for v in views)
    assert (await trail.verify(server.core.db)).ok


async def test_a_refused_page_is_not_recorded_as_viewed(server: Server) -> None:
    server.oidc.sign_in_as(PRACTITIONER)
    async with _client(server) as http:
        resp = await _oidc(http, server)
        assert resp.status == 303
        refused = await http.get(f"{server.url}/app/pulse")
        assert refused.status == 403
    assert [v.target for v in await _views(server.core)] == []


async def test_no_one_signed_in_leaves_no_entry(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{server.url}/app/pulse", allow_redirects=False)
        assert resp.status == 303
    assert await _views(server.core) == []
