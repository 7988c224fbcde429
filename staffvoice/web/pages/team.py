"""Team leads: their own team's view: its milestones and its pulse results (the latest closed
round, through the anonymity engine, as `results TEAM` in chat)."""

from __future__ import annotations

from aiohttp import web

from bot.milestones import service as milestones
from bot.people import service as people
from bot.reports import service as reports
from bot.reports.anonymity import team_key
from bot.reports.results import hidden_text
from bot.roles import TEAM_LEAD
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, SESSION, render

ROLES = frozenset({TEAM_LEAD})
LABELS = {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track", "done": "Done",
          "not_started": "Not started"}


@page("team", "/team", "My team", ROLES)
async def team(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    session = request[SESSION]
    assert session is not None
    async with core.db.session() as s:
        led = sorted(await people.teams_led_by(s, session.person_id), key=lambda t: t.name)
        today = await milestones.today(s, core.clock.now())
        info = await reports.latest_closed_round(s)
        results = await reports.round_results(s, info) if info is not None else None
        road = await milestones.roadmap(s)
        sections = []
        for t in led:
            inside = await people.team_and_descendants(s, t.id)
            ms = [v for v in road if v.m.team_id in inside]
            g = results.groups.get(team_key(t.id)) if results is not None else None
            sections.append({"team": t, "milestones": ms, "health": milestones.counts([v.m for v in ms], today),
                             "g": g, "key": team_key(t.id)})
    return render(request, "team.html", title="My team", sections=sections, info=info,
                  labels=LABELS, hidden=hidden_text(), today=today, is_overdue=milestones.is_overdue)
