"""`staffvoice broadcast ...`: list, status (with CSV export of failures), watch and send."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.broadcasts import service
from bot.config import Settings
from bot.errors import UserError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="staffvoice broadcast", description="Early-win broadcasts.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="recent broadcasts")
    st = sub.add_parser("status", help="delivery counts and the failure report")
    st.add_argument("id")
    st.add_argument("--csv", metavar="FILE", help="write every failure with its reason")
    w = sub.add_parser("watch", help="a progress bar until the broadcast settles")
    w.add_argument("id")
    s = sub.add_parser("send", help="send queued broadcasts from this process, with a progress bar")
    s.add_argument("id")
    s.add_argument("--fake-platform", metavar="URL",
                   help="the local rate-limited fake platform (adapters/fake/http_port.py)")
    return ap


def cli(settings: Settings, argv: list[str]) -> int:
    """Entry point used by adapters/cli.py."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(settings, args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core import Core
    from storage.db import Database

    core = Core(Database(settings.database_url), settings=settings)
    try:
        await core.db.upgrade()
        if args.cmd == "list":
            for b in await service.recent(core, 20):
                print(f"{b.id}  {b.state:<10}  {b.total:>7,}  {b.title}")
            return 0
        if args.cmd == "status":
            st = await service.status(core, args.id)
            print(service.status_message(st).plain)
            if args.csv:
                Path(args.csv).write_text(await service.failures_csv(core, st.broadcast.id),
                                          encoding="utf-8")
                print(f"wrote {args.csv}")
            return 0
        if args.cmd == "watch":
            return await _watch(core, args.id)
        return await _send(core, args)
    finally:
        for port in list(core.ports.values()):
            close = getattr(port, "close", None)
            if close is not None:
                await close()
        await core.db.dispose()


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


async def _watch(core: Any, bid: str, every_s: float = 0.5) -> int:
    while True:
        st = await service.status(core, bid)
        sys.stdout.write(progress_line(st))
        sys.stdout.flush()
        if st.broadcast.state not in ("sending", "retracting", "scheduled"):
            print(f"\n{st.broadcast.state}")
            return 0
        await asyncio.sleep(every_s)


async def _send(core: Any, args: argparse.Namespace) -> int:
    from bot.broadcasts.sender import Sender

    if args.fake_platform:
        from adapters.fake.http_port import HttpPort

        core.add_port(HttpPort(args.fake_platform))
    if not core.ports:
        print("error: no platform is connected in this process; the serving replicas send "
              "(use 'staffvoice broadcast watch ID'), or give --fake-platform URL", file=sys.stderr)
        return 2
    await core.start()
    st = await service.status(core, args.id)
    stop = asyncio.Event()
    sender = Sender(core)
    task = asyncio.create_task(sender.run(stop, poll_s=0.2))
    try:
        while True:
            st = await service.status(core, st.broadcast.id)
            sys.stdout.write(progress_line(st))
            sys.stdout.flush()
            if st.broadcast.state not in ("sending", "retracting", "scheduled") or only_waiting(st):
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
