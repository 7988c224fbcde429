"""`staffvoice db upgrade`: apply the migrations."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Settings
from staffvoice.database import opened


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `db` command."""
    p = sub.add_parser("db", help="the database schema",
                       description="The database schema (STAFFVOICE_DATABASE_URL).")
    dbsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="apply every migration (creates a SQLite file if needed)",
                          description="Apply every migration. `serve` does this at start too; "
                                      "read-only commands never do.")
    up.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    async def upgrade() -> None:
        async with opened(settings, migrate=True):
            pass

    asyncio.run(upgrade())
    print("database is up to date")
    return 0
