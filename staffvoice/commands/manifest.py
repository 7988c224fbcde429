"""`staffvoice manifest slack|teams ...`: an app manifest ready to give the platform.

Each platform's options belong to its adapter (`adapters/<platform>/manifest.py: cli`), which
is imported only when asked for; `staffvoice manifest slack --help` shows them.
"""

from __future__ import annotations

import argparse
import importlib

from bot.config import Settings
from staffvoice.errors import CliError

PLATFORMS = {
    "slack": ("adapters.slack.manifest", "the Slack app manifest (YAML) to paste into "
                                         "'Create an app from a manifest'"),
    "teams": ("adapters.teams.manifest", "the Teams app package (.zip) to upload"),
}


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `manifest` command."""
    p = sub.add_parser("manifest", help="print or write a Slack or Teams app manifest",
                       description="Build the app manifest a platform needs to install the bot.")
    msub = p.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    for name, (_, text) in PLATFORMS.items():
        # The platform's own parser reads the rest, --help included.
        mp = msub.add_parser(name, help=f"{text} (options: staffvoice manifest {name} --help)",
                             add_help=False)
        mp.set_defaults(run=run, rest=True)  # main() hands over the arguments it did not know


def run(settings: Settings, args: argparse.Namespace) -> int:
    module = PLATFORMS[args.platform][0]
    try:
        target = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise CliError(f"the {args.platform} manifest is not available in this build") from None
        raise
    return int(target.cli(list(args.rest_args)) or 0)
