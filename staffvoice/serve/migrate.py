"""Start-up's migrations in a process of their own, so the serving process never imports Alembic.

Alembic, its script directory and Mako's templates take about 11 MB once imported, and a
process does not give back the memory its modules took: a `serve` replica that migrated
itself carried them for its whole life (bench/README.md, eleventh session). `serve` runs
`python -m staffvoice.serve.migrate` instead and waits for it; the URL is passed in the
environment (`MIGRATE_URL_ENV`), never on the command line, where `ps` would show a password.
An in-memory SQLite database (tests) is migrated in the serving process: no other can see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from sqlalchemy import text

from storage.db import Database, _memory, _reason

MIGRATE_URL_ENV = "STAFFVOICE_MIGRATE_URL"


async def upgrade(db: Database) -> set[str]:
    """Apply every migration to `db`, in a child process unless the database is in memory;
    the heads this code expects (for /readyz). Raises `RuntimeError` saying why (one line,
    no URL) if they could not be applied."""
    if db.is_sqlite and _memory(db.url):
        await db.upgrade()
        return (await db.current_heads())[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, env={**os.environ, MIGRATE_URL_ENV: db.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"migrations failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return set(json.loads(out.decode().strip().splitlines()[-1]))


async def applied(db: Database) -> set[str]:
    """The revisions `db` records as applied (Alembic's version table), read without
    Alembic: /readyz asks on every probe."""
    async with db.engine.connect() as conn:
        return {row[0] for row in await conn.execute(text("SELECT version_num FROM alembic_version"))}


async def _main(url: str) -> int:
    db = Database(url)
    try:
        await db.upgrade()
        expected = (await db.current_heads())[1]
    except Exception as e:  # the parent logs this one line; no traceback, no URL
        print(_reason(e), file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(json.dumps(sorted(expected)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(os.environ[MIGRATE_URL_ENV])))
