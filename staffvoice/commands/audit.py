"""`staffvoice audit verify | show`: check the audit trail's chain, and read it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from datetime import UTC, date, datetime

from bot.audit import trail
from bot.config import Settings
from staffvoice.database import opened
from staffvoice.errors import CliError


def operator() -> trail.Who:
    """The actor for something done at the shell: the operating-system user."""
    try:
        name = getpass.getuser()
    except Exception:  # no user name in a bare container
        name = "unknown"
    return trail.Who(None, f"cli:{name}")


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `audit` command."""
    p = sub.add_parser("audit", help="the audit trail: who viewed or changed what",
                       description="Every view of results, feedback and exports, and every "
                                   "administrative action, in a hash-chained append-only table.")
    asub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    v = asub.add_parser("verify", help="check that no entry was edited, deleted or moved")
    v.set_defaults(run=run_verify)
    s = asub.add_parser("show", help="list entries, oldest first")
    s.add_argument("--since", metavar="DATE", help="from this day (YYYY-MM-DD, UTC) on")
    s.add_argument("--who", metavar="EMAIL", help="only what this person (or cli:USER) did")
    s.set_defaults(run=run_show)


def run_verify(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with opened(settings, migrate=False) as core:
            v = await trail.verify(core.db)
        if not v.ok:
            raise CliError(f"the audit trail is not intact: {v.problem}")
        print(f"the audit trail is intact: {v.entries:,} entries; head {v.head}")
        return 0

    return asyncio.run(go())


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    since = None
    if args.since is not None:
        try:
            since = datetime.combine(date.fromisoformat(args.since), datetime.min.time(), UTC)
        except ValueError:
            raise CliError(f"--since {args.since!r}: expected a date like 2027-05-04") from None

    async def go() -> int:
        async with opened(settings, migrate=False) as core:
            lines = await trail.entries(core.db, since=since, who=args.who)
        for line in lines:
            print(trail.describe(line))
        if not lines:
            print("no entries")
        return 0

    return asyncio.run(go())
