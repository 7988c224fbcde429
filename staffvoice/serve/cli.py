"""`staffvoice serve [--host H] [--port P] [--reuse-port]`."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Settings
from bot.secrets import missing_key_problem
from staffvoice.errors import CliError
from staffvoice.serve.lifecycle import serve


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `serve` command."""
    p = sub.add_parser(
        "serve", help="serve the chat adapters, health, readiness, metrics and the scheduler",
        description="Serve Slack and Teams (each when configured), /healthz, /readyz and "
                    "/metrics, run the scheduler (one replica leads) and drain the send ledger. "
                    "Applies migrations and loads STAFFVOICE_PROGRAMME first. For more cores or "
                    "machines, run more `serve` processes: see docs/deploy.md.")
    p.add_argument("--host", default=settings.host,
                   help=f"address to listen on (default {settings.host}, from STAFFVOICE_HOST)")
    p.add_argument("--port", type=_port, default=settings.port,
                   help=f"port (default {settings.port}, from STAFFVOICE_PORT; 0 picks a free one)")
    p.add_argument("--reuse-port", action="store_true", default=settings.reuse_port,
                   help="share the port with other `serve` processes on this machine "
                        "(SO_REUSEPORT; or set STAFFVOICE_REUSE_PORT=1); PostgreSQL only")
    p.set_defaults(run=run)


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {n}")
    return n


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.reuse_port and settings.database_url.startswith("sqlite"):
        # SQLite has no row locks (FOR UPDATE is ignored), so work claimed that way, such as
        # an urgent safeguarding alert, could be sent by two processes.
        raise CliError("--reuse-port needs PostgreSQL (STAFFVOICE_DATABASE_URL); "
                       "SQLite serves from one process")
    problem = missing_key_problem(settings.secret_key, args.host)
    if problem:
        raise CliError(problem)
    return asyncio.run(serve(settings, args.host, args.port, reuse_port=args.reuse_port))
