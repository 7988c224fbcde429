"""`staffvoice programme load|check|export`: the programme file (docs/programme.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.config import Settings
from bot.programme.schema import ProgrammeError
from staffvoice.database import opened
from staffvoice.errors import CliError


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `programme` command."""
    p = sub.add_parser("programme", help="load, check or export the programme file",
                       description="The programme file: organisation, milestones, pulse surveys "
                                   "(docs/programme.md).")
    psub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    load = psub.add_parser("load", help="validate a programme file and sync it into the database",
                           description="Validate FILE and sync it (idempotent); nothing is loaded "
                                       "if it has any problem. Applies migrations first.")
    load.add_argument("file", metavar="FILE", help="the programme YAML file")
    load.set_defaults(run=run_load)
    check = psub.add_parser("check", help="validate a programme file without loading it",
                            description="Validate FILE; the database is not touched.")
    check.add_argument("file", metavar="FILE", help="the programme YAML file")
    check.set_defaults(run=run_check)
    exp = psub.add_parser("export", help="write the current programme back out as YAML",
                          description="Write the programme as stored in the database as YAML.")
    exp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    exp.set_defaults(run=run_export)


def read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {path}: not UTF-8 text") from None


def _problems(path: str, e: ProgrammeError, tail: str) -> int:
    print(f"error: {path} has {len(e.problems)} problem(s){tail}", file=sys.stderr)
    for p in e.problems:
        print(f"  {p}", file=sys.stderr)
    return 2


async def load(settings: Settings, path: str) -> int:
    """Validate and sync `path`; 2 (problems listed) when it cannot be loaded."""
    from bot.programme import loader

    text = read(path)
    async with opened(settings, migrate=True) as core:
        try:
            loaded = await loader.load(core.db, text, core.router)
        except ProgrammeError as e:
            return _problems(path, e, "; nothing was loaded:")
        from bot.audit import trail
        from staffvoice.commands.audit import operator

        await trail.record(core.db, operator(), "programme.load", surface="cli",
                           now=core.clock.now(), target=Path(path).name,
                           detail={"sections": len(loaded)})
    print(f"loaded {path}: {', '.join(loaded)}")
    return 0


def run_load(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(load(settings, args.file))


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core import build_router
    from bot.programme import loader

    try:
        loader.validate(read(args.file), build_router())
    except ProgrammeError as e:
        return _problems(args.file, e, ":")
    print(f"{args.file} is valid")
    return 0


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.programme import loader

    async def export() -> str:
        async with opened(settings, migrate=False) as core:
            return await loader.export(core.db, core.router)

    text = asyncio.run(export())
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
