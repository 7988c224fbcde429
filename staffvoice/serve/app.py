"""The one web application: the adapters' routes, the dashboard, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from adapters.teams import pages as notice_pages
from bot.core import Core
from staffvoice.serve.health import Health, add_health_routes
from staffvoice.serve.metrics import add_metrics_route
from staffvoice.serve.mounts import mount_adapters
from staffvoice.web import app as web_app
from staffvoice.web.families import pages as families_pages


def build_app(core: Core, env: Mapping[str, str], health: Health) -> tuple[web.Application, list[str]]:
    """The application and one status line per platform adapter."""
    app = web.Application()
    add_metrics_route(app, health, env)
    add_health_routes(app, health)
    # The privacy notice and terms of use, whatever is configured: the Teams app package and
    # the Slack app's settings link to them, the web pages and chat's `privacy` point at them.
    notice_pages.add_routes(app, core)
    lines = mount_adapters(app, core, env)
    lines.append(web_app.mount(app, core, env))
    lines.append(families_pages.mount(app, core, env))
    return app, lines
