"""What a signed-in person can type into the dashboard's addresses and forms that no page
expects: every one gets the "not right" page (400), never "something went wrong" (500) with a
traceback in the log. A NUL character is the case in point: SQLite compares it, PostgreSQL
refuses any text holding one, so an id with %00 in it failed every page that looks ids up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CHANGE = "changelead@northbridge.example"
NOT_RIGHT = "Something in that request was not right"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


@pytest.mark.parametrize("path", [
    "/app/roadmap/m%00", "/app/feedback?theme=t%00", "/app/feedback?status=new%00",
    "/app/pulse?round=r%00", "/app/pulse/export.csv?round=r%00", "/app/pulse?group=g%00",
    "/app/broadcasts/b%00/failures.csv", "/app/broadcasts/live?follow=%00",
])
async def test_a_nul_in_an_address_is_a_bad_request(server: Server, path: str) -> None:
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(server.url + path, allow_redirects=False)
        assert resp.status == 400 and NOT_RIGHT in await resp.text()


@pytest.mark.parametrize("action, fields", [
    ("/app/feedback/reply", {"item": "i\x00", "text": "Thank you"}),
    ("/app/feedback/reply", {"item": "i", "text": "Thank\x00 you"}),
    ("/app/feedback/status", {"item": "i\x00", "new_status": "read"}),
    ("/app/feedback/publish", {"publish_theme": "supervision", "title": "We\x00 did", "text": "This"}),
])
async def test_a_nul_in_a_form_is_a_bad_request_and_changes_nothing(
        server: Server, action: str, fields: dict[str, str]) -> None:
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        page = await (await http.get(f"{server.url}/app/feedback")).text()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        resp = await http.post(server.url + action, data={"csrf": csrf, **fields},
                               allow_redirects=False)
        assert resp.status == 400 and NOT_RIGHT in await resp.text()
