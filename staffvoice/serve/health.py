"""/healthz (the process answers) and /readyz (the database is reachable and migrated, and every
adapter's own check passes: adapters.readiness)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from adapters import readiness
from bot.core import Core
from bot.scheduling.scheduler import Scheduler
from staffvoice.serve import migrate


@dataclass
class Health:
    """What /readyz and /metrics report; shared between the routes and the lifecycle."""

    core: Core
    # The migration heads this code expects, once start-up has applied them (`serve`):
    # /readyz then compares them with the database's without importing Alembic.
    heads: set[str] | None = None
    scheduler: Scheduler | None = None
    stopping: bool = False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)


def add_health_routes(app: web.Application, health: Health) -> None:
    """GET /healthz and GET /readyz."""
    core = health.core

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": os.getpid()})

    async def readyz(request: web.Request) -> web.Response:
        body: dict[str, Any] = {"database": "unreachable", "migrations": "unknown"}
        ok = False
        if await core.db.ping():
            body["database"] = "ok"
            try:
                if health.heads is None:
                    applied, expected = await core.db.current_heads()
                else:
                    applied, expected = await migrate.applied(core.db), health.heads
                ok = applied == expected
                body["migrations"] = "current" if ok else "behind"
            except Exception:
                body["migrations"] = "unreadable"
        for name, problem in readiness.problems(request.app).items():
            body[name], ok = problem or "ok", ok and problem is None
        if health.stopping:
            ok, body["status"] = False, "stopping"
        else:
            body["status"] = "ready" if ok else "not ready"
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
