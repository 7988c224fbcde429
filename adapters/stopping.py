"""When a stopping server must be done: adapters bound the work they finish at shutdown by it.

`serve` sets the deadline when SIGTERM arrives (STAFFVOICE_SHUTDOWN_GRACE from then); an
adapter's on_cleanup hook waits for its background work at most until then, so what must be
written at shutdown (the flushers' last writes, docs/invariants.md N4, N21) still is, before
the orchestrator's SIGKILL. With no deadline set (tests, the console) it waits for everything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Deadline:
    """The event loop's time by which shutdown work must end; None until stopping."""

    at: float | None = None

    def left(self) -> float | None:
        """Seconds left (never below 0), or None: no deadline, wait for everything."""
        if self.at is None:
            return None
        return max(0.0, self.at - asyncio.get_running_loop().time())


KEY: web.AppKey[Deadline] = web.AppKey("staffvoice_shutdown_deadline", Deadline)


def of(app: web.Application) -> Deadline:
    """The application's deadline, made on first use (mount time: before the app is frozen)."""
    if KEY not in app:
        app[KEY] = Deadline()
    return app[KEY]
