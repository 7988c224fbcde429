"""The `staffvoice` command line: one parser for every command, and one way to fail.

Each command lives in `staffvoice/commands/` (and `staffvoice/serve/cli.py`) and adds itself
with `add_to(sub, settings)`, setting `run(settings, args) -> int`. A failure the user can fix
is one line on standard error, `error: ...`, with exit status 2 and no traceback
(staffvoice/errors.py says which failures those are).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from bot.config import Settings, SettingsError
from staffvoice.errors import EXIT_USAGE, one_line


def _version() -> str:
    try:
        return version("staffvoice")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The whole command tree; `settings` give the defaults shown in help."""
    from staffvoice.commands import (
        audit,
        broadcast,
        chat,
        db,
        families,
        manifest,
        people,
        privacy,
        programme,
        report,
        schedule,
        web,
    )
    from staffvoice.serve import cli as serve

    ap = argparse.ArgumentParser(
        prog="staffvoice",
        description="Give staff a voice during an organisational change programme, in Slack "
                    "and Microsoft Teams. Settings come from STAFFVOICE_* environment variables "
                    "(see README.md); the database is STAFFVOICE_DATABASE_URL.")
    ap.add_argument("--version", action="version", version=f"staffvoice {_version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for command in (db, programme, chat, serve, schedule, broadcast, report, people, manifest,
                    audit, privacy, web, families):
        command.add_to(sub, settings)
    return ap


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Run one command; its exit status (0 done, 2 a problem the user can fix)."""
    from bot import logs

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings or Settings.from_env()
    except SettingsError as e:
        return fail(str(e))
    logs.setup(settings.log_level, settings.log_json)
    parser = build_parser(settings)
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest_args = rest  # a command that reads its own options (manifest slack|teams)
    try:
        return int(args.run(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        message = one_line(e)
        if message is None:
            raise
        return fail(message)


def fail(message: str) -> int:
    """Say what went wrong in one line on standard error; the exit status for it."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
