"""Shared fixtures: a fresh database per test (SQLite by default, PostgreSQL in CI), a core."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import logs
from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from staffvoice.tables import import_all_tables
from storage.base import Base
from storage.db import Database

import_all_tables()  # every table on the one metadata (truncation, model/migration comparison)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "programme.yaml"
PG_URL = os.environ.get("STAFFVOICE_TEST_DATABASE_URL", "")
# The process limiter paces Slack at 5 messages/s per workspace (DESIGN.md), so opening a round
# for the example's ~45 Slack people took 9 s in every Slack story. The stories are about what
# people see; pacing has its own stories (test_broadcast_engine, test_broadcast_replicas) with
# their own limiters, and the strict Slack fake still refuses more than 1/s per conversation.
os.environ.setdefault("STAFFVOICE_BROADCAST_LIMITS", "slack:workspace=500,conversation=1")
TEST_SECRET = "test-secret-not-for-production"
# A Monday morning in term time, 10:00 London (UTC in winter).
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def pytest_report_header() -> str:
    return f"database: {'PostgreSQL' if PG_URL else 'SQLite'}"


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate once per session: a SQLite file to copy, or the PostgreSQL schema."""

    async def migrate(url: str) -> None:
        db = Database(url)
        try:
            if not url.startswith("sqlite"):
                async with db.engine.begin() as conn:
                    await conn.execute(text("DROP SCHEMA public CASCADE"))
                    await conn.execute(text("CREATE SCHEMA public"))
            await db.upgrade()
        finally:
            await db.dispose()

    if PG_URL:
        asyncio.run(migrate(PG_URL))
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(migrate(f"sqlite+svinline:///{path}"))
    return str(path)


# The example programme, loaded once per session (it took 0.3 s of CPU on SQLite and 0.5 s
# on PostgreSQL in each of the ~730 tests that ask for `loaded`: about a third of their setup).
# A test asking for `loaded` starts from a copy of what `loader.load` wrote: the SQLite file
# copied, or on PostgreSQL the rows put back from a snapshot schema in the statement that
# empties the tables. The loader itself keeps its own tests (test_programme and others load
# their own files into an empty database).
SNAPSHOT = "staffvoice_test_loaded"
PRELOADED = pytest.StashKey[str]()  # set when the test's database starts loaded: SQL for PostgreSQL


@pytest.fixture(scope="session")
def _loaded_template(_template: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example programme loaded once: a SQLite file to copy, or (PostgreSQL) the loaded
    rows kept in the schema SNAPSHOT; returns the SQL that puts them back."""
    from bot.programme import loader

    async def load(url: str) -> str:
        core = Core(Database(url), settings=Settings(database_url=url, secret_key=TEST_SECRET),
                    clock=FakeClock(MONDAY_10))
        try:
            if not core.db.is_sqlite:
                async with core.db.engine.begin() as conn:
                    await conn.execute(text(_emptying()))
            await loader.load(core.db, EXAMPLE.read_text(), core.router)
            if core.db.is_sqlite:
                return ""
            restore = []
            async with core.db.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{SNAPSHOT}" CASCADE'))
                await conn.execute(text(f'CREATE SCHEMA "{SNAPSHOT}"'))
                for t in Base.metadata.sorted_tables:
                    if not (await conn.execute(text(f'SELECT EXISTS (SELECT FROM "{t.name}")'))).scalar():
                        continue
                    await conn.execute(text(
                        f'CREATE TABLE "{SNAPSHOT}"."{t.name}" AS SELECT * FROM "{t.name}"'))
                    cols = ", ".join(f'"{c.name}"' for c in t.columns)
                    restore.append(f'INSERT INTO "{t.name}" ({cols}) '
                                   f'SELECT {cols} FROM "{SNAPSHOT}"."{t.name}"; ')
            return "".join(restore)
        finally:
            await core.db.dispose()

    if PG_URL:
        return asyncio.run(load(PG_URL))
    path = tmp_path_factory.mktemp("loaded") / "loaded.db"
    shutil.copy(_template, path)
    asyncio.run(load(f"sqlite+svinline:///{path}"))
    return str(path)


def _preload(request: pytest.FixtureRequest) -> bool:
    """Whether the test asks for this file's `loaded` (not a module's own fixture of that
    name, which would load its own programme)."""
    info = getattr(request.node, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("loaded") if info is not None else None
    return bool(defs) and getattr(defs[-1].func, "__module__", None) == __name__


@pytest.fixture
def db_url(request: pytest.FixtureRequest, _template: str, tmp_path: Path) -> str:
    preload = _preload(request)
    if PG_URL:
        if preload:  # the `db` fixture puts the rows back as it empties the tables
            request.node.stash[PRELOADED] = request.getfixturevalue("_loaded_template")
        return PG_URL
    path = tmp_path / "staffvoice.db"
    if preload:
        shutil.copy(request.getfixturevalue("_loaded_template"), path)
        request.node.stash[PRELOADED] = ""
    else:
        shutil.copy(_template, path)
    return f"sqlite+svinline:///{path}"


# PostgreSQL: most tables are emptied by DELETE, in one statement (about 3 ms, where a
# TRUNCATE of every table took 0.15 s a test: two minutes of the PostgreSQL run). TRUNCATE,
# first, for the tables whose stored order (`ctid`) the anonymity attacks read, so a row's
# place follows only what the test wrote, and for the audit trail, which a trigger keeps
# append-only.
FRESH = ("pulse_comments", "feedback_daily_counts", "family_rate", "audit_entries",
         "audit_actors")


def _emptying(restore: str = "") -> str:
    """One statement emptying every table, then running `restore` (the loaded programme's
    rows put back)."""
    fresh = ", ".join(f'"{name}"' for name in FRESH)
    deletes = "".join(f'DELETE FROM "{t.name}"; ' for t in reversed(Base.metadata.sorted_tables)
                      if t.name not in FRESH)
    return f"DO $$ BEGIN TRUNCATE {fresh}; {deletes}{restore}END $$"


@pytest.fixture(autouse=True)
def _production_logging_undone() -> Iterator[None]:
    """A test that ran `bot.logs.setup` (through `cli.main`, or on purpose) leaves no handler
    behind it: its stream was the test's captured stderr, closed at the test's end, and every
    record after it printed "--- Logging error ---" into CI's output."""
    yield
    logs.reset()


@pytest.fixture
async def db(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if not database.is_sqlite:
        async with database.engine.begin() as conn:
            await conn.execute(text(_emptying(request.node.stash.get(PRELOADED, ""))))
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_10)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, secret_key=TEST_SECRET)


@pytest.fixture
async def core(db: Database, settings: Settings, clock: FakeClock) -> AsyncIterator[Core]:
    """A core, with the feedback counts' and privacy notices' flushers running as in every
    process. Their period is an hour, so they write at the test's end and no test depends on
    when they fire; a test that reads the counters or notice rows flushes first
    (`counts.flush`, `notice.flush`, `held.flush` for account links, DM routes and time
    zones)."""
    from bot.feedback import counts
    from bot.people import held
    from bot.privacy import notice

    c = Core(db, settings=settings, clock=clock)
    await c.start()
    async with (counts.flushing(c, every=3600), notice.flushing(c, every=3600),
                held.flushing(c, every=3600)):
        yield c


@pytest.fixture
async def loaded(request: pytest.FixtureRequest, core: Core) -> Core:
    """A core with the example programme loaded (from the session's copy, `_loaded_template`,
    when the database fixtures could see that the test asks for it)."""
    from bot.programme import loader

    if PRELOADED not in request.node.stash:
        await loader.load(core.db, EXAMPLE.read_text(), core.router)
    return core


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What the garbage collector finds unreachable, kept (not freed) so a test can look at it:
    the tests of reference cycles (bench/README.md, eleventh session)."""
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()
    try:
        yield gc.garbage
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
        gc.collect()
