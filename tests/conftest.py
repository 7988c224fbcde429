"""Shared fixtures: a fresh database per test (SQLite by default, PostgreSQL in CI), a core."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

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


@pytest.fixture
def db_url(_template: str, tmp_path: Path) -> str:
    if PG_URL:
        return PG_URL
    path = tmp_path / "staffvoice.db"
    shutil.copy(_template, path)
    return f"sqlite+svinline:///{path}"


# PostgreSQL: most tables are emptied by DELETE, in one statement (about 3 ms, where a
# TRUNCATE of every table took 0.15 s a test: two minutes of the PostgreSQL run). TRUNCATE,
# first, for the tables whose stored order (`ctid`) the anonymity attacks read, so a row's
# place follows only what the test wrote, and for the audit trail, which a trigger keeps
# append-only.
FRESH = ("pulse_comments", "feedback_daily_counts", "family_rate", "audit_entries",
         "audit_actors")


def _emptying() -> str:
    fresh = ", ".join(f'"{name}"' for name in FRESH)
    deletes = "".join(f'DELETE FROM "{t.name}"; ' for t in reversed(Base.metadata.sorted_tables)
                      if t.name not in FRESH)
    return f"DO $$ BEGIN TRUNCATE {fresh}; {deletes}END $$"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if not database.is_sqlite:
        async with database.engine.begin() as conn:
            await conn.execute(text(_emptying()))
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
async def loaded(core: Core) -> Core:
    """A core with the example programme loaded."""
    from bot.programme import loader

    await loader.load(core.db, EXAMPLE.read_text(), core.router)
    return core
