"""The database handle: an async engine chosen by URL scheme, sessions, and migrations."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import greenlet_spawn

from storage import sqlite_inline, written  # noqa: F401  (written: its session events count)
from storage.prepared import Prepared
from storage.sqlite_inline import offloaded

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")
log = logging.getLogger("staffvoice.db")

__all__ = ["DEFAULT_URL", "OPENED", "Database", "DatabaseUnavailable", "DatabaseUrlError", "Opened",
           "connection_of", "give_back", "offloaded", "sync_engine", "upsert"]

sqlite_inline.register()

DEFAULT_URL = "sqlite+svinline:///staffvoice.db"
MIGRATIONS = Path(__file__).with_name("migrations")
# sqlite+svinline: SQLite on the event loop (storage/sqlite_inline.py), the default and the
# fastest; sqlite+aiosqlite: SQLite through aiosqlite's worker thread; postgresql+asyncpg.
SCHEMES = ("sqlite+svinline", "sqlite+aiosqlite", "postgresql+asyncpg")
# Advisory lock keys (PostgreSQL): any fixed 64-bit numbers distinct from the scheduler's.
UPGRADE_LOCK = 0x5F5F_7376_0001
STARTUP_LOCK = 0x5F5F_7376_0002
_PING = Prepared(text("SELECT 1"))  # on the DB-API cursor (storage/prepared.py)
# Connections an inline SQLite engine keeps open (requests and background work at once).
INLINE_POOL = 12


class DatabaseUrlError(ValueError):
    """The database URL cannot name a database this program can use; `str()` says why."""


# RETURNING (admissions, claims) and ALTER TABLE DROP COLUMN (downgrades that alter a table in
# place, not rebuild it: storage/migrations/versions) came in 3.35.0; 3.35.5 fixed DROP COLUMN
# defects that could corrupt the file. Without this, an older library (Debian 11, RHEL 9 and
# Ubuntu 20.04 ship 3.31 to 3.34) failed at the first such statement with a syntax error.
SQLITE_NEEDED = (3, 35, 5)


class DatabaseUnavailable(Exception):
    """The database cannot be opened or reached; `str()` says why, in one line."""


class Opened:
    """A transaction begun ahead of the work that will use it, holding only reads so far (a
    Teams request's pre-turn read, done by the endpoint before the SDK runs the turn).

    Handed on through `OPENED`: the first `Database.transaction()` or `Database.begun()` of
    the same database in that context takes it over instead of opening one of its own (the
    event's admission), so the read and the admission are one transaction: one pool
    checkout, begin, commit and close instead of two (about 0.17 M instructions). Given back
    (rolled back: it has only read) if nobody took it, by `give_back` before anything waits on
    the network, by `Database.session()`, and at the end of the block that set it.

    What the open transaction holds meanwhile: on SQLite, nothing (the pysqlite dialect, and
    both drivers under it, begin SQLite's transaction at the first INSERT, UPDATE or DELETE,
    so a read before it takes no lock and leaves no snapshot that a later write could find
    stale: tests/test_transactions.py); on PostgreSQL (READ COMMITTED, each statement sees
    what is committed when it runs), one pooled connection and an ACCESS SHARE lock on the
    tables read, which only DDL waits for."""

    __slots__ = ("conn", "db")

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self.db = db
        self.conn: AsyncConnection | None = conn

    def take(self, db: Database) -> AsyncConnection | None:
        """The open transaction, once, for a transaction of `db` (None: taken, given back,
        or of another database)."""
        conn = self.conn
        if conn is None or db is not self.db:
            return None
        self.conn = None
        return conn

    async def release(self) -> None:
        """Roll the transaction back and return its connection, unless it was taken. Never
        raises: the transaction only read, so nothing is lost if the database went away
        meanwhile (the connection is then discarded); what gives it back (the end of a
        request, a call to the Bot Connector about to be made) must not fail for it."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await self.db.end(conn, commit=False)
            except Exception as e:
                log.info("a read transaction begun ahead could not be rolled back: %s",
                         type(e).__name__)


OPENED: ContextVar[Opened | None] = ContextVar("staffvoice_opened", default=None)
"""The transaction begun ahead for the work of this context (a request), if any: see `Opened`."""


async def give_back(db: Database | None = None) -> None:
    """Before waiting on something slow (a call over the network): a transaction begun ahead
    and not yet taken (of `db`, or of any database) is rolled back and its connection
    returned, so no transaction stays open across the wait."""
    held = OPENED.get()
    if held is not None and held.conn is not None and (db is None or held.db is db):
        await held.release()


def _take(db: Database) -> AsyncConnection | None:
    held = OPENED.get()
    return held.take(db) if held is not None else None


class Database:
    """One engine and session factory, for a URL of one of `SCHEMES`."""

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False) -> None:
        check_url(url)
        self.url = url
        kwargs: dict[str, object] = {"echo": echo}
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        elif url.startswith(f"sqlite+{sqlite_inline.NAME}") and not _memory(url):
            # Connections kept, not opened and closed as load comes and goes: past the
            # default 5, each overflow connection paid an open and six PRAGMAs per checkout.
            kwargs.update(pool_size=INLINE_POOL, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.inline = self.engine.dialect.driver == sqlite_inline.NAME
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect",
                         _sqlite_pragmas_inline if self.inline else _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._answered = -math.inf  # when `ping` last succeeded (monotonic seconds)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error. A
        transaction begun ahead (`Opened`) is given back first, not taken: two connections
        of one task at once could wait on each other for the pool."""
        await give_back(self)
        async with self.sessions() as s, s.begin():
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection in a transaction, for hot paths that run prepared statements:
        cheaper than an ORM session (committed on success, rolled back on error). Takes over
        a transaction begun ahead in this context (`Opened`), if there is one."""
        ahead = _take(self)
        if ahead is not None:
            try:
                yield ahead
            except BaseException:
                await self.end(ahead, commit=False)
                raise
            await self.end(ahead, commit=True)
            return
        if not self.inline:
            async with self.engine.begin() as conn:
                yield conn
            return
        # SQLite on the loop: the same steps as `engine.begin()` without its shielded close
        # (a task and a loop turn per transaction, a fifth of its cost), and in two of
        # SQLAlchemy's greenlet hops instead of four (connect and begin, then commit or
        # rollback and close: each hop is about 17,000 instructions). Closing never waits
        # here (SQLite's calls are synchronous), so a cancellation cannot cut it short.
        sync = await greenlet_spawn(_begun, self.engine.sync_engine)
        conn = AsyncConnection(self.engine, sync)
        try:
            yield conn
        except BaseException:
            await greenlet_spawn(_ended, sync, False)
            raise
        await greenlet_spawn(_ended, sync, True)

    async def begun(self) -> AsyncConnection:
        """A connection in a transaction left open for the caller, who ends it with `end`
        (the dispatcher's joined admission: the handler continues the transaction). Takes
        over a transaction begun ahead in this context (`Opened`), if there is one."""
        ahead = _take(self)
        if ahead is not None:
            return ahead
        return await self._begin()

    async def _begin(self) -> AsyncConnection:
        if self.inline:
            return AsyncConnection(self.engine, await greenlet_spawn(_begun, self.engine.sync_engine))
        conn = await self.engine.connect()
        try:
            await conn.begin()
        except BaseException:
            await conn.close()
            raise
        return conn

    async def begin_ahead(self) -> Opened:
        """A transaction begun now, for reads, to be handed on (`OPENED.set`) to the next
        transaction of the same context: see `Opened`. The caller gives it back
        (`Opened.release`) when its block ends."""
        return Opened(self, await self._begin())

    async def end(self, conn: AsyncConnection, *, commit: bool) -> bool:
        """Commit (or roll back) a transaction from `begun` if it is still open, then close
        the connection; True if it was committed here. A transaction found ended already
        (False) is said in the log at WARNING with why (`_said_ended`): asked to commit, the
        caller's writes in it are not stored."""
        sync = conn.sync_connection
        if self.inline and sync is not None:
            return await greenlet_spawn(_ended, sync, commit)
        try:
            tx = conn.get_transaction()
            if tx is None or not tx.is_active:
                _said_ended(commit, conn.invalidated, tx is None)
                return False
            await (tx.commit() if commit else tx.rollback())
            return commit
        finally:
            await conn.close()

    async def ping(self, fresh_for: float = 0.0) -> bool:
        """The database answers a trivial statement. `fresh_for`: a success at most that many
        seconds old stands instead of asking again (per-request checks under load); a
        failure is never remembered."""
        if fresh_for and time.monotonic() - self._answered < fresh_for:
            return True
        try:
            async with self.transaction() as conn:
                await _PING.all(conn, {})
        except Exception:
            self._answered = -math.inf
            return False
        self._answered = time.monotonic()
        return True

    async def check(self) -> None:
        """Open one connection, or raise `DatabaseUnavailable` saying why in one line (a
        SQLite library older than the statements and migrations need included)."""
        if self.is_sqlite and sqlite3.sqlite_version_info < SQLITE_NEEDED:
            raise DatabaseUnavailable(
                f"this Python's SQLite is {sqlite3.sqlite_version}; staffvoice needs "
                f"{'.'.join(map(str, SQLITE_NEEDED))} or later (RETURNING, ALTER TABLE DROP "
                "COLUMN): use the container image, or a Python built with a newer SQLite")
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as e:  # the driver's own errors differ: asyncpg, sqlite3, OSError
            raise DatabaseUnavailable(f"cannot open the database at {self.safe_url}: "
                                      f"{_reason(e)}") from e

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def is_current(self) -> bool:
        """Every migration head this code expects is applied."""
        applied, expected = await self.current_heads()
        return applied == expected

    async def upgrade(self) -> None:
        """Apply every Alembic migration (all feature heads).

        Migrations are self-contained: the tables' modules need not be imported for this.
        On PostgreSQL, replicas starting at once take turns (a transaction-level advisory
        lock): the first migrates, the others then find nothing to do."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": UPGRADE_LOCK})
            await conn.run_sync(_run_upgrade)

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[None]:
        """Hold a PostgreSQL session-level advisory lock `key` for the block (replicas doing
        the same start-up work take turns); on SQLite, where one process serves, nothing."""
        if self.is_sqlite:
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()

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
        """Create the tables of every model imported so far (tests and benches); production
        uses `upgrade`. Tables register themselves on `Base.metadata` when their module loads."""
        from storage.base import Base

        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _begun(engine: Engine) -> Connection:
    """A pooled connection in a transaction (in SQLAlchemy's greenlet)."""
    conn = engine.connect()
    try:
        conn.begin()
    except BaseException:
        conn.close()
        raise
    return conn


def _ended(conn: Connection, commit: bool) -> bool:
    """Commit (or roll back) the connection's transaction if still open, then close it; True
    if it was committed here (an ended one said as `Database.end` says it)."""
    try:
        tx = conn.get_transaction()
        if tx is None or not tx.is_active:
            _said_ended(commit, conn.invalidated, tx is None)
            return False
        if commit:
            tx.commit()
        else:
            tx.rollback()
        return commit
    finally:
        conn.close()


class NotCommitted(Exception):
    """A transaction the caller asked to commit had ended already: its writes are not
    stored. Raised where the caller would otherwise go on as if they were (bot/core.py's
    joined handlers); `Database.end` itself returns False and logs why."""


def _said_ended(commit: bool, invalidated: bool, none: bool) -> None:
    """Why a transaction to end was found ended already, at WARNING: before, `end` returned
    False and nobody heard that a commit asked for had committed nothing."""
    if invalidated:
        why = "its connection was invalidated (the database connection was lost)"
    elif none:
        why = "no transaction was open (ended already by the code that held it)"
    else:
        why = "it was rolled back already (a failed statement, or a session bound to it)"
    log.warning("transaction already ended when asked to %s: %s; %s",
                "commit" if commit else "roll back", why,
                "its writes are not stored" if commit else "nothing to roll back",
                extra={"cause": "invalidated" if invalidated else "none" if none else "rolled_back"})


async def connection_of(s: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection under a session (or the connection itself), for Core statements."""
    return s if isinstance(s, AsyncConnection) else await s.connection()


async def overwrite_deleted(s: AsyncSession | AsyncConnection) -> None:
    """What this connection deletes from now on is overwritten on SQLite (`secure_delete`),
    so no copy of a sealed route, count or contact lingers in the file's free pages (Debian's
    SQLite turns it on, SQLite's own default is off). PostgreSQL keeps dead tuples until
    VACUUM whatever is asked (docs/invariants.md N4, N6)."""
    conn = await connection_of(s)
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")


def upsert(dialect: str, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that takes ON CONFLICT clauses, in the dialect named (a connection's
    `dialect.name`): SQLite and PostgreSQL spell them alike, from different modules."""
    return sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)


def _memory(url: str) -> bool:
    database = make_url(url).database or ""
    return database in ("", ":memory:") or "mode=memory" in url


def check_url(url: str) -> None:
    """Refuse a URL this program cannot use, before any driver tries it."""
    try:
        u = make_url(url)
    except Exception:
        raise DatabaseUrlError(
            f"{url!r} is not a database URL; expected sqlite+svinline:///FILE or "
            "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/NAME") from None
    if u.drivername not in SCHEMES:
        raise DatabaseUrlError(
            f"unsupported database URL scheme {u.drivername!r}; use one of: {', '.join(SCHEMES)}")
    if u.drivername.startswith("postgresql") and not u.database:
        raise DatabaseUrlError("the PostgreSQL URL names no database (.../NAME at the end)")


def _reason(e: BaseException) -> str:
    """A driver error in one line, without SQLAlchemy's background link and SQL echo."""
    inner = getattr(e, "orig", None) or e.__cause__ or e
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    text_ = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return text_[:300]


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: object) -> None:
    """Every SQLite connection: write-ahead log, foreign keys; lock waits up to 30 s."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(sqlite_inline.BUSY_DEADLINE * 1000)}")
    cur.close()


def _sqlite_pragmas_inline(dbapi_conn: DBAPIConnection, _record: object) -> None:
    """On the event loop's thread: lock waits and checkpoints are the driver's, off the loop."""
    _sqlite_pragmas(dbapi_conn, _record)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=0")  # waits are retried asynchronously instead
    # Checkpoints run on a worker thread; SQLite's own in-commit one is the backstop.
    cur.execute(f"PRAGMA wal_autocheckpoint={sqlite_inline.AUTOCHECKPOINT_PAGES}")
    cur.close()


def sync_engine(url: str) -> Engine:
    """A synchronous engine on the same database as `url` (Alembic's command line, through
    storage/migrations/env.py), with the SQLite pragmas every connection of ours has:
    foreign keys on, so a migration run there behaves as one run at the app's start."""
    from sqlalchemy import create_engine

    sync_url = (url.replace("+svinline", "").replace("+aiosqlite", "")
                .replace("+asyncpg", "+psycopg"))
    engine = create_engine(sync_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(url: str) -> Config:
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


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous CLI code."""
    return asyncio.run(coro)
