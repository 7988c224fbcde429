"""Reports in chat: `results` and `results TEAM`, and the weekly leadership digest."""

from __future__ import annotations

import re

from bot.audit import trail
from bot.core import Ctx
from bot.reports import card, digest, service
from bot.reports.anonymity import ALL
from bot.reports.results import SCORED, RoundInfo, comments_for, org_of_round
from bot.roles import CHANGE_TEAM, LEADER, TEAM_LEAD
from bot.router import Router
from bot.scheduling.jobs import with_next_due

ROUND = re.compile(r"\s*\bround\s+(\S+)\s*$", re.IGNORECASE)


def parse(args: str) -> tuple[str, str | None]:
    """'Assessment Team round 3' -> ('Assessment Team', '3')."""
    m = ROUND.search(args)
    if m is None:
        return args.strip(), None
    return args[: m.start()].strip(), m.group(1)


async def _round(s: object, number: str | None) -> RoundInfo | None:
    latest = await service.latest_closed_round(s)  # type: ignore[arg-type]
    if latest is None or number is None:
        return latest
    rounds = await service.closed_rounds(s, latest.survey_id)  # type: ignore[arg-type]
    return next((r for r in rounds if str(r.number) == number), None)


async def results(ctx: Ctx, args: str) -> None:
    """Show a group's results of the latest closed round (or `round N`)."""
    what, number = parse(args)
    async with ctx.session() as s:
        viewer = await service.viewer(s, ctx.person.id, ctx.roles)
        key = await service.resolve_group(s, what)
        if viewer is None or key is None or not viewer.may_see(key):
            raise service.refusal(what)
        info = await _round(s, number)
        if info is None and number is not None:
            raise service.refusal(f"round {number}")
        if info is None:
            await ctx.say("No pulse round has closed yet, so there are no results to show.")
            return
        res = await service.round_results(s, info)
        g = res.groups.get(key)
        if g is None:  # a team made after the round closed: the round knows no such group
            raise service.refusal(what)
        comments = {}
        trend = None
        if g.shown:
            org = await org_of_round(s, info.id)
            for q in g.questions:
                if q.comments_shown:
                    comments[q.question.id] = await comments_for(s, org, info, q.question.id, key)
            first = next((q for q in g.questions if q.question.kind in SCORED), None)
            if first is not None:
                trend = await service.trend(s, info.survey_id, first.question.id, key)
        others = await _others(s, viewer, key)
    await trail.record_ctx(ctx, "view.pulse_results",
                           target=f"{key} {info.survey_id} round {info.number}")
    await ctx.reply(card.group_card(res, g, comments=comments, trend=trend, others=others))


async def _others(s: object, viewer: service.Viewer, shown: str) -> list[str]:
    """What else the viewer may ask for, as commands."""
    from bot.people.tables import Team

    if viewer.all_groups:
        return ["results TEAM (a team with its sub-teams)", "results ROLE (like practitioners)"]
    names = []
    for tid in sorted(viewer.teams):
        team = await s.get(Team, tid)  # type: ignore[attr-defined]
        if team is not None and f"team:{tid}" != shown:
            names.append(f"results {team.name}")
    if shown != ALL:
        names.append("results")
    return names


def register(r: Router) -> None:
    r.command(
        "results", results, "see pulse results (yours to see: the whole and your team)",
        usage="[TEAM] [round N]", roles={CHANGE_TEAM, LEADER, TEAM_LEAD},
    )
    r.intent(r"^(?:show |see )?(?:the )?(?:pulse )?results(?: for)?\s+(.+)$", "results")
    r.ticker(digest.JOB, with_next_due(digest.tick, digest.next_due))
