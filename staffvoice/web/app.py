"""The dashboard mounted on the one aiohttp application, under /app/."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from aiohttp import web

from bot.core import Core
from staffvoice.web import dashboard
from staffvoice.web.config import WebSettings
from staffvoice.web.site import SETTINGS, add_static, new_site, render

# The modules that register dashboard pages (dashboard.page) when imported.
PAGE_MODULES = tuple(f"staffvoice.web.pages.{name}" for name in (
    "home", "roadmap", "pulse", "feedback", "safeguarding", "broadcasts", "team"))


async def signin(request: web.Request) -> web.StreamResponse:
    """The sign-in page: one button per configured provider."""
    if request.get("session") is not None:
        raise web.HTTPSeeOther("/app/")
    return render(request, "signin.html", title="Sign in",
                  providers=request.app[SETTINGS].providers, message="")


def build(core: Core, settings: WebSettings) -> web.Application:
    """The /app sub-application: every registered page behind its guard."""
    for name in PAGE_MODULES:
        importlib.import_module(name)
    app = new_site(core, settings)
    app.router.add_get("/signin", signin)
    seen: set[tuple[str, str]] = set()
    for p in (*dashboard.PAGES, *dashboard.ACTIONS):
        if (p.method, p.path) in seen:  # a module imported twice registers twice
            continue
        seen.add((p.method, p.path))
        app.router.add_route(p.method, p.path, dashboard.guard(p))
    from staffvoice.web import auth
    from staffvoice.web.pages import broadcasts

    auth.add_routes(app)
    broadcasts.setup(app)
    return app


def mount(app: web.Application, core: Core, env: Mapping[str, str]) -> str:
    """Add /app/ and /static/ to the server; one status line."""
    settings = WebSettings.from_env(env)
    app.add_subapp("/app", build(core, settings))
    add_static(app)

    async def to_app(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/app/")

    app.router.add_get("/app", to_app)
    names = ", ".join(p.label for p in settings.providers) or "no sign-in configured"
    return f"dashboard: /app/ (sign-in: {names})"
