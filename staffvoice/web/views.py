"""The one place every dashboard page view passes through, so it can be recorded.

At merge this calls the audit trail (bot/audit `record(...)`); until then it logs who viewed
which kind of page, never the page's data.
"""

from __future__ import annotations

import logging

from aiohttp import web

from staffvoice.web.site import SESSION

log = logging.getLogger("staffvoice.web.views")


async def viewed(request: web.Request, what: str) -> None:
    """Record that the signed-in person viewed `what` (a page name such as "pulse", with a
    round or team id when the page is about one; never free text a person typed)."""
    session = request.get(SESSION)
    log.info("page viewed", extra={"what": what[:120],
                                   "person": session.person_id if session else None})
