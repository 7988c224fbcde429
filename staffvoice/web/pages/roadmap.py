"""Roadmap: milestones with owners, status, progress and due dates; overdue and stale ones;
filter by team; a timeline; each milestone's update history.

Seen by the dashboard roles (in chat anyone may ask "status of X"; the web page is for those
who steer the programme). Team ids and milestone ids appear in URLs; people never do.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

from aiohttp import web
from sqlalchemy import select

from bot.milestones import service as milestones
from bot.milestones.status import age
from bot.people import service as people
from bot.people.tables import Team
from bot.roles import CHANGE_TEAM, LEADER, SAFEGUARDING_LEAD, TEAM_LEAD
from staffvoice.web.charts import Mark, timeline
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, render

ROLES = frozenset({LEADER, CHANGE_TEAM, TEAM_LEAD, SAFEGUARDING_LEAD})
TIMELINE_MAX = 40
LABELS = {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track", "done": "Done",
          "not_started": "Not started"}
_TEAMS = select(Team.__table__.c.id, Team.__table__.c.name).order_by(Team.__table__.c.name)


class Row(NamedTuple):
    """One milestone as the table shows it, every cell already words: the template only
    writes them out (a 500-row roadmap spent most of its time in template lookups)."""

    id: str
    title: str
    team: str
    owners: str
    status: str
    label: str
    progress: int
    due: str
    overdue: bool
    updated: str
    stale: bool


def _row(v: milestones.View, today: date, now: datetime) -> Row:
    m = v.m
    return Row(m.id, m.title, v.team.name if v.team else "–",
               ", ".join(o.display_name or o.email or "" for o in v.owners) or "–",
               m.status, LABELS.get(m.status, m.status), m.progress, f"{m.due.day} {m.due:%b %Y}",
               milestones.is_overdue(m, today), age(v.last.at, now) if v.last else "never",
               m.stale_since is not None and m.status != "done")


@page("roadmap", "/roadmap", "Roadmap", ROLES)
async def roadmap(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    team_id = request.query.get("team", "")
    async with core.db.session() as s:
        teams = (await s.execute(_TEAMS)).all()
        today = await milestones.today(s, core.clock.now())
        views = await milestones.roadmap(s)
        if team_id:
            if team_id not in {t.id for t in teams}:
                raise web.HTTPNotFound()
            inside = await people.team_and_descendants(s, team_id)
            views = [v for v in views if v.m.team_id in inside]
    health = milestones.counts([v.m for v in views], today)
    now = core.clock.now()
    rows = [_row(v, today, now) for v in views]
    soonest = sorted(views, key=lambda v: (v.m.due, v.m.title))[:TIMELINE_MAX]
    chart = timeline([Mark(v.m.title, v.m.due, v.m.status) for v in soonest], today, "timeline",
                     "Roadmap timeline: each milestone's due date, with today marked")
    return render(request, "roadmap.html", title="Roadmap", rows=rows, teams=teams, team_id=team_id,
                  health=health, labels=LABELS, chart=chart, soonest=soonest, today=today,
                  more=len(views) > TIMELINE_MAX, timeline_max=TIMELINE_MAX)


@page("milestone", "/roadmap/{milestone_id}", "Milestone", ROLES, in_nav=False)
async def milestone(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    mid = request.match_info["milestone_id"]
    async with core.db.session() as s:
        m = await milestones.get(s, mid)
        if m is None:
            raise web.HTTPNotFound()
        v = await milestones.view(s, m)
        today = await milestones.today(s, core.clock.now())
        updates = await milestones.history(s, mid)
    return render(request, "milestone.html", title=m.title, v=v, updates=updates, labels=LABELS,
                  overdue=milestones.is_overdue(m, today), today=today)
