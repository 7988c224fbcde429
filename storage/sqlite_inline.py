"""`sqlite+svinline://`: SQLite for the async engine without a thread hop per call.

aiosqlite runs every call (cursor, execute, fetch, close) on a worker thread and wakes the
event loop for each result: four hand-offs per statement, which cost more than the statement
on a small VM (about 0.5 ms against 0.02 ms; bench/README.md has the figures). SQLite on a
local file answers in microseconds, so this driver calls `sqlite3` on the event loop's own
thread and keeps the two things a thread gave us:

- **Waiting for a lock never blocks the loop.** SQLite's own busy handler would sleep inside
  the call (and hold every other coroutine still, including the one holding the lock). Here
  the busy timeout is 0 and a plain `SQLITE_BUSY` is retried after an `asyncio.sleep`, under
  the `BUSY` policy (storage/retry.py), until a 30 s deadline. `SQLITE_BUSY_SNAPSHOT` (the
  snapshot this transaction read is stale) cannot succeed on retry, so it is raised at once.
- **Checkpoints leave the loop.** SQLite copies the write-ahead log back into the database
  file (with an fsync) every 1,000 pages, inside whichever commit crosses the mark. Here a
  passive checkpoint runs on a worker thread every `CHECKPOINT_EVERY` commits instead; the
  automatic one stays as a backstop at a higher mark (`AUTOCHECKPOINT_PAGES`).
- **Long reads can still leave the loop.** Inside `offloaded()` (reports over a million
  answers), statements run on a worker thread, so other requests are answered meanwhile.

How it plugs in, through SQLAlchemy's public dialect API only: `SQLiteDialect_svinline` is the
pysqlite dialect (SQL, types, URL parsing, isolation levels) marked `is_async`, whose DB-API
module is `sqlite3` with `connect` returning `Connection` below. SQLAlchemy's async engine runs
dialect code inside a greenlet, so the one place that must wait (a busy retry's sleep, an
offloaded call) awaits with `sqlalchemy.util.await_`. `register()` makes the URL scheme known
(storage/db.py calls it; the package also declares it as a `sqlalchemy.dialects` entry point).
`sqlite+aiosqlite://` still selects aiosqlite itself. tests/test_sqlite_inline.py is its
contract: the same statements, transactions and errors on both drivers, and what only this one
promises.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.interfaces import DBAPIModule
from sqlalchemy.engine.url import URL
from sqlalchemy.util import await_

from storage.retry import Retry

NAME = "svinline"  # the URL's driver: sqlite+svinline:///FILE
BUSY_DEADLINE = 30.0  # seconds, as long as a busy handler of 30 s would wait
CHECKPOINT_EVERY = 200  # commits between background checkpoints
AUTOCHECKPOINT_PAGES = 10_000  # SQLite's own, in-commit checkpoint: only if ours falls behind
SQLITE_BUSY = 5  # the primary result code; SQLITE_BUSY_SNAPSHOT (517) is not retried

# A statement that found the write lock held: tried again, without blocking the loop.
BUSY = Retry(lambda e: isinstance(e, sqlite3.OperationalError)
             and getattr(e, "sqlite_errorcode", None) == SQLITE_BUSY,
             attempts=None, base=0.001, cap=0.05, deadline=BUSY_DEADLINE)

_offload: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_offload", default=False)
R = TypeVar("R")


@contextmanager
def offloaded() -> Iterator[None]:
    """Run this block's SQLite statements on a worker thread (for long reads)."""
    token = _offload.set(True)
    try:
        yield
    finally:
        _offload.reset(token)


def _call(fn: Callable[..., R], *args: Any) -> R:
    """Run one SQLite call, here or on a thread, retrying plain SQLITE_BUSY without blocking
    the loop. Runs inside SQLAlchemy's greenlet, where `await_` may wait."""
    tries = None
    while True:
        try:
            if _offload.get():
                return await_(asyncio.to_thread(fn, *args))
            return fn(*args)
        except sqlite3.OperationalError as e:
            tries = tries or BUSY.begin()
            wait = tries.wait(e)
            if wait is None:
                raise
        await_(asyncio.sleep(wait))


async def _ready() -> None:
    """Awaited once per statement: SQLAlchemy's `AsyncConnection.execute` refuses a driver that
    never awaits (the sign of a synchronous driver passed to the async engine by mistake), and
    this one awaits only when it has to wait. One greenlet switch, about a microsecond."""


class Cursor:
    """A DB-API cursor over a `sqlite3.Cursor` whose calls wait for locks asynchronously.

    A statement's rows are read as it runs, as every async driver under SQLAlchemy does: the
    async engine hands out a buffered result that may be read outside its greenlet."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self._rows: deque[Any] = deque()

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        _call(self._cursor.execute, sql, parameters)
        rows = _call(self._cursor.fetchall) if self._cursor.description is not None else ()
        self._rows = deque(rows)
        await_(_ready())
        return self

    def executemany(self, sql: str, seq: Any) -> Cursor:
        # A list, since a retried call must see the parameters again.
        _call(self._cursor.executemany, sql, list(seq))
        self._rows = deque()
        await_(_ready())
        return self

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        n = min(size or self._cursor.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(n)]

    def fetchall(self) -> list[Any]:
        rows, self._rows = list(self._rows), deque()
        return rows

    def close(self) -> None:
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's async result awaits on an async driver's cursor (since 2.0.44)
        before handing rows out. Ours are read synchronously, on demand: nothing to do."""

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
        running = self.running
        if running is not None and not running.done() and running.get_loop() is loop:
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
    """A DB-API connection over a `sqlite3.Connection` opened for the event loop's thread."""

    def __init__(self, conn: sqlite3.Connection, checkpoints: _Checkpointer | None) -> None:
        self._conn = conn
        self._checkpoints = checkpoints

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    def commit(self) -> None:
        writing = self._conn.in_transaction
        _call(self._conn.commit)
        if writing and self._checkpoints is not None:
            self._checkpoints.committed()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]  # typeshed omits None


class DBAPI:
    """The DB-API module the dialect uses: `sqlite3`'s, with `connect` opening a `Connection`."""

    paramstyle = "qmark"

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)  # exceptions, Binary, sqlite_version_info, ...

    def connect(self, database: str, *, uri: bool = False, **_ignored: Any) -> Connection:
        """Open `database` (a path, ":memory:" or a `file:` URI): lock waits are ours
        (timeout 0), and the connection may move between the loop's threads."""
        conn = sqlite3.connect(database, uri=uri, timeout=0, check_same_thread=False,
                               detect_types=0)
        memory = database == ":memory:" or "mode=memory" in database
        checkpoints = None if memory else _checkpointers.setdefault(
            (database, uri), _Checkpointer(database, uri))
        return Connection(conn, checkpoints)


class SQLiteDialect_svinline(SQLiteDialect_pysqlite):
    """SQLAlchemy's pysqlite dialect for the async engine, over `DBAPI` above."""

    driver = NAME
    is_async = True
    supports_statement_cache = True
    supports_server_side_cursors = False

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        return cast(DBAPIModule, DBAPI())

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # The async engine needs the asyncio queue; one shared connection for :memory:.
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool


dialect = SQLiteDialect_svinline


def register() -> None:
    """Make `sqlite+svinline://` known to SQLAlchemy in this process."""
    registry.register(f"sqlite.{NAME}", __name__, "SQLiteDialect_svinline")
