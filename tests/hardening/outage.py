"""The database going away for a while, for fault tests.

Every statement on the engine fails with the driver's own OperationalError while the outage
lasts (what a dropped connection or a dead server looks like to SQLAlchemy), on SQLite and on
PostgreSQL alike. On PostgreSQL `real_outage` also kills the server side for real: it refuses
new connections to the database and terminates every backend with pg_terminate_backend, so
pooled connections are dead when it comes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import Database


class Outage:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.down = False
        self.refused = 0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._check)

    def _check(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.down:
            self.refused += 1
            dbapi = conn.dialect.loaded_dbapi
            raise dbapi.OperationalError("server closed the connection unexpectedly (injected)")

    def remove(self) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._check)

    @asynccontextmanager
    async def during(self) -> AsyncIterator[None]:
        self.down = True
        killer = None
        if not self.db.is_sqlite:
            killer = await real_outage_start(self.db)
        try:
            yield
        finally:
            self.down = False
            if killer is not None:
                await real_outage_end(self.db, killer)


async def real_outage_start(db: Database) -> Any:
    """PostgreSQL: no new connections to this database, and every existing one terminated."""
    url = db.engine.url
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false'))
        await conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": url.database})
    return admin


async def real_outage_end(db: Database, admin: Any) -> None:
    url = db.engine.url
    async with admin.connect() as conn:
        await conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true'))
    await admin.dispose()
