"""`staffvoice people import FILE` and `staffvoice people sync slack|teams`: bring people in;
`staffvoice people erase EMAIL` and `staffvoice people export-data EMAIL --out FILE`: a
person's erasure and subject access (bot/privacy).

Its own parser reads the arguments (as `manifest` does), so `staffvoice people --help` shows
them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.config import Settings
from bot.people import directory
from bot.people.directory import Plan, SourceError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="staffvoice people",
                                 description="People and teams from an HR file or a directory.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="import an HR file (CSV UTF-8 or XLSX)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="show the difference, change nothing")
    imp.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD",
                     help="read COLUMN as FIELD (email, name, team, manager, roles, timezone, "
                          "work_pattern, ends_on); repeat as needed")
    syn = sub.add_parser("sync", help="sync from Slack or Microsoft Entra ID (Graph)")
    syn.add_argument("source", choices=("slack", "teams"))
    syn.add_argument("--dry-run", action="store_true", help="show the difference, change nothing")
    era = sub.add_parser("erase", help="erase everything that names a person")
    era.add_argument("email")
    era.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    exp = sub.add_parser("export-data", help="everything held that names a person, as a zip "
                                             "(JSON and a readable HTML page)")
    exp.add_argument("email")
    exp.add_argument("--out", required=True, metavar="FILE", help="the zip to write")
    return ap


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `people` command."""
    p = sub.add_parser("people", add_help=False,
                       help="import people from an HR file or sync them from Slack or Entra ID "
                            "(options: staffvoice people --help)")
    p.set_defaults(run=run, rest=True)  # main() hands over the arguments it did not know


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(main(settings, list(args.rest_args)))


async def main(settings: Settings, argv: list[str]) -> int:
    """The command, in a running event loop (tests call this)."""
    args = _parser().parse_args(argv)
    try:
        return await _run(settings, args)
    except SourceError as e:
        print(f"error: {e}; nothing was changed", file=sys.stderr)
        return 2


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core import Core
    from storage.db import Database

    if args.cmd in ("erase", "export-data"):
        from staffvoice.commands import privacy

        return await (privacy.erase(settings, args) if args.cmd == "erase"
                      else privacy.export_data(settings, args))
    if args.cmd == "import":
        from bot.people.importing import parse_maps, read_file

        listing = read_file(args.file, parse_maps(args.map))
    else:
        from adapters.directory import from_env
        from adapters.directory import listing as read_directory

        listing = await read_directory(args.source, from_env(os.environ))
    core = Core(Database(settings.database_url), settings=settings)
    try:
        await core.db.upgrade()
        plan = await directory.run(core.db, listing, core.clock.now(), dry_run=args.dry_run)
        if not args.dry_run and not plan.problems:
            from bot.audit import trail
            from staffvoice.commands.audit import operator

            await trail.record(core.db, operator(),
                               "people.import" if args.cmd == "import" else "people.sync",
                               surface="cli", now=core.clock.now(),
                               target=os.path.basename(args.file) if args.cmd == "import"
                               else args.source, detail=plan.counts())
    finally:
        await core.db.dispose()
    return report(plan, dry_run=args.dry_run)


def report(plan: Plan, *, dry_run: bool) -> int:
    """Print the difference; 2 (and nothing written) when it has problems."""
    if plan.problems:
        for line in plan.lines():
            if line.startswith(("problem:", "note:")):
                print(line)
        print(f"error: {len(plan.problems):,} problem(s) in {plan.detail}; nothing was changed",
              file=sys.stderr)
        return 2
    if dry_run:
        for line in plan.lines():
            print(line)
        print(f"dry run of {plan.detail}: {plan.summary()}; nothing was changed")
        return 0
    for line in plan.lines():
        if line.startswith(("conflict:", "note:")):
            print(line)
    if plan.empty:
        print(f"{plan.detail}: no changes")
    else:
        print(f"{plan.detail}: applied {plan.summary()}")
    if plan.conflicts:
        print(f"{len(plan.conflicts):,} conflict(s) with the programme file or another source "
              "were kept as they were (see above)")
    return 0
