"""What a signed-in person can type into the dashboard's addresses and forms that no page
expects: every one gets the "not right" page (400), never "something went wrong" (500) with a
traceback in the log. A NUL character is the case in point: SQLite compares it, PostgreSQL
refuses any text holding one, so an id with %00 in it failed every page that looks ids up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
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


async def test_a_form_bigger_than_the_dashboards_limit_is_refused_before_it_is_read(server: Server) -> None:
    """The dashboard's forms are a few KB (a reply is at most 3,000 characters); the server as
    a whole takes up to 1 MB (Slack's payloads). A form over 64 KB gets "That was too long",
    signed in or not."""
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"a=" + b"x" * 10_000 + b"&"

    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        page = await (await http.get(f"{server.url}/app/feedback")).text()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        resp = await http.post(f"{server.url}/app/feedback/reply", allow_redirects=False,
                               data={"csrf": csrf, "item": "i", "text": "x" * 100_000})
        assert resp.status == 413 and "That was too long" in await resp.text()
        # A browser always says how long a form is; a body sent in chunks is not a form of ours.
        resp = await http.post(f"{server.url}/app/feedback/reply", data=chunks(), headers={
            "Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False)
        assert resp.status == 400 and NOT_RIGHT in await resp.text()
    async with aiohttp.ClientSession() as stranger:
        resp = await stranger.post(f"{server.url}/app/signout", data={"csrf": "x", "a": "x" * 900_000})
        assert resp.status == 413 and "That was too long" in await resp.text()
