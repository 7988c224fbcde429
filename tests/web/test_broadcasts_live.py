"""The broadcasts page's live figures: a stream of Server-Sent Events for the change team only,
with counts and nothing that names a person, that follows a sending broadcast and ends when
nothing is sending."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event as db_event
from sqlalchemy import select, update

from adapters.fake.port import FakePort
from bot.audit import trail
from bot.broadcasts import service as broadcasts
from bot.broadcasts.sender import Sender
from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from bot.people import service as people
from bot.people.tables import Person
from bot.roles import CHANGE_TEAM
from staffvoice.web.pages import broadcasts as page
from staffvoice.web.tables import WebSession
from storage.db import Database
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CHANGE = "changelead@northbridge.example"
LEADER = "director@northbridge.example"
LIVE = "/app/broadcasts/live"


@pytest.fixture
async def server(loaded: Core, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    monkeypatch.setattr(page, "POLL_S", 0.05)
    monkeypatch.setattr(page, "CHECK_S", 0.05)
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


async def test_a_new_stream_asked_about_a_finished_broadcast_sends_its_final_figures(
        server: Server) -> None:
    """It finished while the page had no stream open: the page asks about it (`?follow=`),
    and the stream's first word is its final figures, then done."""
    bid = await _publish(server.core)
    total = (await broadcasts.status(server.core, bid)).total
    await Sender(server.core).drain()
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(f"{server.url}{LIVE}?follow={bid}")
        seen = [e async for e in _events(resp)]
    assert seen == [("progress", {"id": bid, "state": "done", "settled": total, "total": total,
                                  "percent": 100, "sent": total, "queued": 0, "waiting": 0,
                                  "sending": 0, "retrying": 0, "failed": 0, "skipped": 0,
                                  "celebrations": 0}),
                    ("done", {})]


@pytest.mark.parametrize("follow", ["", "nope", "../../etc", "%00", ",".join(["x"] * 500),
                                    "a" * 5000, "' OR 1=1 --"])
async def test_a_stream_asked_about_anything_else_just_says_done(
        server: Server, follow: str) -> None:
    await _publish(server.core)
    await Sender(server.core).drain()
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(server.url + LIVE, params={"follow": follow})
        assert resp.status == 200
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


async def _first(resp: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    async for event in _events(resp):
        return event
    raise AssertionError("the stream ended without an event")


async def test_every_open_stream_is_fed_by_the_one_reader_of_the_process(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three open pages cost one reader's database reads, not three."""
    readers: set[str] = set()
    read_recent = broadcasts.recent

    async def recent(core: Core, n: int) -> list[broadcasts.Broadcast]:
        task = asyncio.current_task()
        readers.add(task.get_name() if task else "?")
        return await read_recent(core, n)

    bid = await _publish(server.core)
    async with await _signed_in(server, CHANGE) as http:
        streams = [await http.get(server.url + LIVE) for _ in range(3)]
        monkeypatch.setattr(broadcasts, "recent", recent)
        firsts = [await _first(r) for r in streams]
        assert all(name == "progress" and f["id"] == bid for name, f in firsts)
        await Sender(server.core).drain()
        rests = [[e async for e in _events(r)] for r in streams]
    for seen in rests:
        assert seen[-1] == ("done", {})
        assert ("progress", {**firsts[0][1], "state": "done", "settled": firsts[0][1]["total"],
                             "percent": 100, "sent": firsts[0][1]["total"], "queued": 0}) in seen
    assert readers == {"live-feed"}


async def test_too_many_open_streams_get_a_clear_answer_to_try_again_later(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page, "MAX_STREAMS", 2)
    monkeypatch.setattr(page, "MAX_PER_SESSION", 1)
    await _publish(server.core)
    async with await _signed_in(server, CHANGE) as first, \
            await _signed_in(server, CHANGE) as second, await _signed_in(server, CHANGE) as third:
        a = await first.get(server.url + LIVE)
        assert (await _first(a))[0] == "progress"
        again = await first.get(server.url + LIVE)  # a second tab of the same sign-in
        assert again.status == 429 and again.headers["Retry-After"] == str(page.RETRY_S)
        assert again.headers["Content-Type"].startswith("text/plain")
        assert "already follows the live figures" in await again.text()
        b = await second.get(server.url + LIVE)
        assert b.status == 200 and (await _first(b))[0] == "progress"
        busy = await third.get(server.url + LIVE)  # the process holds as many as it may
        assert busy.status == 503 and busy.headers["Retry-After"] == str(page.RETRY_S)
        assert "too many pages are following them" in await busy.text()
        assert "Traceback" not in await busy.text()
        await Sender(server.core).drain()
        assert [e async for e in _events(a)][-1] == ("done", {})
        assert [e async for e in _events(b)][-1] == ("done", {})
        later = await third.get(server.url + LIVE)  # the ended streams made room
        assert later.status == 200 and [e async for e in _events(later)] == [("done", {})]
    # Refused streams are not views: one entry for each of the three sessions that streamed.
    assert len(await _stream_views(server.core)) == 3


async def test_a_stream_ends_soon_after_its_viewer_signs_out(server: Server) -> None:
    await _publish(server.core)  # sending, and left sending: only the sign-out ends the stream
    async with await _signed_in(server, CHANGE) as http:
        home = await (await http.get(f"{server.url}/app/")).text()
        csrf = home.split('name="csrf" value="')[1].split('"')[0]
        resp = await http.get(server.url + LIVE)
        assert (await _first(resp))[0] == "progress"
        out = await http.post(f"{server.url}/app/signout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303
        async with asyncio.timeout(10):
            rest = [e async for e in _events(resp)]
    assert rest == [("stopped", {})]


async def test_a_stream_ends_soon_after_its_viewer_leaves_the_change_team(server: Server) -> None:
    core = server.core
    await _publish(core)
    async with await _signed_in(server, CHANGE) as http:
        resp = await http.get(server.url + LIVE)
        assert (await _first(resp))[0] == "progress"
        async with core.db.session() as s:
            person = await people.person_by_email(s, CHANGE)
            assert person is not None and await people.revoke_role(s, person.id, CHANGE_TEAM)
            await s.commit()
        async with asyncio.timeout(10):
            rest = [e async for e in _events(resp)]
        assert rest == [("stopped", {})]
        assert (await http.get(server.url + LIVE)).status == 403  # and the browser's retry is refused


async def test_reconnects_are_one_audit_entry_per_session_an_hour(server: Server) -> None:
    clock = server.core.clock
    assert isinstance(clock, FakeClock)
    async with await _signed_in(server, CHANGE) as http:
        for _ in range(3):  # nothing sending: each stream says done, and the browser comes back
            assert [e async for e in _events(await http.get(server.url + LIVE))] == [("done", {})]
        assert len(await _stream_views(server.core)) == 1
        for minutes in (29, 29):  # the session stays in use (its idle limit is 30 minutes)
            clock.advance(timedelta(minutes=minutes))
            await http.get(server.url + LIVE)
        assert len(await _stream_views(server.core)) == 1
        clock.advance(timedelta(minutes=3))  # an hour since the first entry
        await http.get(server.url + LIVE)
        assert len(await _stream_views(server.core)) == 2
    async with await _signed_in(server, CHANGE) as other:  # another sign-in is another session
        await other.get(server.url + LIVE)
    views = await _stream_views(server.core)
    assert len(views) == 3 and all(v.who == CHANGE and v.surface == "web" for v in views)
    assert (await trail.verify(server.core.db)).ok


async def test_two_replicas_on_one_database_write_one_audit_entry_an_hour(
        server: Server, db_url: str, settings: Settings) -> None:
    """A session's reconnects land on either of two replicas (two apps, each with its own
    core and connection pool, one database): still one entry per session an hour."""
    clock = server.core.clock
    assert isinstance(clock, FakeClock)
    other_core = Core(Database(db_url), settings=settings, clock=clock)
    await other_core.start()
    try:
        async with serve_dashboard(other_core) as other:
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[server.url, other.url])
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                server.oidc.sign_in_as(CHANGE)
                assert (await _oidc(http, server)).status == 303
                for replica in (server, other, other, server, other):
                    resp = await http.get(replica.url + LIVE)
                    assert [e async for e in _events(resp)] == [("done", {})]
                assert len(await _stream_views(server.core)) == 1
                clock.advance(timedelta(minutes=29))
                for replica in (other, server):
                    await http.get(replica.url + LIVE)
                assert len(await _stream_views(server.core)) == 1
                clock.advance(timedelta(minutes=29))
                await http.get(server.url + LIVE)
                clock.advance(timedelta(minutes=3))  # an hour since the first entry
                await asyncio.gather(*(http.get(r.url + LIVE) for r in (server, other, other)))
                assert len(await _stream_views(server.core)) == 2
    finally:
        await other_core.db.dispose()
    assert (await trail.verify(server.core.db)).ok


async def _stream_views(core: Core) -> list[trail.Line]:
    return [e for e in await trail.entries(core.db)
            if e.action == "view.dashboard" and e.target == "broadcasts live"]


async def test_the_hours_audit_claim_and_its_entry_are_written_together(server: Server) -> None:
    """The claim on the session's row and the trail's entry are one transaction: a process
    killed as it writes the entry leaves neither, so the next stream records the viewing.

    Before: the claim was committed first and released only by an exception handler; killed
    at the entry (nothing after it reaches the database), the claim stayed and that hour's
    viewing was never audited."""
    engine = server.core.db.engine.sync_engine
    dead = False

    def kill(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        nonlocal dead
        dead = dead or sql.lstrip().upper().startswith("INSERT INTO AUDIT_ENTRIES")
        if dead:
            raise RuntimeError("the process was killed")  # nothing more reaches the database

    async def state() -> tuple[list[datetime | None], int]:
        async with server.core.db.session() as s:
            claims = list((await s.execute(select(WebSession.stream_audited_at))).scalars())
        return claims, len(await _stream_views(server.core))

    async with await _signed_in(server, CHANGE) as http:
        db_event.listen(engine, "before_cursor_execute", kill)
        try:
            assert (await http.get(server.url + LIVE)).status == 500
        finally:
            db_event.remove(engine, "before_cursor_execute", kill)
        assert dead
        assert await state() == ([None], 0)  # neither the claim nor the entry
        assert [e async for e in _events(await http.get(server.url + LIVE))] == [("done", {})]
        assert await state() == ([server.core.clock.now()], 1)  # both
    assert (await trail.verify(server.core.db)).ok
