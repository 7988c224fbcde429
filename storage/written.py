"""Which tables this process has changed through ORM sessions: a counter per table and engine.

A per-process cache of something read from a few tables (the roadmap overview) compares the
counters of those tables with the ones it saw when it read: any difference and it reads again.
The counters move when a session flushes a change to one of the tables (objects added,
changed or deleted; an INSERT, UPDATE or DELETE statement run with `session.execute`) and
again when that session commits, so a read that raced the commit is not kept either (for a
session in a transaction committed later, the dispatcher's, when that one commits: `defer_commit`).

Not seen here: writes by other processes (replicas, the command line, an operator's SQL) and
statements run on a bare connection (`Database.transaction`) rather than a session. A cache
that relies on these counters must therefore also expire on its own, and say how stale it
may be. Only session-level events are used: engine-level ones would cost every transaction of
every request (see bot/programme/core_sections.py).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import TextClause

ANY = "*"  # a change whose table is not known (a textual statement): counts for every table
_PENDING = "staffvoice.tables_written"  # Session.info: tables changed in this transaction
_DEFER = "staffvoice.tables_committed_later"  # Session.info: see `defer_commit`
_COUNTS: weakref.WeakKeyDictionary[Engine, Counter[str]] = weakref.WeakKeyDictionary()


def version(engine: Engine, tables: Iterable[str]) -> int:
    """How many times this process has changed any of `tables` on `engine` (a sync engine:
    `AsyncConnection.sync_engine`, `Database.engine.sync_engine`) so far."""
    counts = _COUNTS.get(engine)
    if counts is None:
        return 0
    return counts[ANY] + sum(counts[t] for t in tables)


def _engine_of(session: Session) -> Engine | None:
    bind = session.bind
    if bind is None:
        return None
    return bind if isinstance(bind, Engine) else bind.engine


def _bump(engine: Engine, names: set[str]) -> None:
    counts = _COUNTS.get(engine)
    if counts is None:
        counts = _COUNTS[engine] = Counter()
    counts.update(names)


def _changed(session: Session, names: set[str]) -> None:
    engine = _engine_of(session)
    if engine is None or not names:
        return
    session.info.setdefault(_PENDING, set()).update(names)
    _bump(engine, names)


def _table_of(obj: Any) -> str:
    table = getattr(type(obj), "__table__", None)
    return str(getattr(table, "name", ANY))


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _flush_context: Any) -> None:
    # `new`, `dirty` and `deleted` still show what was flushed (SQLAlchemy's after_flush).
    changed = [*session.new, *session.dirty, *session.deleted]
    if changed:
        _changed(session, {_table_of(o) for o in changed})


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    statement = state.statement
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(statement, "table", None)
        _changed(state.session, {str(getattr(table, "name", ANY))})
    elif isinstance(statement, TextClause) and not str(statement).lstrip()[:6].upper() == "SELECT":
        _changed(state.session, {ANY})


def defer_commit(session: Session, into: set[str]) -> None:
    """For a session bound to a transaction someone else commits later (the dispatcher's):
    its commit only ends the session, so the tables it changed are gathered in `into`, to be
    counted by `committed` once that transaction really commits. Counted at the session's
    commit, a read between the two would be kept under the new count with the old rows."""
    session.info[_DEFER] = into


def committed(engine: Engine, names: Iterable[str]) -> None:
    """Count `names` again now that the transaction that changed them has committed."""
    names = set(names)
    if names:
        _bump(engine, names)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    names = session.info.pop(_PENDING, None)
    later = session.info.get(_DEFER)
    if names and later is not None:
        later.update(names)
        return
    engine = _engine_of(session)
    if names and engine is not None:
        _bump(engine, names)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
