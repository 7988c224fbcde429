"""The database handle: an async engine chosen by URL scheme, sessions, and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import sqlite_inline
from storage.sqlite_inline import offloaded

__all__ = ["DEFAULT_URL", "Database", "connection_of", "offloaded"]

DEFAULT_URL = "sqlite+aiosqlite:///staffvoice.db"
MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """One engine and session factory; `sqlite+aiosqlite://` or `postgresql+asyncpg://`."""

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, object] = {"echo": echo}
        if url.startswith("sqlite"):
            # Calls run on the loop's thread; lock waits are async (storage/sqlite_inline.py).
            kwargs["async_creator"] = sqlite_inline.creator(*_sqlite_target(url))
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        async with self.sessions() as s, s.begin():
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection in a transaction, for hot paths that run prepared statements:
        cheaper than an ORM session (committed on success, rolled back on error)."""
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def upgrade(self) -> None:
        """Apply every Alembic migration (all feature heads)."""
        import_all_tables()
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_upgrade)

    async def current_heads(self) -> tuple[set[str], set[str]]:
        """(applied revisions, revisions the code expects)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(alembic_config(self.url))
        expected = set(script.get_heads())
        async with self.engine.connect() as conn:
            applied = await conn.run_sync(
                lambda c: set(MigrationContext.configure(c).get_current_heads())
            )
        return applied, expected

    async def create_all(self) -> None:
        """Create tables straight from the models (tests); production uses `upgrade`."""
        from storage.base import Base

        import_all_tables()
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def connection_of(s: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection under a session (or the connection itself), for Core statements."""
    return s if isinstance(s, AsyncConnection) else await s.connection()


def _sqlite_target(url: str) -> tuple[str, bool]:
    """(path or URI, is a URI) of a `sqlite+aiosqlite:///...` URL, as pysqlite would open it."""
    u = make_url(url)
    path = u.database or ":memory:"
    uri = str(u.query.get("uri", "")).lower() in ("true", "1")
    return path, uri


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=0")  # waits are retried asynchronously instead
    # Checkpoints run on a worker thread; SQLite's own in-commit one is the backstop.
    cur.execute(f"PRAGMA wal_autocheckpoint={sqlite_inline.AUTOCHECKPOINT_PAGES}")
    cur.close()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run_upgrade(sync_conn: object) -> None:
    from alembic import command

    cfg = alembic_config(str(sync_conn.engine.url.render_as_string(hide_password=False)))  # type: ignore[attr-defined]
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "heads")


def import_all_tables() -> None:
    """Import every module that defines tables, so one metadata knows them all.

    Each feature keeps its tables next to its code in `bot/<feature>/tables.py`;
    they are found on disk so a new feature needs no edit here.
    """
    import importlib
    import pkgutil

    import bot

    importlib.import_module("bot.dispatch_tables")
    importlib.import_module("adapters.teams.tables")  # adapter-owned tables (references)
    importlib.import_module("adapters.slack.tables")  # Slack installations and OAuth state
    for info in pkgutil.iter_modules(bot.__path__):
        if info.ispkg:
            try:
                importlib.import_module(f"bot.{info.name}.tables")
            except ModuleNotFoundError as e:
                if e.name != f"bot.{info.name}.tables":
                    raise


def run(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine from synchronous CLI code."""
    return asyncio.run(coro)
