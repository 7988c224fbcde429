"""Alembic environment: runs on the connection `Database.upgrade` hands over, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.base import Base
from storage.db import sync_engine

# The tables known to whoever runs this (storage imports no feature): `upgrade` needs none, as
# migrations are self-contained; autogenerate (staffvoice/revision.py) imports them all first.
target_metadata = Base.metadata
config = context.config


def _include(obj: object, name: str | None, type_: str, reflected: bool,
             compare_to: object) -> bool:
    only = config.attributes.get("only_tables")
    if only is None:
        return True
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in only


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # The alembic command line: foreign keys on, as the app migrates (a step that behaves
    # only with them off would break at the app's start).
    engine = sync_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()
