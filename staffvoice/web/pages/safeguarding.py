"""Safeguarding leads: the urgent queue (feedback that looks like a safeguarding concern) and
who has acknowledged each item. Only safeguarding leads see it, as only they get the alerts."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from bot.errors import UserError
from bot.feedback import safeguarding as sg
from bot.feedback import service as fb
from bot.people import reach
from bot.people.tables import Person
from bot.roles import SAFEGUARDING_LEAD
from staffvoice.web.dashboard import action, page
from staffvoice.web.site import CORE, SESSION, render

ROLES = frozenset({SAFEGUARDING_LEAD})
STATES = {"pending": "alert waiting to be sent", "sent": "alerted in chat",
          "failed": "alert could not be delivered", fb.ACKNOWLEDGED: "acknowledged"}


@page("safeguarding", "/safeguarding", "Urgent queue", ROLES)
async def queue(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    session = request[SESSION]
    assert session is not None
    async with core.db.session() as s:
        urgent = await fb.urgent_queue(s)
        alerted = sorted({pid for u in urgent for pid in u.delivery})
        leads = {p.id: p for p in (await s.execute(
            select(Person).where(Person.id.in_(alerted)))).scalars()} if alerted else {}
        names = {t.id: t.name for t in await fb.themes(s)}
        # As chat's urgent queue: a lead who cannot be alerted is said first (bot/people/reach.py).
        short = (await reach.leads_reach(s)).warning()
    waiting = [u for u in urgent if session.person_id not in u.acknowledged_by]
    done = [u for u in urgent if session.person_id in u.acknowledged_by]
    return render(request, "safeguarding.html", title="Urgent queue", waiting=waiting, done=done,
                  leads=leads, names=names, ref=fb.ref_of, states=STATES, describe=sg.describe,
                  sources=fb.SOURCE_LABELS,
                  me=session.person_id, short=short, notice="Acknowledged." if request.query.get("done") else "")


@action("safeguarding acknowledge", "/safeguarding/acknowledge", ROLES)
async def acknowledge(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    session = request[SESSION]
    assert session is not None
    async with request.app[CORE].db.session() as s:
        try:
            await fb.acknowledge(s, str(form.get("item", "")), session.person_id)
        except UserError:
            raise web.HTTPNotFound() from None
        await s.commit()
    raise web.HTTPSeeOther("/app/safeguarding?done=1")
