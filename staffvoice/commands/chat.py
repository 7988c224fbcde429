"""`staffvoice chat` and `staffvoice demo`: talk to the bot in this terminal."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.config import Settings
from bot.feedback import counts
from bot.feedback.service import settle_notices
from bot.people import held
from bot.privacy import notice
from staffvoice.commands.programme import load
from staffvoice.database import opened

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "programme.yaml"
DEMO_USER = "practitioner1@northbridge.example"


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `chat` and `demo` commands."""
    for name, text in (("chat", "chat with the bot in this terminal, as one person"),
                       ("demo", "load the example programme (fictional Northbridge), then chat")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ". Type "
                           "'/as EMAIL' to become someone else and '/quit' to leave.")
        p.add_argument("--as", dest="email", default=DEMO_USER, metavar="EMAIL",
                       help=f"who you are in the programme (default {DEMO_USER})")
        p.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'",
                       help="start the console's clock there (programme time zone); /time moves it")
        p.set_defaults(run=run_chat if name == "chat" else run_demo)


async def chat(settings: Settings, email: str, at: str | None = None) -> int:
    from adapters.console.adapter import run

    # The feedback counts, privacy notice rows and account links this process holds are written every few
    # seconds and at the end.
    async with (opened(settings, migrate=True) as core, counts.flushing(core),
                notice.flushing(core), held.flushing(core)):
        await run(core, email, at=at)
        await settle_notices()  # a reply's notice to its author, sent in the background
    return 0


def run_chat(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(chat(settings, args.email, args.at))


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    rc = asyncio.run(load(settings, str(EXAMPLE)))
    if rc:
        return rc
    print("Try: help · feedback · status · what's at risk? · results · /as changelead@northbridge.example")
    print("Pulse questions arrive in working hours only: move the console's clock with "
          "/time YYYY-MM-DD 09:30, or start with: staffvoice demo --at 'YYYY-MM-DD 09:30'.")
    return asyncio.run(chat(settings, args.email, args.at))
