"""The one place every dashboard page view passes through: it is written to the audit trail.

Each view is one entry (who, which page with the ids it was about, when to the minute, surface
"web"), as a view of results or feedback in chat is (bot/audit). `what` never holds free text a
person typed, so the trail names no author.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import trail
from staffvoice.web.site import CORE, SESSION


async def viewed(request: web.Request, what: str,
                 only_if: Callable[[AsyncSession], Awaitable[bool]] | None = None) -> None:
    """Record that the signed-in person viewed `what` (a page name such as "pulse", with a
    round or team id when the page is about one); `only_if` as for `trail.record`."""
    session = request.get(SESSION)
    if session is None:
        return
    core = request.app[CORE]
    await trail.record(core.db, trail.Who(session.person_id, session.email.strip().lower()),
                       "view.dashboard", surface="web", now=core.clock.now(), target=what[:200],
                       only_if=only_if)
