"""The dashboard's pages and who may see each: one registry, one guard.

Every page is registered with the roles that may see it (the same roles chat uses, bot/roles.py);
`guard` signs people in, answers 403 for a page a role may not see, builds the navigation from
the pages the person may see, and records the view (views.viewed) before the page runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from staffvoice.web.site import NAV, SESSION
from staffvoice.web.views import viewed

View = Callable[[web.Request], Awaitable[web.StreamResponse]]
SIGN_IN = "/app/signin"


@dataclass(frozen=True)
class Page:
    name: str  # what views.viewed records
    path: str  # under /app
    label: str  # in the navigation
    roles: frozenset[str]  # empty: anyone signed in
    view: View
    in_nav: bool = True
    method: str = "GET"
    audit: bool = True  # False: the page records its own views (views.viewed)

    def allows(self, roles: frozenset[str]) -> bool:
        return not self.roles or bool(self.roles & roles)


PAGES: list[Page] = []
ACTIONS: list[Page] = []


def page(name: str, path: str, label: str, roles: frozenset[str] | set[str] = frozenset(),
         *, in_nav: bool = True, audit: bool = True) -> Callable[[View], View]:
    """Register a dashboard page seen by `roles` (any of them)."""

    def add(fn: View) -> View:
        PAGES.append(Page(name, path, label, frozenset(roles), fn, in_nav, audit=audit))
        return fn

    return add


def action(name: str, path: str, roles: frozenset[str] | set[str]) -> Callable[[View], View]:
    """Register a form's POST handler, allowed to `roles` (CSRF is checked before it runs)."""

    def add(fn: View) -> View:
        ACTIONS.append(Page(name, path, name, frozenset(roles), fn, False, "POST"))
        return fn

    return add


def nav_for(roles: frozenset[str], current: str) -> list[dict[str, object]]:
    return [{"href": "/app" + p.path, "label": p.label, "current": p.path == current}
            for p in PAGES if p.in_nav and p.allows(roles)]


def guard(p: Page) -> View:
    """The page behind sign-in and its roles; the view recorded before it runs."""

    async def handler(request: web.Request) -> web.StreamResponse:
        session = request.get(SESSION)
        if session is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(SIGN_IN)
            raise web.HTTPForbidden()
        request[NAV] = nav_for(session.roles, p.path)
        if not p.allows(session.roles):
            raise web.HTTPForbidden()
        if request.method == "GET" and p.audit:
            await viewed(request, what(p, request))
        return await p.view(request)

    return handler


# Query parameters that say which record a page is about (ids, never a person).
ABOUT = ("team", "round", "group", "theme", "status", "broadcast")


def what(p: Page, request: web.Request) -> str:
    """What a view was of: the page, its path's ids and the ids chosen in its query."""
    parts = [p.name, *request.match_info.values()]
    parts += [f"{k}={request.query[k][:64]}" for k in ABOUT if request.query.get(k)]
    return " ".join(parts)


def may(request: web.Request, *roles: str) -> bool:
    session = request.get(SESSION)
    return session is not None and bool(set(roles) & session.roles)
