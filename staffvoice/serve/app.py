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
from staffvoice.web.site import Handler

# Every response of the server, whatever answered it (the privacy notice, health, metrics, the
# adapters, a 404): never framed by another site, never sniffed as another type, no Referer
# carried away. Pages that set their own (the dashboard's stricter policy) keep theirs.
BASELINE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "Referrer-Policy": "no-referrer",
}


@web.middleware
async def baseline_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        # Raised on, not returned: aiohttp warns that returning one is deprecated and will stop
        # working (#2415), and each 404 and 405 would say so.
        for k, v in BASELINE.items():
            e.headers.setdefault(k, v)
        raise
    if not resp.prepared:  # a stream sets its own before it starts (staffvoice.web.site.secure)
        for k, v in BASELINE.items():
            resp.headers.setdefault(k, v)
    return resp


def build_app(core: Core, env: Mapping[str, str], health: Health) -> tuple[web.Application, list[str]]:
    """The application and one status line per platform adapter."""
    app = web.Application(middlewares=[baseline_headers])
    add_metrics_route(app, health, env)
    add_health_routes(app, health)
    # The privacy notice and terms of use, whatever is configured: the Teams app package and
    # the Slack app's settings link to them, the web pages and chat's `privacy` point at them.
    notice_pages.add_routes(app, core)
    lines = mount_adapters(app, core, env)
    lines.append(web_app.mount(app, core, env))
    lines.append(families_pages.mount(app, core, env))
    return app, lines
