"""`Database.transaction()`: committed on success, rolled back on error, the connection back in
the pool either way; on the inline SQLite driver in two of SQLAlchemy's greenlet hops, not four."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy.ext.asyncio.engine as async_engine
from sqlalchemy import insert, select

import storage.db
from bot.dispatch_tables import ProcessedEvent
from storage.db import OPENED, Database, give_back
from storage.prepared import Prepared

DAY = datetime(2026, 12, 6, tzinfo=UTC)
SEEN = insert(ProcessedEvent.__table__)  # type: ignore[arg-type]
COUNT = Prepared(select(ProcessedEvent.event_id))


async def _ids(db: Database) -> set[str]:
    async with db.session() as s:
        return set((await s.execute(select(ProcessedEvent.event_id))).scalars())


async def test_committed_rolled_back_and_returned_to_the_pool(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(SEEN, {"event_id": "kept", "seen_at": DAY})
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(SEEN, {"event_id": "dropped", "seen_at": DAY})
            raise RuntimeError("the block fails")
    async with db.transaction() as conn:  # committed inside the block: nothing left to do
        await conn.execute(SEEN, {"event_id": "early", "seen_at": DAY})
        await conn.commit()
    assert await _ids(db) == {"kept", "early"}
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_an_inline_sqlite_transaction_takes_two_greenlet_hops(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hop into SQLAlchemy's greenlet costs about 17,000 instructions; `engine.begin()`
    takes four per transaction (connect, begin, commit, close)."""
    if not db.inline:
        pytest.skip("the inline SQLite driver's path")
    hops: list[str] = []

    def counting(real: Any) -> Any:
        async def spawn(fn: Any, *a: Any, **kw: Any) -> Any:
            hops.append(getattr(fn, "__name__", "?"))
            return await real(fn, *a, **kw)
        return spawn

    monkeypatch.setattr(storage.db, "greenlet_spawn", counting(storage.db.greenlet_spawn))
    monkeypatch.setattr(async_engine, "greenlet_spawn", counting(async_engine.greenlet_spawn))
    async with db.transaction():
        pass
    assert len(hops) == 2, hops
    with pytest.raises(RuntimeError):
        async with db.transaction():
            raise RuntimeError("the block fails")
    assert len(hops) == 4, hops


async def test_a_transaction_left_open_for_a_handler_is_ended_once(db: Database) -> None:
    """The dispatcher's joined admission: `begun`, the handler's statements, `end`."""
    conn = await db.begun()
    await conn.execute(SEEN, {"event_id": "joined", "seen_at": DAY})
    assert await db.end(conn, commit=True) is True
    conn = await db.begun()
    await conn.execute(SEEN, {"event_id": "abandoned", "seen_at": DAY})
    assert await db.end(conn, commit=False) is False
    conn = await db.begun()
    await conn.rollback()  # ended by the handler already: nothing committed here
    assert await db.end(conn, commit=True) is False
    assert await _ids(db) == {"joined"}
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]



async def test_a_read_begun_ahead_is_taken_over_by_the_next_transaction(db: Database) -> None:
    """A Teams request's pre-turn read and its event's admission, one transaction: the read's
    transaction, begun ahead, is the one the admission writes in. Another request committing
    a write in between makes no trouble (SQLite begins its own transaction at the first
    write, so the read left no snapshot to go stale: no SQLITE_BUSY_SNAPSHOT) and is kept."""
    ahead = await db.begin_ahead()
    first = ahead.conn
    assert first is not None and await COUNT.all(first, {}) == []

    async def another_request() -> None:
        async with db.transaction() as conn:
            await conn.execute(SEEN, {"event_id": "other", "seen_at": DAY})

    token = OPENED.set(ahead)
    try:
        await asyncio.create_task(another_request(), context=contextvars.Context())
        assert ahead.conn is first  # another request's transaction did not take it
        async with db.transaction() as conn:  # the admission
            assert conn is first
            await conn.execute(SEEN, {"event_id": "admitted", "seen_at": DAY})
            assert {r[0] for r in await COUNT.all(conn, {})} == {"other", "admitted"}
        await ahead.release()  # taken: nothing to give back
    finally:
        OPENED.reset(token)
    assert await _ids(db) == {"other", "admitted"}
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_read_begun_ahead_and_not_taken_holds_nothing_after_give_back(db: Database) -> None:
    """Before a call over the network (`give_back`), before an ORM session, or at the end of
    its request, a read nobody took is rolled back and its connection returned; the next
    transaction opens its own."""
    for give in ("network", "session", "end"):
        ahead = await db.begin_ahead()
        token = OPENED.set(ahead)
        try:
            if give == "network":
                await give_back()
            elif give == "session":
                async with db.session() as s:
                    await s.execute(SEEN, {"event_id": "in-session", "seen_at": DAY})
            else:
                await ahead.release()
            assert ahead.conn is None
            assert db.engine.sync_engine.pool.checkedout() == (  # type: ignore[attr-defined]
                0)
            conn = await db.begun()
            await conn.execute(SEEN, {"event_id": give, "seen_at": DAY})
            assert await db.end(conn, commit=True) is True
        finally:
            OPENED.reset(token)
    assert await _ids(db) == {"network", "in-session", "session", "end"}
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
