"""Who runs the scheduler: exactly one leader among the processes sharing a database.

PostgreSQL: a session-level advisory lock held on a dedicated connection. When the leader dies
its session ends and the lock is free; the others try again on every check, so one of them
takes over within a check interval. SQLite: one process; an exclusive lock file next to the
database lets a second process notice, say so, and stay out of scheduling.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import Database

log = logging.getLogger("staffvoice.scheduler")

# Any fixed 64-bit number works; every replica must use the same one.
LOCK_KEY = 7_310_582_069_032_111_361


class Leadership(Protocol):
    kind: str

    async def ensure(self) -> bool:
        """Become or stay the leader if possible; True when this process leads now."""
        ...

    async def release(self) -> None:
        """Give up leadership (on shutdown)."""
        ...


class Always:
    """A single process by construction (an in-memory database): always the leader."""

    kind = "single process"

    async def ensure(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class PgLeader:
    """Leader while holding `pg_try_advisory_lock(LOCK_KEY)` on its own connection."""

    kind = "PostgreSQL advisory lock"

    def __init__(self, url: str, key: int = LOCK_KEY, timeout: float = 5.0) -> None:
        # Own engine without a pool: closing the connection really ends the session (and lock),
        # and autocommit so the held connection never sits idle inside a transaction.
        self._engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._key = key
        self._timeout = timeout
        self._conn: AsyncConnection | None = None
        self.backend_pid: int | None = None

    async def ensure(self) -> bool:
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.execute(text("SELECT 1")), self._timeout)
                return True
            except Exception:
                log.warning("scheduler leadership lost: its database connection failed")
                await self._drop()
        return await self._try_acquire()

    async def _try_acquire(self) -> bool:
        try:
            conn = await asyncio.wait_for(self._engine.connect(), self._timeout)
        except Exception:
            log.warning("cannot reach the database to check scheduler leadership")
            return False
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})).scalar()
            if not got:
                await conn.close()
                return False
            self.backend_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        except Exception:
            log.warning("scheduler leadership check failed")
            await _quietly_close(conn)
            return False
        self._conn = conn
        log.info("this process is now the scheduler leader", extra={"backend_pid": self.backend_pid})
        return True

    async def _drop(self) -> None:
        conn, self._conn, self.backend_pid = self._conn, None, None
        if conn is not None:
            await _quietly_close(conn)

    async def release(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            except Exception:
                pass  # closing the session below frees it anyway
            await self._drop()
        await self._engine.dispose()


class FileLeader:
    """Leader while holding an exclusive lock on a file beside the SQLite database."""

    kind = "SQLite lock file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._warned = False

    async def ensure(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            # A read-only directory: no second process can be detected, but one must schedule.
            if not self._warned:
                self._warned = True
                log.warning("cannot create the scheduler lock file; assuming this is the only process",
                            extra={"lock_file": self.path, "reason": e.strerror})
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if not self._warned:
                self._warned = True
                log.warning(
                    "another staffvoice process is already running on this SQLite database "
                    f"(pid {_read_pid(fd) or 'unknown'}); SQLite supports one process, so this one "
                    "will not run the scheduler. Use PostgreSQL to run several replicas.",
                    extra={"lock_file": self.path},
                )
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        if self._warned:
            log.info("the other process is gone: this one now runs the scheduler")
        return True

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def for_database(db: Database) -> Leadership:
    """The leadership that fits the database: advisory lock, lock file, or always."""
    if not db.is_sqlite:
        return PgLeader(db.engine.url.render_as_string(hide_password=False))
    path = db.engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return Always()
    return FileLeader(os.path.abspath(path) + ".scheduler.lock")


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""


async def _quietly_close(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception:
        try:
            await conn.invalidate()
        except Exception:
            pass
