"""`staffvoice web login-link --as EMAIL`: a one-time dashboard sign-in link for demos and tests.

Refused unless the server listens on loopback only (STAFFVOICE_HOST): a link that signs anyone
in must never work on a server others can reach. The server checks the same when it is used.
"""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Settings
from bot.secrets import is_loopback
from staffvoice.database import opened
from staffvoice.errors import CliError


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `web` command."""
    p = sub.add_parser("web", help="the web dashboard: a one-time sign-in link for local demos",
                       description="The web dashboard under /app/ of `staffvoice serve`.")
    wsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    link = wsub.add_parser(
        "login-link", help="print a one-time sign-in link (loopback servers only)",
        description="Print a one-time link that signs EMAIL in to the dashboard, valid for "
                    "15 minutes. Only for a server listening on 127.0.0.1 (demos and tests).")
    link.add_argument("--as", dest="email", required=True, metavar="EMAIL",
                      help="the programme person's email")
    link.add_argument("--url", metavar="URL", default="",
                      help=f"the server's address (default http://{settings.host}:{settings.port})")
    link.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if not is_loopback(settings.host):
        raise CliError(f"sign-in links are for local demos only, and the server listens on "
                       f"{settings.host} (STAFFVOICE_HOST); sign in with Slack or Microsoft instead")
    base = args.url or f"http://{settings.host}:{settings.port}"
    from urllib.parse import urlsplit

    if not is_loopback(urlsplit(base).hostname or ""):
        raise CliError(f"--url must be a loopback address, not {base}")
    print(asyncio.run(_link(settings, args.email, base)))
    return 0


async def _link(settings: Settings, email: str, base: str) -> str:
    from staffvoice.web.auth import create_login_link

    async with opened(settings, migrate=False) as core:
        await core.start()
        return await create_login_link(core, email, base)
