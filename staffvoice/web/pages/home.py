"""Programme home: the vision, milestone health, latest early wins and "you said, we did"."""

from __future__ import annotations

from aiohttp import web

from bot.programme.core_sections import get_setting
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, render


@page("home", "/", "Home")
async def home(request: web.Request) -> web.StreamResponse:
    async with request.app[CORE].db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
    return render(request, "home.html", title="Programme home", programme=prog)
