"""Programme home: the vision, milestone health, latest early wins and "you said, we did".

Anyone signed in sees it: in chat every member of staff hears the vision, early wins and
"you said, we did", and asks "what's changing?". The change team and the safeguarding leads,
who read chat's urgent queue (`feedback list urgent`), are also told at the top when a
safeguarding lead cannot be reached, in the same words, from the same function.
"""

from __future__ import annotations

from aiohttp import web

from bot.feedback import release
from bot.feedback import service as feedback
from bot.milestones import service as milestones
from bot.programme.core_sections import get_setting
from bot.roles import CHANGE_TEAM, SAFEGUARDING_LEAD
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, SESSION, render

# Who reads the urgent queue in chat (bot/feedback/feature.py READERS), so who is told here.
URGENT_READERS = frozenset({CHANGE_TEAM, SAFEGUARDING_LEAD})
HEALTH = (("on_track", "On track"), ("at_risk", "At risk"), ("off_track", "Off track"),
          ("done", "Done"), ("not_started", "Not started"))


@page("home", "/", "Home")
async def home(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    session = request[SESSION]
    async with core.db.session() as s:
        # The change team is told it as it was at a release (N37), a lead at once.
        short = (await release.leads_reach(s, lead=SAFEGUARDING_LEAD in session.roles)).warning() \
            if (session is not None and session.roles & URGENT_READERS) else None
        prog = await get_setting(s, "programme", {}) or {}
        today = await milestones.today(s, core.clock.now())
        road = await milestones.roadmap(s)
        health = milestones.counts([v.m for v in road], today)
        wins = [w for w in await milestones.early_wins(s) if w.status == "delivered"]
        wins.sort(key=lambda w: w.delivered_on or today, reverse=True)
        responses = await feedback.recent_responses(s, 5)
        themes = {t.id: t.name for t in await feedback.themes(s)}
    return render(request, "home.html", title="Programme home", programme=prog, health=health,
                  labels=HEALTH, wins=wins[:5], responses=responses, themes=themes,
                  short=short)
