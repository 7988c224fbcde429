"""storage/prepared.py: a fixed statement on the DB-API cursor gives what `conn.execute`
gives (values, types, transaction, errors), on both databases, without an execution context."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Integer, bindparam, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.dispatch_tables import ProcessedEvent
from bot.model import UserRef
from bot.people import service as people
from bot.people.tables import Identity, Person, PersonRole, Team
from storage.db import Database
from storage.prepared import Prepared
from tests.conftest import PG_URL

SEEN = insert(ProcessedEvent.__table__)  # type: ignore[arg-type]
WHEN = select(ProcessedEvent.event_id, ProcessedEvent.seen_at).where(
    ProcessedEvent.event_id == bindparam("event_id"))
DAY = datetime(2026, 12, 6, tzinfo=UTC)


async def _someone(db: Database) -> str:
    async with db.session() as s:
        p = Person(email="lead@northbridge.example", display_name="Lead", tz="Europe/London")
        s.add(p)
        await s.flush()
        s.add(Team(id="t-prepared", name="Prepared team", lead_person_id=p.id))
        s.add(Identity(platform="slack", workspace="T1", user_id="U1", person_id=p.id,
                       dm={"conversation_id": "D1", "is_direct": True}, reachable=False))
        s.add(PersonRole(person_id=p.id, role="change_team"))
        return p.id


async def test_rows_are_the_values_and_types_conn_execute_gives(db: Database) -> None:
    await _someone(db)
    params = {"platform": "slack", "workspace": "T1", "user_id": "U1"}
    async with db.transaction() as conn:
        await Prepared(SEEN).all(conn, {"event_id": "e1", "seen_at": DAY})
        expected = (await conn.execute(people._KNOWN, params)).all()
        got = await Prepared(people._KNOWN).all(conn, params)
        when = await Prepared(WHEN).all(conn, {"event_id": "e1"})
        when_expected = (await conn.execute(WHEN, {"event_id": "e1"})).all()
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    assert [[type(v) for v in r] for r in got] == [[type(v) for v in r] for r in expected]
    assert got[0].dm == {"conversation_id": "D1", "is_direct": True}  # JSON, decoded
    assert got[0].reachable is False and got[0].leads is True  # booleans, not 0/1
    assert when == when_expected and when[0].seen_at == DAY  # a datetime, time zone and all


async def test_the_sender_lookup_is_the_same_person_and_roles(db: Database) -> None:
    pid = await _someone(db)
    async with db.transaction() as conn:
        person, roles, dm, reachable = await people.known_sender(
            conn, UserRef(platform="slack", workspace="T1", user_id="U1"))
    assert (person.id, person.email, person.display_name, person.tz) == (
        pid, "lead@northbridge.example", "Lead", "Europe/London")
    assert roles == {"practitioner", "change_team", "team_lead"}
    assert dm == {"conversation_id": "D1", "is_direct": True} and reachable is False
    person.tz = "Europe/Paris"  # a plain object in no session: changing it writes nothing
    async with db.session() as s:
        assert (await s.get(Person, pid)).tz == "Europe/London"  # type: ignore[union-attr]


async def test_it_runs_in_the_callers_transaction_and_raises_sqlalchemys_errors(db: Database) -> None:
    seen = Prepared(SEEN)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await seen.all(conn, {"event_id": "rolled-back", "seen_at": DAY})
            raise RuntimeError("the caller fails: its transaction is rolled back")
    async with db.transaction() as conn:
        assert await Prepared(WHEN).all(conn, {"event_id": "rolled-back"}) == []
        await seen.all(conn, {"event_id": "once", "seen_at": DAY})
    with pytest.raises(IntegrityError):  # what the dispatcher's retry and duplicate check catch
        async with db.transaction() as conn:
            await seen.all(conn, {"event_id": "once", "seen_at": DAY})
    async with db.transaction() as conn:  # the pool's connection is fine afterwards
        assert len(await Prepared(WHEN).all(conn, {"event_id": "once"})) == 1


async def test_no_execution_context_is_built(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of it: `conn.execute` builds an execution context, a cursor result and an
    async result per statement (about 0.2 M instructions); a prepared statement does not."""
    await _someone(db)
    contexts = []
    real = Connection._execute_context

    def counting(self: Connection, *a: object, **kw: object) -> object:
        contexts.append(a)
        return real(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Connection, "_execute_context", counting)
    async with db.transaction() as conn:
        await Prepared(SEEN).all(conn, {"event_id": "e2", "seen_at": DAY})
        await people.known_sender(conn, UserRef(platform="slack", workspace="T1", user_id="U1"))
    assert contexts == []
    async with db.transaction() as conn:
        await conn.execute(people._KNOWN, {"platform": "slack", "workspace": "T1", "user_id": "U1"})
    assert len(contexts) == 1  # the counter counts


async def test_a_statement_that_needs_an_execution_context_is_refused(db: Database) -> None:
    # Person.id has a Python-side default: only an execution context fills it in.
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="not a statement for storage.prepared"):
            await Prepared(insert(Person.__table__)).all(  # type: ignore[arg-type]
                conn, {"email": "x@northbridge.example"})


SELECT_X = Prepared(text("SELECT :x AS v").bindparams(bindparam("x", type_=Integer)))


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL beside SQLite (as the CLI tests do)")
async def test_a_form_compiled_for_a_gone_sqlite_engine_is_not_run_on_postgresql(
        tmp_path: Path) -> None:
    """Found in review: forms were kept by `id(dialect)`; a disposed SQLite engine's dialect
    was collected, CPython gave its id to a PostgreSQL dialect, and that ran `SELECT ? AS v`
    (a syntax error), as the PostgreSQL test run does when CLI tests make SQLite databases."""
    gone: set[int] = set()  # ids of collected SQLite dialects
    for i in range(60):
        lite = Database(f"sqlite+svinline:///{tmp_path}/{i}.db")
        async with lite.transaction() as conn:
            assert [r[0] for r in await SELECT_X.all(conn, {"x": 1})] == [1]
        gone.add(id(lite.engine.sync_engine.dialect))
        await lite.dispose()
        del lite, conn
        gc.collect()
        pg = Database(PG_URL)
        reused = id(pg.engine.sync_engine.dialect) in gone
        try:
            async with pg.transaction() as conn:
                assert [r[0] for r in await SELECT_X.all(conn, {"x": 2})] == [2], i
        finally:
            await pg.dispose()
            del pg, conn
            gc.collect()
        if reused:  # the case itself has been met (a full collection is slow in a big suite)
            return
    pytest.skip("no collected SQLite dialect's id was given to a PostgreSQL one in 60 rounds")
