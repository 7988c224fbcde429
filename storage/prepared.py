"""Fixed Core statements run on the DB-API cursor, for the few every request runs.

Through `AsyncConnection.execute`, one simple statement costs about 0.2 M instructions above
what the database itself does (measured under callgrind: the sender lookup 0.32 M, of which
SQLite's own work 0.05 M): an execution context, a cursor result and its async wrapper, each
built per call. A `Prepared` statement is compiled once per dialect (and set of parameter
names), then run in the connection's transaction on the DB-API cursor SQLAlchemy itself uses,
with the dialect's own bind and result processors: the same SQL, parameters, values and
transaction as `conn.execute` (tests/test_prepared.py compares the two on both databases), at
about 0.09 M a statement.

What is kept from SQLAlchemy's execution: the statement joins the connection's transaction
(begun first if none is); the driver's cursor (SQLite's lock waits, asyncpg's prepared
statements and lazy BEGIN) is the one `execute` would use; a driver error is raised as
SQLAlchemy's exception (IntegrityError, OperationalError...) by the connection's own handler,
which also invalidates a connection the database dropped. What is not: statements needing
what only an execution context does (Python-side defaults to fill in, expanding IN lists,
`RETURNING` of server defaults through the ORM, executemany) are refused at first use, and
any engine with cursor events or echo (logging SQL) takes `conn.execute` instead.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement


class _Form:
    """One statement compiled for one dialect and set of parameter names."""

    __slots__ = ("sql", "names", "binds", "fixed", "sequence", "row", "results")

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> None:
        compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys))
        if (not compiled.positional or compiled.insert_prefetch or compiled.update_prefetch
                or compiled.post_compile_params or compiled.literal_execute_params
                or compiled.schema_translate_map):
            raise ValueError(f"not a statement for storage.prepared: {compiled.string[:60]}")
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup)
        procs = compiled._bind_processors
        self.binds: tuple[Callable[[Any], Any] | None, ...] = tuple(
            procs.get(n) for n in self.names)
        # Values written into the statement itself (`column == "open"`), as construct_params
        # would take them; a parameter named by the caller wins.
        self.fixed: dict[str, Any] = {
            name: b.effective_value for b, name in compiled.bind_names.items()
            if not b.required and b.key not in keys}
        self.sequence: Callable[[list[Any]], Any] = dialect.execute_sequence_format
        columns = compiled._result_columns
        self.results: tuple[Callable[[Any], Any] | None, ...] = tuple(
            c.type._cached_result_processor(dialect, None) for c in columns)
        self.row: Any = namedtuple(
            "Row", [c.keyname for c in columns], rename=True) if columns else None


_FORMS = "_staffvoice_prepared_forms"  # the attribute of a dialect holding its compiled forms


class Prepared:
    """A fixed Core statement; `await p.all(conn, params)` runs it in `conn`'s transaction."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        # Kept on the dialect itself (one per engine), so a compiled form goes with its engine:
        # keyed by `id(dialect)` here, a disposed SQLite engine's form was found again by a
        # PostgreSQL dialect given the same id, and its `?` placeholders sent to PostgreSQL.
        forms: dict[tuple[Prepared, tuple[str, ...]], _Form] | None = dialect.__dict__.get(_FORMS)
        if forms is None:
            forms = dialect.__dict__.setdefault(_FORMS, {})
        form = forms.get((self, keys))
        if form is None:
            form = forms[(self, keys)] = _Form(self.stmt, dialect, keys)
        return form

    async def all(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (named tuples, values as `conn.execute` gives them); [] for a
        statement that returns none."""
        sync = conn.sync_connection
        if sync is None or sync._echo or sync._has_events or sync.engine._has_events:
            result = await conn.execute(self.stmt, dict(params))  # type: ignore[call-overload]
            return list(result.all()) if result.returns_rows else []
        form = self._form(conn.dialect, tuple(sorted(params)))
        return await conn.run_sync(_run, form, params)

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        rows = await self.all(conn, params)
        return rows[0] if rows else None


def _run(sync: Connection, form: _Form, params: Mapping[str, Any]) -> list[Any]:
    """In SQLAlchemy's greenlet: the driver's cursor, in the connection's transaction."""
    if not sync.in_transaction():
        sync.begin()
    fixed = form.fixed
    values = form.sequence([
        (params[n] if n in params else fixed[n]) if f is None
        else f(params[n] if n in params else fixed[n])
        for n, f in zip(form.names, form.binds, strict=True)])
    dbapi_conn: Any = sync.connection.dbapi_connection
    cursor = None
    try:
        cursor = dbapi_conn.cursor()
        cursor.execute(form.sql, values)
        raw: Sequence[Any] = cursor.fetchall() if cursor.description is not None else ()
        cursor.close()
    except BaseException as e:
        if cursor is not None:
            try:
                cursor.close()
            except Exception:
                pass
        # What `conn.execute` does with a driver error: SQLAlchemy's exception, the connection
        # invalidated if the database dropped it.
        sync._handle_dbapi_exception(e, form.sql, values, cursor, None)
    if not raw:
        return []
    row, procs = form.row, form.results
    if row is None:  # a text() without .columns(): SQLAlchemy knows no columns, plain tuples
        return [tuple(r) for r in raw]
    if any(procs):
        return [row._make([v if p is None else p(v) for v, p in zip(r, procs, strict=True)]) for r in raw]
    return [row._make(r) for r in raw]
