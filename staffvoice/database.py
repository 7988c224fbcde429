"""Opening the database for one command: reachable, and migrated only where that is the job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.core import Core
from staffvoice.errors import CliError
from staffvoice.tables import import_all_tables
from storage.db import Database

NEEDS_UPGRADE = "the database needs `staffvoice db upgrade`"


@asynccontextmanager
async def opened(settings: Settings, *, migrate: bool) -> AsyncIterator[Core]:
    """A core on the configured database, disposed at the end.

    `migrate`: apply migrations first (commands whose job is to change things: `db upgrade`,
    `programme load`, `chat`, `schedule run-due`). Otherwise (read-only commands) nothing is
    written: a database that is missing or behind is reported, never created or upgraded."""
    import_all_tables()
    db = Database(settings.database_url)
    try:
        if not migrate:
            _sqlite_file_exists(db)
        await db.check()
        if migrate:
            await db.upgrade()
        elif not await db.is_current():
            raise CliError(f"{NEEDS_UPGRADE} (its schema is older than this staffvoice)")
        yield Core(db, settings=settings)
    finally:
        await db.dispose()


def _sqlite_file_exists(db: Database) -> None:
    """Opening a SQLite file that is not there would create it: say so instead."""
    if not db.is_sqlite:
        return
    path = make_url(db.url).database or ":memory:"
    if path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
        raise CliError(f"there is no database at {path}; {NEEDS_UPGRADE} to create it")
