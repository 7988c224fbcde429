"""The SQLite connection that runs on the event loop (storage/sqlite_inline.py).

What it must keep from a driver with a worker thread: a lock held elsewhere is waited for
without stopping the loop, a conflict that waiting cannot fix is reported at once, long
reads can leave the loop, and checkpoints happen off the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from bot.dispatch_tables import ProcessedEvent
from storage import sqlite_inline
from storage.db import Database, offloaded

NOW = datetime(2026, 11, 30, 10, tzinfo=UTC)


@pytest.fixture
async def sqlite_db(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/inline.db")
    await db.create_all()
    yield db, tmp_path / "inline.db"
    await db.dispose()


def _count_rows(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT count(*) FROM processed_events").fetchone()[0])


async def test_a_write_waits_for_a_lock_held_elsewhere_without_stopping_the_loop(sqlite_db):
    db, path = sqlite_db
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    other.execute("INSERT INTO processed_events VALUES ('held', '2026-11-30 10:00:00')")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write() -> None:
        async with db.session() as s:
            await s.execute(insert(ProcessedEvent), {"event_id": "mine", "seen_at": NOW})

    t = asyncio.create_task(ticker())
    w = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not w.done(), "the write should still be waiting for the lock"
    assert ticks >= 10, f"the event loop stood still while waiting ({ticks} ticks in 0.3 s)"
    other.execute("COMMIT")
    await asyncio.wait_for(w, 5)
    t.cancel()
    other.close()
    assert _count_rows(path) == 2


async def test_a_stale_snapshot_is_reported_at_once_not_waited_on(tmp_path):
    path = tmp_path / "snap.db"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    raw = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    conn = sqlite_inline.Connection(raw)
    cur = await conn.execute("BEGIN")
    await cur.execute("SELECT count(*) FROM t")  # this transaction's snapshot
    await cur.fetchall()
    with sqlite3.connect(path) as other:  # another writer commits after it
        other.execute("INSERT INTO t VALUES ('theirs')")
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as e:
        await cur.execute("INSERT INTO t VALUES ('mine')")
    assert e.value.sqlite_errorcode == 517  # SQLITE_BUSY_SNAPSHOT
    assert time.monotonic() - start < 1, "a stale snapshot cannot succeed by waiting"
    await conn.rollback()
    await conn.close()


async def test_two_sessions_of_one_process_writing_at_once_both_commit(sqlite_db):
    db, path = sqlite_db
    started = asyncio.Event()

    async def slow() -> None:
        async with db.session() as s:
            await s.execute(insert(ProcessedEvent), {"event_id": "slow", "seen_at": NOW})
            started.set()
            await asyncio.sleep(0.2)  # holds the write lock while awaiting something else

    async def fast() -> None:
        await started.wait()
        async with db.session() as s:
            await s.execute(insert(ProcessedEvent), {"event_id": "fast", "seen_at": NOW})

    await asyncio.gather(slow(), fast())
    assert _count_rows(path) == 2


async def test_offloaded_statements_run_on_another_thread(sqlite_db):
    db, _ = sqlite_db
    threads: list[int] = []

    @__import__("sqlalchemy").event.listens_for(db.engine.sync_engine, "connect")
    def _register(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn._connection._conn.create_function(
            "where_am_i", 0, lambda: threads.append(threading.get_ident()) or 1)

    await db.engine.dispose()  # new connections get the function
    async with db.session() as s:
        await s.execute(text("SELECT where_am_i()"))
        with offloaded():
            await s.execute(text("SELECT where_am_i()"))
        await s.execute(text("SELECT where_am_i()"))
    here = threading.get_ident()
    assert threads[0] == here and threads[2] == here
    assert threads[1] != here


async def test_checkpoints_run_on_a_worker_thread_every_so_many_commits(sqlite_db, monkeypatch):
    db, path = sqlite_db
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 5)
    ran: list[int] = []
    real = sqlite_inline._Checkpointer._checkpoint

    def spy(self):  # type: ignore[no-untyped-def]
        ran.append(threading.get_ident())
        real(self)

    monkeypatch.setattr(sqlite_inline._Checkpointer, "_checkpoint", spy)
    sqlite_inline._checkpointers[(str(path), False)].commits = 0
    for i in range(12):
        async with db.session() as s:
            await s.execute(insert(ProcessedEvent), {"event_id": f"e{i}", "seen_at": NOW})
        await asyncio.sleep(0.02)  # time for a checkpoint to finish
    assert len(ran) == 2  # after commits 5 and 10
    assert threading.get_ident() not in ran
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # a new connection
    async with db.engine.connect() as conn:
        value = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
    assert value == sqlite_inline.AUTOCHECKPOINT_PAGES
    assert _count_rows(path) == 12


async def test_a_checkpoint_left_pending_by_an_old_event_loop_does_not_stop_new_ones(
    sqlite_db, monkeypatch
):
    db, path = sqlite_db
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 3)
    ran: list[int] = []
    real = sqlite_inline._Checkpointer._checkpoint
    monkeypatch.setattr(sqlite_inline._Checkpointer, "_checkpoint",
                        lambda self: (ran.append(1), real(self)))
    checkpoints = sqlite_inline._checkpointers[(str(path), False)]
    old_loop = asyncio.new_event_loop()
    stale = old_loop.create_future()  # never finishes: its loop is gone
    checkpoints.running, checkpoints.commits = stale, 0  # type: ignore[assignment]
    try:
        for i in range(3):
            async with db.session() as s:
                await s.execute(insert(ProcessedEvent), {"event_id": f"o{i}", "seen_at": NOW})
        await asyncio.sleep(0.1)
        assert ran == [1]
    finally:
        old_loop.close()
