"""Scratch databases for the benchmarks: each run starts empty."""

from __future__ import annotations

from sqlalchemy import text

from storage.db import Database


async def emptied(db: Database) -> Database:
    """`db` with nothing in it: a PostgreSQL scratch database loses its schema (SQLite files
    are new on every run). The benchmarks' `--url` options must name a database to spare."""
    if not db.is_sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    return db
