"""`staffvoice broadcast ...`: list, status (with CSV export of failures), watch and send."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bot.broadcasts import service
from bot.config import Settings
from bot.core import Core
from staffvoice.database import opened
from staffvoice.errors import CliError
from staffvoice.serve.mounts import attached_ports

SETTLING = ("sending", "retracting", "scheduled")


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `broadcast` command."""
    p = sub.add_parser("broadcast", help="early-win broadcasts: list, status, watch, send",
                       description="Early-win broadcasts, drafted and confirmed in chat by the "
                                   "change team. The serving replicas send them; these commands "
                                   "follow them, or send from this process.")
    bsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    ls = bsub.add_parser("list", help="the 20 most recent broadcasts (read-only)",
                         description="The 20 most recent broadcasts: id, state, recipients, title.")
    ls.set_defaults(run=run)
    st = bsub.add_parser("status", help="delivery counts and the failure report (read-only)",
                         description="Delivery counts of one broadcast and why any failed.")
    st.add_argument("id", metavar="ID", help="the broadcast's id (see: staffvoice broadcast list)")
    st.add_argument("--csv", metavar="FILE", help="also write every failure with its reason to FILE")
    st.set_defaults(run=run)
    w = bsub.add_parser("watch", help="a progress bar until the broadcast settles (read-only)",
                        description="Show a progress bar until the broadcast is done.")
    w.add_argument("id", metavar="ID", help="the broadcast's id (see: staffvoice broadcast list)")
    w.set_defaults(run=run)
    s = bsub.add_parser("send", help="send a confirmed broadcast from this process, with a progress bar",
                        description="Drain the send ledger from this process through the "
                                    "configured platforms (the same SLACK_* and Teams settings "
                                    "as `serve`), showing progress until the broadcast settles. "
                                    "Safe beside serving replicas: sends are leased, never doubled.")
    s.add_argument("id", metavar="ID", help="the broadcast's id (see: staffvoice broadcast list)")
    s.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    async with opened(settings, migrate=False) as core:
        if args.sub == "list":
            found = await service.recent(core, 20)
            if not found:
                print("no broadcasts yet")
            for b in found:
                print(f"{b.id}  {b.state:<10}  {b.total:>7,}  {b.title}")
            return 0
        if await service.get(core, args.id.strip()) is None:
            raise CliError(f"no broadcast with id '{args.id}' (see: staffvoice broadcast list)")
        if args.sub == "status":
            st = await service.status(core, args.id)
            print(service.status_message(st).plain)
            if args.csv:
                Path(args.csv).write_text(await service.failures_csv(core, st.broadcast.id),
                                          encoding="utf-8")
                print(f"wrote {args.csv}")
            return 0
        if args.sub == "watch":
            return await _watch(core, args.id)
        async with attached_ports(core, os.environ) as statuses:
            if not core.ports:
                raise CliError("no platform is configured in this environment (Slack: "
                               "SLACK_SIGNING_SECRET or SLACK_APP_TOKEN with SLACK_BOT_TOKEN; "
                               "Teams: its app registration); nothing was sent: "
                               + "; ".join(statuses))
            return await _send(core, args.id)


def progress_line(st: service.Status) -> str:
    c = st.counts
    held = f"  waiting {st.waiting:,} (working hours)" if st.waiting else ""
    return (f"\r{service.bar(st.settled, st.total, 30)}  sent {c['sent']:,}  queued "
            f"{c['queued'] + c['sending'] - st.waiting:,}{held}  retrying {c['failed']:,}  failed "
            f"{c['final_failed']:,}  skipped {c['skipped']:,}   ")


def only_waiting(st: service.Status) -> bool:
    """Everything still open is held for working hours (no point watching for hours)."""
    c = st.counts
    return st.waiting > 0 and c["queued"] + c["sending"] + c["failed"] == st.waiting


async def _watch(core: Core, bid: str, every_s: float = 0.5) -> int:
    while True:
        st = await service.status(core, bid)
        sys.stdout.write(progress_line(st))
        sys.stdout.flush()
        if st.broadcast.state not in SETTLING:
            print(f"\n{st.broadcast.state}")
            return 0
        await asyncio.sleep(every_s)


async def _send(core: Core, bid: str) -> int:
    from bot.broadcasts.sender import Sender

    await core.start()
    st = await service.status(core, bid)
    stop = asyncio.Event()
    sender = Sender(core)
    task = asyncio.create_task(sender.run(stop, poll_s=0.2))
    try:
        while True:
            st = await service.status(core, st.broadcast.id)
            sys.stdout.write(progress_line(st))
            sys.stdout.flush()
            if st.broadcast.state not in SETTLING or only_waiting(st):
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task
    print(f"\n{st.broadcast.state}: {st.counts['sent']:,} delivered of {st.total:,}")
    if only_waiting(st):
        print(f"{st.waiting:,} wait for their working hours (next at {st.next_at}); "
              "the serving replicas send them then.")
    return 0
