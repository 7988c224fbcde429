"""Data protection at the shell: `people erase`, `people export-data` and `retention run`."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from bot.audit import trail
from bot.config import Settings
from bot.people.service import person_by_email
from bot.privacy import access, erasure, retention
from staffvoice.commands.audit import operator
from staffvoice.database import opened
from staffvoice.errors import CliError


async def erase(settings: Settings, args: argparse.Namespace) -> int:
    """Erase a person (or say what would go); one line of error for an unknown email."""
    async with opened(settings, migrate=True) as core:
        async with core.db.sessions() as s:
            tx = await s.begin()
            try:
                person = await person_by_email(s, args.email)
                if person is None:
                    raise CliError(f"no one has the email {args.email.strip().lower()}; "
                                   "nothing was changed")
                in_file = person.source == "programme" or person.from_programme
                settings_naming = await erasure.named_in_settings(
                    s, await erasure.subject_of(s, person))
                done = await erasure.erase(s, person)
            except BaseException:
                await tx.rollback()
                raise
            await (tx.rollback() if args.dry_run else tx.commit())
        if not args.dry_run:
            # The entry does not say who: naming them would undo the erasure.
            await trail.record(core.db, operator(), "people.erase", surface="cli",
                               now=core.clock.now(), target="one person",
                               detail={"rows": sum(done.removed.values())})
    head = "would remove" if args.dry_run else "removed"
    print(f"{args.email.strip().lower()}: {head}:")
    for line in done.lines():
        print(line)
    print("kept, and why:")
    for line in done.kept:
        print(f"  {line}")
    if in_file:
        print("note: they are in the programme file; take them out of it, or the next "
              "`staffvoice programme load` brings their profile back")
    if settings_naming:
        print(f"note: the programme file's {', '.join(settings_naming)} section(s) still name "
              "them (a contact or a route); change the file and load it again")
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


async def export_data(settings: Settings, args: argparse.Namespace) -> int:
    """Write the subject access zip; nothing written when the email or the path is wrong."""
    out = Path(args.out)
    _check_writable(out)
    async with opened(settings, migrate=False) as core:
        async with core.db.session() as s:
            person = await person_by_email(s, args.email)
            if person is None:
                raise CliError(f"no one has the email {args.email.strip().lower()}; "
                               "nothing was written")
            data = await access.gather(s, person, core.clock.now())
            who = trail.who_of(person)
        blob = access.to_zip(data)
        tmp = out.with_name(f".{out.name}.partial")
        tmp.write_bytes(blob)
        os.replace(tmp, out)
        # No file name: the operator chooses it and often names it after the person, and an
        # entry can never change, so the name would outlive their erasure. `subject` says who
        # (an actor key that erasure unlinks).
        await trail.record(core.db, operator(), "export.person", surface="cli",
                           now=core.clock.now(), target="one person", subject=who,
                           detail={"kinds": len(data["held"])})
    n = sum(len(v) for v in data["held"].values())
    print(f"wrote {out}: {n:,} record(s) in {len(data['held'])} kind(s), as JSON and HTML, "
          "with a statement about anonymous data")
    return 0


def _check_writable(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CliError(f"--out {out}: is a folder; give a file name like person.zip")
    if not folder.is_dir():
        raise CliError(f"--out {out}: the folder {folder} does not exist; nothing was written")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CliError(f"--out {out}: cannot write in {folder} ({e.strerror or e}); "
                       "nothing was written") from None


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `retention` command."""
    p = sub.add_parser("retention", help="remove what is past its retention period",
                       description="Apply the programme file's `retention:` periods now (the "
                                   "scheduler does it daily). Only counts are recorded.")
    rsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    r = rsub.add_parser("run", help="remove what is past its period (or --dry-run: count it)")
    r.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    r.set_defaults(run=run_retention)


def run_retention(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with opened(settings, migrate=not args.dry_run) as core:
            counts = await retention.run(core.db, core.clock.now(), dry_run=args.dry_run)
            if not args.dry_run:
                await trail.record(core.db, operator(), "retention.run", surface="cli",
                                   now=core.clock.now(), detail=counts)
        verb = "would remove" if args.dry_run else "removed"
        for kind, n in counts.items():
            print(f"{kind}: {verb} {n:,}")
        if args.dry_run:
            print("dry run: nothing was changed")
        return 0

    return asyncio.run(go())
