"""Broadcasts: each recent broadcast's delivery progress, and failures with their reasons
(bot/broadcasts/service.py). The change team's, as in chat. `?live=1` refreshes the page
every 10 seconds while something is sending (no JavaScript; the person chooses it)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.broadcasts import service as broadcasts
from bot.errors import UserError
from bot.roles import CHANGE_TEAM
from staffvoice.web.charts import bar
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, render

ROLES = frozenset({CHANGE_TEAM})
LIVE_S = 10


@page("broadcasts", "/broadcasts", "Broadcasts", ROLES)
async def listing(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(await broadcasts.recent(core, 20)):
        st = await broadcasts.status(core, b.id)
        rows.append({"st": st, "bar": bar(st.settled, st.total, f"progress-{i}",
                                          f"Delivery progress of {b.title}")})
    sending = any(r["st"].broadcast.state in ("sending", "scheduled") for r in rows)
    live = request.query.get("live") == "1" and sending
    return render(request, "broadcasts.html", title="Broadcasts", rows=rows, live=live,
                  live_s=LIVE_S, sending=sending)


@page("broadcast failures", "/broadcasts/{broadcast_id}/failures.csv", "Failures", ROLES, in_nav=False)
async def failures(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    bid = request.match_info["broadcast_id"]
    try:
        await broadcasts.status(core, bid)
    except UserError:
        raise web.HTTPNotFound() from None
    return web.Response(text=await broadcasts.failures_csv(core, bid), content_type="text/csv",
                        charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="broadcast-{bid}-failures.csv"'})
