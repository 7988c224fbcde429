"""`staffvoice schedule list | run-due`: what runs next and when, and one tick for cron."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from datetime import timedelta

from bot.config import Settings
from bot.scheduling.jobs import programme_tz, run_due
from bot.scheduling.leader import for_database
from bot.scheduling.plan import missed, parse_at, plan, render
from staffvoice.database import opened
from staffvoice.errors import CliError
from staffvoice.serve.mounts import attached_ports

# Cron runs `run-due` every few minutes: only a longer silence counts as downtime (caught up).
CRON_GAP = timedelta(minutes=15)


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `schedule` command."""
    p = sub.add_parser("schedule", help="the scheduler: what runs next, or one tick for cron",
                       description="The scheduled work (pulse rounds, reminders, check-ins, "
                                   "digests). `serve` runs it; these look at it or run it once.")
    ssub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    ls = ssub.add_parser("list", help="what runs next and when, in local time (read-only)",
                         description="Each job, when it next runs in the programme's time zone, "
                                     "and how it last went; then what was found late after "
                                     "downtime.")
    ls.add_argument("--at", metavar="WHEN",
                    help="plan as of this local date and time instead of now, e.g. "
                         "'2027-05-04 09:00' (what would be due after a bank holiday?)")
    ls.set_defaults(run=run_list)
    due = ssub.add_parser("run-due", help="run what is due now, once (for cron deployments)",
                          description="Run every job that is due now, once, with the configured "
                                      "platforms, unless a serving process runs the scheduler.")
    due.set_defaults(run=run_run_due)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    async def show() -> None:
        async with opened(settings, migrate=False) as core:
            tz = await programme_tz(core)
            now = core.clock.now()
            if args.at is not None:
                parsed = parse_at(args.at, tz)
                if parsed is None:
                    raise CliError(f"--at {args.at!r}: expected a date and time like 2027-05-04 09:00")
                now = parsed
            rows = await plan(core, now)
            print(render(rows, now, tz, settings.scheduler_interval_s, await missed(core, now)))

    asyncio.run(show())
    return 0


def run_run_due(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run_due(settings))


async def _run_due(settings: Settings) -> int:
    # The composition root for cron: the same adapters as `serve` provide the ports.
    async with opened(settings, migrate=True) as core:
        leadership = for_database(core.db)
        try:
            await core.start()
            if not await leadership.ensure():
                print("another staffvoice process is running the scheduler; nothing was run",
                      file=sys.stderr)
                return 0
            async with attached_ports(core, os.environ) as statuses:
                for line in statuses:
                    print(line)
                results = await run_due(core, core.clock.now(), gap=CRON_GAP,
                                        instance=f"run-due:{socket.gethostname()}:{os.getpid()}")
            for r in results:
                print(f"{r.name}: {r.outcome}, {max(r.count, 0)} done"
                      + (f", {r.skipped} skipped (missed beyond grace)" if r.skipped else ""))
            if not results:
                print("no scheduled jobs are registered")
            return 1 if any(r.outcome == "error" for r in results) else 0
        finally:
            await leadership.release()
