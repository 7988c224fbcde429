"""The broadcasts page's live figures: a stream of Server-Sent Events for the change team only,
with counts and nothing that names a person, that follows a sending broadcast and ends when
nothing is sending."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from adapters.fake.port import FakePort
from bot.broadcasts import service as broadcasts
from bot.broadcasts.sender import Sender
from bot.core import Core
from bot.people.tables import Person
from staffvoice.web.pages import broadcasts as page
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CHANGE = "changelead@northbridge.example"
LEADER = "director@northbridge.example"
LIVE = "/app/broadcasts/live"


@pytest.fixture
async def server(loaded: Core, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    monkeypatch.setattr(page, "POLL_S", 0.05)
    loaded.add_port(FakePort())
    async with loaded.db.session() as s:  # office hours for all: nobody's DM waits for a shift
        await s.execute(update(Person).values(work_pattern=None))
        await s.commit()
    async with serve_dashboard(loaded) as running:
        yield running


async def _publish(core: Core) -> str:
    async with core.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    return await broadcasts.publish_to_staff(core, author, title="Group supervision starts",
                                             text="Every team now has a fortnightly slot.")


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, data) as they come; the stream's end ends this."""
    name, data = "", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield name, json.loads(data)
            name, data = "", ""


async def _signed_in(server: Server, email: str) -> aiohttp.ClientSession:
    http = _client(server)
    server.oidc.sign_in_as(email)
    assert (await _oidc(http, server)).status == 303
    return http


async def test_the_stream_is_the_change_teams_only(server: Server) -> None:
    await _publish(server.core)
    async with await _signed_in(server, LEADER) as http:
        resp = await http.get(server.url + LIVE)
        assert resp.status == 403
        assert "You cannot see this page" in await resp.text()
    async with aiohttp.ClientSession() as anonymous:
        resp = await anonymous.get(server.url + LIVE, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/app/signin"


async def test_the_stream_follows_a_broadcast_until_it_is_delivered_and_then_ends(server: Server) -> None:
    core = server.core
    bid = await _publish(core)
    total = (await broadcasts.status(core, bid)).total
    assert total > 5
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(server.url + LIVE)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-store"
        seen: list[tuple[str, dict[str, Any]]] = []
        async for name, data in _events(resp):
            seen.append((name, data))
            if len(seen) == 1:  # the figures as they stand; now the platform takes them all
                await Sender(core).drain()
        assert resp.content.at_eof()  # the stream ended by itself
    first, *_, last_progress, end = seen
    assert first == ("progress", {"id": bid, "state": "sending", "settled": 0, "total": total,
                                  "percent": 0, "sent": 0, "queued": total, "waiting": 0,
                                  "sending": 0, "retrying": 0, "failed": 0, "skipped": 0,
                                  "celebrations": 0})
    assert last_progress == ("progress", {**first[1], "state": "done", "settled": total,
                                          "percent": 100, "sent": total, "queued": 0})
    assert end == ("done", {})
    # Counts only: no one's name or email anywhere in the stream.
    everyone = await _people(core)
    text = json.dumps(seen)
    assert not any(n in text for n in everyone)


async def test_with_nothing_sending_the_stream_says_done_at_once(server: Server) -> None:
    bid = await _publish(server.core)
    await Sender(server.core).drain()
    assert (await broadcasts.status(server.core, bid)).broadcast.state == "done"
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(server.url + LIVE)
        assert [e async for e in _events(resp)] == [("done", {})]


async def test_the_page_loads_its_script_only_while_something_is_sending(server: Server) -> None:
    bid = await _publish(server.core)
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(f"{server.url}/app/broadcasts")
        html = await resp.text()
        assert '<script src="/static/live.js" defer></script>' in html
        assert f'data-stream="{LIVE}"' in html and 'id="live-status" role="status"' in html
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "Reload" in html  # without JavaScript, the page still offers the latest figures
        await Sender(server.core).drain()
        assert (await broadcasts.status(server.core, bid)).broadcast.state == "done"
        html = await (await http.get(f"{server.url}/app/broadcasts")).text()
        assert "live.js" not in html and "live-status" not in html


async def _people(core: Core) -> set[str]:
    async with core.db.session() as s:
        rows = (await s.execute(select(Person.display_name, Person.email))).all()
    return {v for row in rows for v in row if v}
