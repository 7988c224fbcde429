"""Pulse: rounds and participation, each question's trend and change since the last round,
groups compared, comments, and a CSV download: every figure from the reports service, so only
through the anonymity engine (bot/reports/results.py, anonymity.py, export.py), exactly as chat
and `staffvoice report` show them.

Who sees which group is the reports service's `viewer`: leaders and the change team every
group, a team lead the whole programme and the teams they lead.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any, NamedTuple

from aiohttp import web
from markupsafe import Markup

from bot.pulse import invitations
from bot.pulse import service as pulse_service
from bot.reports import chart
from bot.reports import service as reports
from bot.reports.anonymity import ALL
from bot.reports.export import csv_chunks
from bot.reports.results import SCORED, comments_for, hidden_text, org_of_round
from bot.roles import CHANGE_TEAM, LEADER, TEAM_LEAD
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, SESSION, render, secure

ROLES = frozenset(reports.VIEW_ROLES)
assert ROLES == {CHANGE_TEAM, LEADER, TEAM_LEAD}


async def _viewer(request: web.Request, s: Any) -> reports.Viewer:
    session = request[SESSION]
    assert session is not None
    viewer = await reports.viewer(s, session.person_id, session.roles)
    if viewer is None:
        raise web.HTTPForbidden()
    return viewer


async def _round(s: Any, round_id: str) -> Any:
    """The asked-for closed round, or the latest; 404 for one that is unknown or still open."""
    if round_id:
        info = await reports.round_info(s, round_id)
        if info is None or not info.closed:
            raise web.HTTPNotFound()
        return info
    return await reports.latest_closed_round(s)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{round(v * 100)}%"


class Compared(NamedTuple):
    """A group's row of the "groups compared" table, already words (300 groups by a few
    questions: looked up cell by cell in the template, it was most of the page's time)."""

    label: str
    shown: bool
    rate: str
    scores: list[str]


def _compared(g: Any, qids: list[str]) -> Compared:
    if not g.shown:
        return Compared(g.label, False, "", [])
    by_id = {q.question.id: q for q in g.questions}
    scores = []
    for qid in qids:
        q = by_id.get(qid)
        scores.append("not shown" if q is None or not q.shown or q.score is None else f"{q.score:g}")
    return Compared(g.label, True, _pct(g.rate), scores)


def _change(v: float | None) -> str:
    if v is None:
        return "–"
    return "no change" if v == 0 else f"{v:+g}"


class NotInvited(NamedTuple):
    """An open round some invitations did not reach, as chat's `pulse` says it."""

    survey: str
    number: int
    missing: str  # "N could not be invited (counts by kind of reason)": never whose


async def _not_invited(request: web.Request, s: Any) -> list[NotInvited]:
    """Each open round's invitations that could not be sent, counted by kind of reason
    (bot/pulse/invitations.py, the figures chat's `pulse` gives the change team, who alone
    see them here too)."""
    session = request[SESSION]
    if session is None or CHANGE_TEAM not in session.roles:
        return []
    found = []
    for sv in await pulse_service.surveys(s):
        rnd = await pulse_service.open_round_of(s, sv.id)
        if rnd is None:
            continue
        missing = (await invitations.not_invited(s, rnd.id)).describe()
        if missing:
            found.append(NotInvited(sv.title, rnd.number, missing))
    return found


@page("pulse", "/pulse", "Pulse", ROLES)
async def pulse(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    async with core.db.session() as s:
        viewer = await _viewer(request, s)
        not_invited = await _not_invited(request, s)
        info = await _round(s, request.query.get("round", ""))
        if info is None:
            return render(request, "pulse.html", title="Pulse", info=None,
                          not_invited=not_invited)
        group = request.query.get("group", "") or ALL
        if not viewer.may_see(group):
            raise web.HTTPForbidden()
        all_rounds = await reports.closed_rounds(s, info.survey_id)
        upto = [r for r in all_rounds if r.number <= info.number][-reports.TREND_ROUNDS:]
        results = await reports.round_results(s, info)  # every group, against the previous round
        if group not in results.groups:
            raise web.HTTPNotFound()
        g = results.groups[group]
        groups = [x for k, x in results.groups.items() if viewer.may_see(k)]
        scored = [q for q in (g.questions if g.shown else ()) if q.question.kind in SCORED]
        # Earlier rounds: only this group's scored questions and everyone's participation.
        history = await reports.group_history(s, upto[:-1], [q.question.id for q in scored],
                                              group, also=(ALL,))
        history.append(results)
        trends = await reports.trends(s, info.survey_id, [q.question.id for q in scored], group,
                                      rounds=history)
        comments: dict[str, list[str]] = {}
        if g.shown:
            org = await org_of_round(s, info.id)
            for q in g.questions:
                if q.comments_shown:
                    comments[q.question.id] = [c.text for c in await comments_for(
                        s, org, info, q.question.id, group)]
    scored_ids = [q.question.id for q in scored]
    charts = [{"q": q, "trend": trends[q.question.id],
               "svg": Markup(chart.render_svg(trends[q.question.id], f"trend-{i}")),
               "summary": chart.describe(trends[q.question.id])}
              for i, q in enumerate(scored)]
    participation = [{"label": r.round.label, "id": r.round.id, "g": r.groups.get(ALL)} for r in history]
    return render(request, "pulse.html", title="Pulse", info=info, not_invited=not_invited, g=g, group=group, groups=groups,
                  rounds=list(reversed(all_rounds)), charts=charts, comments=comments,
                  participation=participation, hidden=hidden_text(), pct=_pct, change=_change,
                  compared=[_compared(x, scored_ids) for x in groups], scored_ids=scored_ids,
                  texts={q.question.id: q.question.text for q in scored},
                  min_group=results.thresholds.min_group, min_comments=results.thresholds.min_comments)


@page("pulse csv", "/pulse/export.csv", "Pulse CSV", ROLES, in_nav=False)
async def export_csv(request: web.Request) -> web.StreamResponse:
    """The round's results as CSV: the groups this person may see, through export.py, sent as
    it is written (the figures first, while the comments are read), not built whole first."""
    core = request.app[CORE]
    async with core.db.session() as s:
        viewer = await _viewer(request, s)
        info = await _round(s, request.query.get("round", ""))
    if info is None:
        raise web.HTTPNotFound()
    async with aclosing(csv_chunks(core.db, info.id, may_see=viewer.may_see)) as pieces:
        first = await anext(pieces)  # a refusal or an error still becomes a page, not a cut file
        resp = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="pulse-round-{info.number}.csv"'})
        secure(request, resp)
        await resp.prepare(request)
        await resp.write(first.encode())
        async for piece in pieces:
            if piece:
                await resp.write(piece.encode())
    await resp.write_eof()
    return resp
