"""The SQLite driver that runs on the event loop, `sqlite+svinline://` (storage/sqlite_inline.py).

Its contract: chosen by URL like any SQLAlchemy dialect (aiosqlite still by its own), it does
what aiosqlite does for our statements, transactions and errors; and what it must keep from a
driver with a worker thread: a lock held elsewhere is waited for without stopping the loop, a
conflict that waiting cannot fix is reported at once, long reads can leave the loop, and
checkpoints happen off the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.util import greenlet_spawn

from bot.dispatch_tables import ProcessedEvent
from storage import sqlite_inline
from storage.db import Database, offloaded

NOW = datetime(2026, 11, 30, 10, tzinfo=UTC)


@pytest.fixture
async def sqlite_db(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite+svinline:///{tmp_path}/inline.db")
    await db.create_all()
    yield db, tmp_path / "inline.db"
    await db.dispose()


@pytest.fixture(params=["svinline", "aiosqlite"])
async def either(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite+{request.param}:///{tmp_path}/either.db")
    await db.create_all()
    yield db, tmp_path / "either.db", request.param
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

    def stale_write() -> None:  # as SQLAlchemy runs the driver: in a greenlet
        conn = sqlite_inline.DBAPI().connect(str(path))
        conn.isolation_level = None
        cur = conn.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT count(*) FROM t")  # this transaction's snapshot
        cur.fetchall()
        with sqlite3.connect(path) as other:  # another writer commits after it
            other.execute("INSERT INTO t VALUES ('theirs')")
        try:
            cur.execute("INSERT INTO t VALUES ('mine')")
        finally:
            conn.rollback()
            conn.close()

    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as e:
        await greenlet_spawn(stale_write)
    assert e.value.sqlite_errorcode == 517  # SQLITE_BUSY_SNAPSHOT
    assert time.monotonic() - start < 1, "a stale snapshot cannot succeed by waiting"


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
        dbapi_conn.create_function(
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


# -- the contract both SQLite drivers keep ------------------------------------------------


async def test_the_url_chooses_the_driver(either):
    db, _, driver = either
    assert db.engine.dialect.name == "sqlite" and db.engine.dialect.driver == driver
    assert db.is_sqlite


async def test_a_session_commits_and_a_failed_one_leaves_nothing(either):
    db, path, _ = either
    async with db.session() as s:
        await s.execute(insert(ProcessedEvent), {"event_id": "kept", "seen_at": NOW})
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            await s.execute(insert(ProcessedEvent), {"event_id": "dropped", "seen_at": NOW})
            raise RuntimeError("the handler failed")
    async with db.session() as s:
        kept = (await s.execute(select(ProcessedEvent.event_id))).scalars().all()
    assert kept == ["kept"] and _count_rows(path) == 1


async def test_a_bare_transaction_runs_prepared_statements_and_reads_them_back(either):
    db, _, _ = either
    async with db.transaction() as conn:
        await conn.execute(insert(ProcessedEvent), [
            {"event_id": f"e{i}", "seen_at": NOW} for i in range(3)])  # executemany
        got = (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()
        assert got == 3
        rows = (await conn.execute(select(ProcessedEvent.event_id).order_by(
            ProcessedEvent.event_id))).all()
    assert [r[0] for r in rows] == ["e0", "e1", "e2"]


async def test_a_duplicate_key_is_an_integrity_error_and_the_transaction_is_rolled_back(either):
    db, path, _ = either
    async with db.session() as s:
        await s.execute(insert(ProcessedEvent), {"event_id": "once", "seen_at": NOW})
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(insert(ProcessedEvent), {"event_id": "other", "seen_at": NOW})
            await conn.execute(insert(ProcessedEvent), {"event_id": "once", "seen_at": NOW})
    assert _count_rows(path) == 1


async def test_a_lock_held_elsewhere_is_waited_for_by_either_driver(either):
    db, path, _ = either
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(_insert(db, "waiting"))
    await asyncio.sleep(0.2)
    assert not write.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(write, 5)
    assert _count_rows(path) == 1


async def _insert(db: Database, key: str) -> None:
    async with db.session() as s:
        await s.execute(insert(ProcessedEvent), {"event_id": key, "seen_at": NOW})


@pytest.mark.parametrize("driver", ["svinline", "aiosqlite"])
async def test_an_in_memory_database_is_one_database_for_the_engine(driver: str):
    db = Database(f"sqlite+{driver}://")
    try:
        await db.create_all()
        await _insert(db, "m")
        async with db.session() as s:
            assert (await s.execute(select(ProcessedEvent.event_id))).scalar_one() == "m"
    finally:
        await db.dispose()


def test_any_sqlalchemy_engine_in_this_environment_knows_the_url():
    """The package's `sqlalchemy.dialects` entry point, without storage.db imported."""
    code = ("from sqlalchemy.ext.asyncio import create_async_engine\n"
            "e = create_async_engine('sqlite+svinline://')\n"
            "print(type(e.dialect).__module__, e.dialect.driver, e.dialect.is_async)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["storage.sqlite_inline", "svinline", "True"]


async def test_a_results_rows_are_read_when_its_statement_runs(either):
    """The async engine hands out buffered results, read outside the driver's greenlet (here
    within `offloaded()`, which once tried to reach the thread from there)."""
    db, _, _ = either
    for key in ("b", "a"):
        await _insert(db, key)
    async with db.transaction() as conn:
        with offloaded():
            result = await conn.execute(select(ProcessedEvent.event_id).order_by(
                ProcessedEvent.event_id))
            assert [r[0] for r in result] == ["a", "b"]
            many = await conn.execute(select(ProcessedEvent.event_id))
            assert len(many.fetchmany(1)) == 1 and len(many.fetchall()) == 1


async def test_a_recent_ping_stands_and_a_failed_one_is_never_remembered(tmp_path: Path) -> None:
    """Database.ping(fresh_for=): /slack/events asks the database at most every 0.25 s under
    load; a database that cannot be opened is asked again every time."""
    from sqlalchemy import event

    folder = tmp_path / "not-yet"
    db = Database(f"sqlite+svinline:///{folder / 'sv.db'}")
    asked: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda *a: asked.append(a[2]) if a[2] == "SELECT 1" else None)
    try:
        assert not await db.ping(fresh_for=60)  # its folder is missing: cannot open
        assert not await db.ping(fresh_for=60)  # asked again, refused again
        folder.mkdir()
        assert await db.ping(fresh_for=60) and asked == ["SELECT 1"]
        assert await db.ping(fresh_for=60) and asked == ["SELECT 1"]  # the success stands
        assert await db.ping() and asked == ["SELECT 1", "SELECT 1"]  # without fresh_for: asked
    finally:
        await db.dispose()
