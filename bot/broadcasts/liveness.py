"""Whether a sender is still there, told by PostgreSQL the moment its process dies.

A running sender (`Sender.run`) holds a session-level advisory lock keyed by its id on a
connection of its own. The server drops that lock as soon as the process's connection goes, so:

- a standby under the same stable id (STAFFVOICE_SENDER_ID: a restarting replica) waits on the
  lock in `start` and goes on the instant its predecessor is gone;
- a replica under another id that wants a workspace another sender leases `watch`es that
  sender's lock: it is held now, and when it is free, the holder is gone. The watcher takes the
  lock for the moment it needs to take over the holder's workspace leases and rows in flight
  (`Sender._take_over`), so the holder cannot come back in between, then lets go.

A watcher acts only on a lock it first saw held: a sender that never took one (a one-off
`drain()`, an older replica) is never taken over this way, only when its leases run out, as
before. So is a holder that hangs while its connection stays up.

Exactly once, if the holder is alive and only its connection was lost (the server restarted
it, a proxy cut it): a sender starts a send only while its lock was confirmed within `fresh_s`
(`sendable`), on the session it held when it claimed the row. Its last sends have therefore
started within `fresh_s` after the lock was lost and ended within `send_timeout_s` after that;
the rows a watcher takes over are asked about only after `grace` (both together), so a send
that landed is found, not repeated.

SQLite (one process) has nothing to watch: everything here is a no-op that says "alive".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import Database

log = logging.getLogger("staffvoice.broadcasts")

# Advisory lock keys of senders: `pg_advisory_lock(NAMESPACE, hash of the sender id)`.
NAMESPACE = 0x53564C56  # distinct from the scheduler's and audit's single-key locks


def lock_key(sender_id: str) -> int:
    """The 32-bit key of a sender id (a collision only makes a dead sender look alive)."""
    return int.from_bytes(hashlib.blake2b(sender_id.encode(), digest_size=4).digest(), "big",
                          signed=True)


class Liveness:
    """This sender's own lock, and watching other senders' locks."""

    def __init__(self, db: Database, sender_id: str, fresh_s: float = 2.0) -> None:
        self.enabled = not db.is_sqlite
        self.sender_id = sender_id
        self.fresh_s = fresh_s
        self._url = db.engine.url.render_as_string(hide_password=False)
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._since = float("inf")  # monotonic moment the current session took the lock
        self._confirmed = float("-inf")  # a moment the lock was known to be held
        self._pinger: asyncio.Task[None] | None = None

    @property
    def grace_s(self) -> float:
        """How long after the holder's lock is lost its own sends can still be starting."""
        return self.fresh_s

    @property
    def running(self) -> bool:
        """Started: others may take over from us when our lock is free, and we from them."""
        return self._pinger is not None

    def sendable(self, claimed_at: float) -> bool:
        """May a row claimed at `claimed_at` (monotonic) be sent now? Only while the lock
        this sender held when it claimed the row is still held, as last confirmed. (A sender
        that never took its lock is never taken over: it may always send.)"""
        if not self.enabled or not self.running:
            return True
        return self._since <= claimed_at and time.monotonic() - self._confirmed < self.fresh_s

    def engine(self) -> AsyncEngine:
        # Own connections, no pool: closing one really ends its session (and its locks), and
        # autocommit, so a held connection never sits idle inside a transaction.
        if self._engine is None:
            self._engine = create_async_engine(self._url, poolclass=NullPool,
                                               isolation_level="AUTOCOMMIT")
        return self._engine

    async def start(self) -> None:
        """Take this sender's lock, waiting while a previous incarnation under the same id
        still holds it; then keep confirming it is held."""
        if not self.enabled or self._pinger is not None:
            return
        await self._lock()
        self._pinger = asyncio.create_task(self._keep())

    async def _lock(self) -> None:
        while True:
            conn: AsyncConnection | None = None
            try:
                conn = await self.engine().connect()
                await conn.execute(text("SELECT pg_advisory_lock(:n, :k)"),
                                   {"n": NAMESPACE, "k": lock_key(self.sender_id)})
            except asyncio.CancelledError:
                if conn is not None:
                    await _quietly_close(conn)
                raise
            except Exception:
                log.warning("sender liveness: cannot take the lock; trying again")
                if conn is not None:
                    await _quietly_close(conn)
                await asyncio.sleep(1.0)
                continue
            self._conn = conn
            self._since = self._confirmed = time.monotonic()
            return

    async def _keep(self) -> None:
        assert self._conn is not None
        while True:
            await asyncio.sleep(self.fresh_s / 4)
            asked = time.monotonic()
            try:
                await asyncio.wait_for(self._conn.execute(text("SELECT 1")), self.fresh_s)
                self._confirmed = asked
            except asyncio.CancelledError:
                raise
            except Exception:
                # Lost: rows claimed until now stay unsent here; whoever took over has them.
                log.warning("sender liveness: the lock's connection was lost; taking it again")
                self._since = float("inf")
                await _quietly_close(self._conn)
                await self._lock()

    @asynccontextmanager
    async def gone(self, holder: str) -> AsyncIterator[bool]:
        """Wait until `holder`'s lock is free, having seen it held; yields True holding it
        (the caller takes over, then it is let go), or False at once if it was not held."""
        if not self.enabled or holder == self.sender_id:
            yield False
            return
        conn = await self.engine().connect()
        args = {"n": NAMESPACE, "k": lock_key(holder)}
        try:
            free = (await conn.execute(text("SELECT pg_try_advisory_lock(:n, :k)"), args)).scalar()
            if free:
                await conn.execute(text("SELECT pg_advisory_unlock(:n, :k)"), args)
                yield False
                return
            await conn.execute(text("SELECT pg_advisory_lock(:n, :k)"), args)
            try:
                yield True
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:n, :k)"), args)
        finally:
            await _quietly_close(conn)

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            try:
                await self._pinger
            except asyncio.CancelledError:
                pass
            self._pinger = None
        if self._conn is not None:
            await _quietly_close(self._conn)
            self._conn = None
        self._since = float("inf")
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


async def _quietly_close(conn: AsyncConnection) -> None:
    try:
        await asyncio.shield(asyncio.wait_for(conn.close(), 5.0))
    except BaseException:
        try:
            await conn.invalidate()
        except Exception:
            pass
