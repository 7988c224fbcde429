"""An account's link, DM route and time zone are held by the process that learnt them and
written by its flusher (bot/people/held.py, docs/invariants.md N21): the process behaves as if
they were written, other processes see them after the flush, and two processes that linked
the same account store one row."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from bot.core import Core
from bot.model import MessageEvent, text_message
from bot.people import held
from bot.people import service as people
from bot.people.service import person_by_email
from bot.people.tables import Identity, Person
from bot.privacy import erasure, notice
from tests.conformance.drivers.fake import FakeDriver

WHO = "practitioner7@northbridge.example"


async def _idents(core: Core) -> list[Identity]:
    async with core.db.session() as s:
        return list((await s.execute(select(Identity).where(
            Identity.user_id == f"U-{WHO}"))).scalars())


async def _other(loaded: Core) -> tuple[Core, FakeDriver]:
    other = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    await other.start()
    return other, FakeDriver(other)


async def test_the_process_that_linked_an_account_reaches_it_before_the_flush_others_after(
        loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    assert WHO in d.seen(WHO)[-1]
    assert await _idents(loaded) == []  # nothing written in the message's moment
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
    assert person is not None
    assert await loaded.dm(person.id, text_message("Your team's round opens today.")) is not None
    assert d.seen(WHO)[-1] == "Your team's round opens today."
    assert await _idents(loaded) == []  # reached through the held route, nothing looked up
    assert await held.flush(loaded) == 2  # the link and its route
    [ident] = await _idents(loaded)
    assert ident.dm is not None and ident.dm["conversation_id"] == d.conv(WHO).conversation_id
    assert ident.updated_at is None and ident.reachable
    other, d2 = await _other(loaded)  # a replica, after the flush
    assert await other.dm(person.id, text_message("A reminder from the other replica.")) is not None
    assert d2.seen(WHO)[-1] == "A reminder from the other replica."


async def test_two_processes_that_linked_the_same_account_store_one_row(loaded: Core) -> None:
    d = FakeDriver(loaded)
    other, d2 = await _other(loaded)
    await d.say(WHO, "whoami")
    await other.handle(MessageEvent("other-1", d2.user(WHO), d2.conv(WHO), text="whoami"),
                       d2.port)
    assert WHO in d.seen(WHO)[-1], d.seen(WHO)
    assert WHO in d2.seen(WHO)[-1], d2.seen(WHO)
    await held.flush(loaded)
    await held.flush(other)  # the row is there: left as it is, no error
    [ident] = await _idents(loaded)
    assert ident.reachable and ident.dm is not None
    assert held.held(loaded).links == {} and held.held(other).links == {}


async def test_a_person_erased_before_the_flush_is_not_written_back(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
        assert person is not None
        await erasure.erase(s, person)
    await held.flush(loaded)
    assert await _idents(loaded) == []
    async with loaded.db.session() as s:
        assert (await s.execute(select(Person).where(Person.email == WHO))).first() is None


async def test_an_erasure_in_progress_holds_back_the_people_flushes(loaded: Core) -> None:
    """A people flush reads who is still there, then writes their held link, route, Teams
    reference and member row (which have no foreign key to stop them): an erasure that
    committed between the two would leave them naming the erased person. On PostgreSQL the
    erasure takes this flusher's advisory lock too, so no replica's flush runs while it is
    open (one writer at a time does it on SQLite)."""
    if loaded.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    assert held.held(loaded)  # their link and DM route, not written yet
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
        assert person is not None
        await erasure.erase(s, person)
        async with loaded.db.engine.connect() as other:
            free = (await other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                        {"k": held.FLUSH_LOCK})).scalar_one()
        assert free is False  # a flush now would wait for the erasure to commit
    await held.flush(loaded)
    assert await _idents(loaded) == []


async def test_a_round_opened_before_the_flush_reaches_an_account_held_here(
        loaded: Core) -> None:
    """The scheduler's tick writes what its process holds before any round or broadcast reads
    who can be reached."""
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    assert await _idents(loaded) == []
    await loaded.tick()  # Monday 10:00: the weekly round opens
    [ident] = await _idents(loaded)
    assert ident.dm is not None and ident.updated_at is None
    assert any("question" in m.lower() for m in d.seen(WHO)[-2:]), d.seen(WHO)[-3:]


async def test_an_account_linked_but_not_yet_flushed_is_admitted_in_one_statement(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    # Until the flush, each request of a newly linked account was admitted through an ORM
    # session and a roles statement built per call (about 1 M instructions more than a stored
    # account's; bench/README.md, ninth session). Now one prepared statement, same roles.
    lead = "lead.assessment@northbridge.example"  # a team lead: a role found by the join
    d = FakeDriver(loaded)
    await d.say(lead, "whoami")
    first = d.seen(lead)[-1]
    assert lead in first and "team_lead" in first.replace(" ", "_").lower(), first
    slow: list[str] = []
    for name in ("person_to_link", "roles_of", "person_by_id"):
        real = getattr(people, name)
        monkeypatch.setattr(people, name, functools.partial(_counted, slow, name, real))
    await d.say(lead, "whoami")
    assert d.seen(lead)[-1] == first and slow == []
    async with loaded.db.session() as s:
        assert (await s.execute(select(Identity).where(
            Identity.user_id == f"U-{lead}"))).first() is None  # still held, not written


def _counted(calls: list[str], name: str, real: Any, *args: Any, **kwargs: Any) -> Any:
    calls.append(name)
    return real(*args, **kwargs)


class _Writes:
    """Statements that write (INSERT, UPDATE, DELETE) run on `core`'s database while on."""

    def __init__(self, core: Core) -> None:
        self.engine = core.db.engine.sync_engine
        self.seen: list[str] = []

    def _record(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self.seen.append(statement)

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


async def test_an_account_seen_again_from_the_same_dm_and_zone_holds_nothing_and_the_flush_writes_nothing(
        loaded: Core) -> None:
    """The steady state at 200,000 staff: after the morning's first contacts every flush
    would rewrite every `identities` (and `people`) row if anything were held again. A known
    account writing from its stored DM route, with the time zone already stored, holds
    nothing, so the flushers run no statement that writes; on PostgreSQL no row's version
    changes."""
    d = FakeDriver(loaded)
    async with loaded.db.session() as s:
        await s.execute(update(Person).where(Person.email == WHO)
                        .values(from_programme=False, tz="Europe/London"))
    abroad = replace(d.user(WHO), tz="Europe/Paris")
    await loaded.handle(MessageEvent("first", abroad, d.conv(WHO), text="whoami"), d.port)
    assert held.held(loaded)  # a new link, its route and a new zone
    await held.flush(loaded)
    await notice.flush(loaded)
    assert not held.held(loaded) and notice.unwritten(loaded) == set()
    versions = await _versions(loaded)

    await loaded.handle(MessageEvent("again", abroad, d.conv(WHO), text="whoami"), d.port)
    await d.say(WHO, "help")  # no zone reported this time: the stored one stands
    assert WHO in d.seen(WHO)[-2]
    assert not held.held(loaded)
    assert notice.unwritten(loaded) == set()
    with _Writes(loaded) as writes:
        assert await held.flush(loaded) == 0
        assert await notice.flush(loaded) == 0
    assert writes == []
    assert await _versions(loaded) == versions
    async with loaded.db.session() as s:
        person = (await s.execute(select(Person).where(Person.email == WHO))).scalar_one()
    assert person.tz == "Europe/Paris"


async def test_another_process_meeting_a_stored_account_holds_nothing(loaded: Core) -> None:
    """A replica (or a restart) that meets an account whose link, route and notice row are
    stored holds none of them again: its flushes write nothing."""
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    await held.flush(loaded)
    await notice.flush(loaded)
    versions = await _versions(loaded)
    other, d2 = await _other(loaded)
    await other.handle(MessageEvent("other-1", d2.user(WHO), d2.conv(WHO), text="whoami"),
                       d2.port)
    assert WHO in d2.seen(WHO)[-1] and len(d2.seen(WHO)) == 1  # no notice: told already
    assert not held.held(other) and notice.unwritten(other) == set()
    with _Writes(other) as writes:
        assert await held.flush(other) == 0 and await notice.flush(other) == 0
    assert writes == []
    assert await _versions(loaded) == versions


async def test_held_writes_that_turn_out_to_write_nothing_rewrite_nothing(loaded: Core) -> None:
    """The person a held link belongs to is erased before the flush: nothing is written
    back, and no row is given a new version either (nothing is there to hide)."""
    d = FakeDriver(loaded)
    await d.say("practitioner1@northbridge.example", "whoami")
    await held.flush(loaded)
    await notice.flush(loaded)
    await d.say(WHO, "whoami")
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
        assert person is not None
        await erasure.erase(s, person)
    versions = await _versions(loaded)
    with _Writes(loaded) as writes:
        assert await held.flush(loaded) == 0
        assert await notice.flush(loaded) == 0
    assert writes == []
    assert await _versions(loaded) == versions


async def _versions(core: Core) -> dict[str, list[str]]:
    """PostgreSQL: each row's version (`xmin`, `ctid`) of the tables the flushers rewrite;
    SQLite: the rows themselves."""
    out: dict[str, list[str]] = {}
    async with core.db.engine.connect() as conn:
        for t in ("identities", "people", "privacy_notices_shown"):
            cols = "xmin::text, ctid::text" if not core.db.is_sqlite else "*"
            out[t] = sorted(str(r) for r in (await conn.execute(text(f"SELECT {cols} FROM {t}"))))
    return out


async def test_a_flush_rewrites_every_identity_row_in_its_own_page(loaded: Core) -> None:
    """PostgreSQL: the flush gives every `identities` row a new version (N21). At 200,000
    staff, a new version in another page costs an index entry per index and a dead row that
    waits for VACUUM, and the table grows by its whole size at every flush until VACUUM runs
    (bench/README.md, flush arithmetic). Pages keep room for a second version of each row
    (fillfactor 45), so each row's new version stays in its page (HOT), which the next flush
    prunes: rows keep their page and the table grows by no more than the new rows need."""
    if loaded.db.is_sqlite:
        pytest.skip("SQLite rewrites a row where it is")
    d = FakeDriver(loaded)
    async with loaded.db.engine.connect() as conn:  # the tests before left dead rows here
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM identities"))
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
        assert person is not None
        s.add_all([Identity(platform="fake", workspace="W1", user_id=f"U-past-{i:04d}",
                            person_id=person.id, dm={"conversation_id": f"D-past-{i:04d}"})
                   for i in range(600)])

    async def pages() -> tuple[dict[str, str], int, set[str]]:
        async with loaded.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT user_id, (ctid::text::point)[0]::int::text, xmin::text "
                "FROM identities"))).all()
            size = (await conn.execute(text(
                "SELECT pg_relation_size('identities')"))).scalar_one()
        return {r[0]: r[1] for r in rows}, int(size), {r[2] for r in rows}

    before, size, _ = await pages()
    assert len(set(before.values())) > 4  # many pages
    await d.say("practitioner1@northbridge.example", "whoami")  # a new account
    assert await held.flush(loaded) == 2
    after, size_after, xmins = await pages()
    assert len(xmins) == 1  # every live row carries this flush's version
    assert {u: p for u, p in after.items() if u in before} == before  # each in its page
    assert size_after <= size + 8192  # the new account's row may need a page; no more
    # (That the next flush prunes these earlier versions depends on no snapshot in the
    # server still needing them, which a shared test server cannot promise: the bench shows
    # it, 4.1 million of 4.1 million updates in place over 20 flushes at 200,000 rows.)


async def test_a_new_time_zone_alone_rewrites_the_people_rows_and_no_identity_row(
        loaded: Core) -> None:
    """A flush that writes only a time zone gives every `people` row a new version and
    leaves `identities` as they were: no identity row was written, so none needs hiding
    (at 200,000 staff, half the cost of such a flush)."""
    d = FakeDriver(loaded)
    async with loaded.db.session() as s:
        await s.execute(update(Person).where(Person.email == WHO)
                        .values(from_programme=False, tz="Europe/London"))
    await d.say(WHO, "whoami")
    await held.flush(loaded)
    before = await _versions(loaded)
    abroad = replace(d.user(WHO), tz="Europe/Paris")
    await loaded.handle(MessageEvent("abroad", abroad, d.conv(WHO), text="whoami"), d.port)
    assert held.held(loaded).tz and not held.held(loaded).routes
    with _Writes(loaded) as writes:
        assert await held.flush(loaded) == 1
    assert writes and all("identities" not in w for w in writes)
    after = await _versions(loaded)
    assert after["identities"] == before["identities"]
    if not loaded.db.is_sqlite:
        assert len({v.split(",")[0] for v in after["people"]}) == 1  # one version: this flush's


async def test_what_an_event_finished_at_shutdown_holds_is_written_before_the_process_ends(
        loaded: Core) -> None:
    """`serve` stops its workers (each flushing once more), then lets the adapters finish the
    events they had taken (aiohttp's on_cleanup: Slack's background work, Teams' requests).
    What those hold after the workers' last flush (here a first contact's link and DM route)
    is written by one more flush of every holder; before, it was lost with the process."""
    import asyncio

    from aiohttp import web

    from bot.scheduling.scheduler import Scheduler
    from staffvoice.serve.health import Health
    from staffvoice.serve.lifecycle import _shutdown

    d = FakeDriver(loaded)
    app = web.Application()

    async def adapter_drains(_app: web.Application) -> None:
        await d.say(WHO, "whoami")  # an event the adapter had taken, finished now

    app.on_cleanup.append(adapter_drains)
    runner = web.AppRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    workers = [asyncio.create_task(held.worker(loaded, stop, 3600)),
               asyncio.create_task(notice.worker(loaded, stop, 3600))]
    await _shutdown(Health(loaded), [], runner, Scheduler(loaded), stop, workers)
    [ident] = await _idents(loaded)
    assert ident.dm is not None and ident.updated_at is None
