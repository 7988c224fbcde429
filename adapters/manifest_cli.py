"""`staffvoice manifest slack|teams ...`: print an app manifest ready to paste into the platform."""

from __future__ import annotations

import importlib
import sys
from typing import Any

PLATFORMS = {
    "slack": "adapters.slack.manifest:cli",
    "teams": "adapters.teams.manifest:cli",
}
USAGE = "usage: staffvoice manifest {slack|teams} [options]   (try: staffvoice manifest slack --help)"


def cli(settings: Any, argv: list[str]) -> int:
    """Dispatch to the platform's manifest command, imported only when asked for."""
    if not argv or argv[0] not in PLATFORMS:
        print(USAGE, file=sys.stderr)
        return 2
    mod, _, fn = PLATFORMS[argv[0]].partition(":")
    try:
        target = getattr(importlib.import_module(mod), fn)
    except ModuleNotFoundError as e:
        if e.name == mod:
            print(f"error: the {argv[0]} manifest is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(target(argv[1:]) or 0)
