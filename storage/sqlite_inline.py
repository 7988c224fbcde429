"""SQLite for the async engine without a thread hop per call.

aiosqlite runs every call (cursor, execute, fetch, close) on a worker thread and wakes the
event loop for each result: four hand-offs per statement, which cost more than the statement
on a small VM (about 0.5 ms against 0.02 ms). SQLite on a local file answers in microseconds,
so this connection runs calls on the event loop's own thread and keeps the two things a
thread gave us:

- **Waiting for a lock never blocks the loop.** SQLite's own busy handler would sleep inside
  the call (and hold every other coroutine still, including the one holding the lock). Here
  the busy timeout is 0 and a plain `SQLITE_BUSY` is retried after an `asyncio.sleep`, until
  the same 30 s deadline. `SQLITE_BUSY_SNAPSHOT` (the snapshot this transaction read is
  stale) cannot succeed on retry, so it is raised at once, as before.
- **Checkpoints leave the loop.** SQLite copies the write-ahead log back into the database
  file (with an fsync) every 1,000 pages, inside whichever commit crosses the mark. Here a
  passive checkpoint runs on a worker thread every `CHECKPOINT_EVERY` commits instead; the
  automatic one stays as a backstop at a higher mark (`AUTOCHECKPOINT_PAGES`).
- **Long reads can still leave the loop.** Inside `offloaded()` (reports over a million
  answers), statements run on a worker thread, so other requests are answered meanwhile.

It speaks the part of aiosqlite's interface that SQLAlchemy's `sqlite+aiosqlite` dialect uses,
and is plugged in with `create_async_engine(..., async_creator=...)`.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BUSY_DEADLINE = 30.0  # seconds, as aiosqlite's connect timeout was
CHECKPOINT_EVERY = 200  # commits between background checkpoints
AUTOCHECKPOINT_PAGES = 10_000  # SQLite's own, in-commit checkpoint: only if ours falls behind
_SQLITE_BUSY = 5

_offload: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_offload", default=False)


@contextmanager
def offloaded() -> Iterator[None]:
    """Run this block's SQLite statements on a worker thread (for long reads)."""
    token = _offload.set(True)
    try:
        yield
    finally:
        _offload.reset(token)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one SQLite call, here or on a thread, retrying plain SQLITE_BUSY without blocking."""
    deadline = 0.0
    delay = 0.0005
    while True:
        try:
            if _offload.get():
                return await asyncio.to_thread(fn, *args)
            return fn(*args)
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", None) != _SQLITE_BUSY:
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + BUSY_DEADLINE
            elif now >= deadline:
                raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.05)


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        await _call(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, seq: Any) -> Cursor:
        # A list, since a retried call must see the parameters again.
        await _call(self._cursor.executemany, sql, list(seq))
        return self

    async def fetchone(self) -> Any:
        return await _call(self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return await _call(self._cursor.fetchmany, size or self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return await _call(self._cursor.fetchall)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What `connection.cursor()` returns in aiosqlite: awaitable and an async context."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.__aenter__().__await__()

    async def __aenter__(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Now:
    """Stands in for aiosqlite's work queue: runs the call at once and settles its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as e:  # handed to whoever awaits the future
            if future is not None:
                future.set_exception(e)
            return
        if future is not None:
            future.set_result(result)


class _Checkpointer:
    """Passive checkpoints of one database file, on a worker thread, one at a time."""

    def __init__(self, path: str, uri: bool) -> None:
        self.path, self.uri = path, uri
        self.commits = 0
        self.running: asyncio.Task[None] | None = None

    def committed(self) -> None:
        self.commits += 1
        if self.commits < CHECKPOINT_EVERY:
            return
        loop = asyncio.get_running_loop()
        busy = self.running is not None and not self.running.done()
        if busy and self.running.get_loop() is loop:  # type: ignore[union-attr]
            return  # one at a time (a task of a loop that has gone does not count)
        self.commits = 0
        self.running = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint)
        except Exception:  # a checkpoint that fails is retried next time; SQLite stays right
            pass

    def _checkpoint(self) -> None:
        conn = sqlite3.connect(self.path, uri=self.uri, timeout=0)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()


_checkpointers: dict[tuple[str, bool], _Checkpointer] = {}


class Connection:
    """The subset of `aiosqlite.Connection` that SQLAlchemy's aiosqlite dialect calls."""

    def __init__(self, conn: sqlite3.Connection, checkpoints: _Checkpointer | None = None
                 ) -> None:
        self._conn = conn
        self._checkpoints = checkpoints
        self._connection: sqlite3.Connection | None = conn  # the dialect checks it is open
        self._tx = _Now()  # the dialect sets isolation levels through aiosqlite's queue

    def cursor(self) -> _CursorContext:
        return _CursorContext(self._conn)

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        cursor = Cursor(self._conn.cursor())
        await cursor.execute(sql, parameters)
        return cursor

    async def commit(self) -> None:
        writing = self._conn.in_transaction
        await _call(self._conn.commit)
        if writing and self._checkpoints is not None:
            self._checkpoints.committed()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]


def creator(path: str, uri: bool = False) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine` that opens `path` with this connection."""

    memory = path == ":memory:" or "mode=memory" in path
    checkpoints = None if memory else _checkpointers.setdefault((path, uri),
                                                                _Checkpointer(path, uri))

    async def connect() -> Connection:
        conn = sqlite3.connect(path, uri=uri, timeout=0, check_same_thread=False,
                               detect_types=0)
        return Connection(conn, checkpoints)

    return connect
