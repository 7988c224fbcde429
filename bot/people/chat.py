"""`people` and `people changes` in chat: how many people, where they came from, what changed.

Counts only: nobody's name or answers. A team lead sees the size of the teams they lead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from bot.core import Core, Ctx
from bot.model import Fields, Message, Text
from bot.people import directory
from bot.people import service as people
from bot.people.tables import PeopleRun, Person, Team
from bot.roles import CHANGE_TEAM, TEAM_LEAD
from bot.router import Router

MAX_TEAMS = 30  # lines in one message; platforms cap a message's size
SOURCE_NAMES = {"import": "HR import", "slack": "Slack sync", "teams": "Microsoft Entra ID sync"}


def _run_line(run: PeopleRun | None) -> str:
    if run is None:
        return "No HR import or directory sync yet: people come from the programme file."
    c = run.counts or {}
    what = SOURCE_NAMES.get(run.source, run.source) + (f" ({run.detail})" if run.detail else "")
    when = run.at.strftime("%d %b %Y %H:%M UTC")
    if run.outcome == "failed":
        return f"Last {what}, {when}: failed ({c.get('problems', 0)} problem(s)); nothing changed."
    if run.outcome == "no changes":
        return f"Last {what}, {when}: no changes."
    return (f"Last {what}, {when}: {c.get('joiners', 0)} joiners, {c.get('movers', 0)} movers, "
            f"{c.get('leavers', 0)} leavers, {c.get('role_changes', 0)} role changes.")


async def people_(ctx: Ctx, args: str) -> None:
    """Counts by team and the last import or sync (change team); a lead's own team size."""
    async with ctx.session() as s:
        if not ctx.has(CHANGE_TEAM):
            led = await people.teams_led_by(s, ctx.person.id)
            pairs = []
            for team in led:
                ids = await people.team_and_descendants(s, team.id)
                n = (await s.execute(select(func.count()).select_from(Person).where(
                    Person.team_id.in_(ids), Person.left_on.is_(None),
                    Person.source.is_not(None)))).scalar_one()
                pairs.append((team.name, f"{n} {'person' if n == 1 else 'people'}"))
            if not pairs:
                await ctx.say("You don't lead a team here, so there is no team size to show.")
                return
            await ctx.reply(Message((Text("Your team", heading=True), Fields(tuple(pairs))),
                                    fallback="; ".join(f"{a}: {b}" for a, b in pairs)))
            return
        counts = await directory.counts_by_team(s)
        names = {t.id: t for t in (await s.execute(select(Team))).scalars()}
        run = await directory.last_run(s)
    total = sum(n for _, n in counts)

    def path(tid: str | None) -> str:
        parts, seen = [], set()
        while tid is not None and tid in names and tid not in seen:
            seen.add(tid)
            parts.append(names[tid].name)
            tid = names[tid].parent_id
        return " / ".join(reversed(parts)) or "No team"

    rows = sorted((path(t), n) for t, n in counts)
    shown = [(p, str(n)) for p, n in rows[:MAX_TEAMS]]
    more = f"…and {len(rows) - MAX_TEAMS} more teams." if len(rows) > MAX_TEAMS else ""
    blocks: list[Text | Fields] = [Text(f"People: {total:,} in {len(rows)} teams", heading=True)]
    if shown:
        blocks.append(Fields(tuple(shown)))
    if more:
        blocks.append(Text(more))
    blocks.append(Text(_run_line(run)))
    fallback = "\n".join([f"People: {total:,}", *(f"{p}: {n}" for p, n in shown), more,
                          _run_line(run)])
    await ctx.reply(Message(tuple(blocks), fallback=fallback))


async def changes(ctx: Ctx, args: str) -> None:
    """The last import or sync's difference, in counts."""
    async with ctx.session() as s:
        run = await directory.last_run(s)
    if run is None:
        await ctx.say(_run_line(None))
        return
    c = run.counts or {}
    pairs = tuple((label, str(c.get(key, 0))) for key, label in (
        ("joiners", "Joiners"), ("movers", "Movers"), ("leavers", "Leavers"),
        ("role_changes", "Role changes"), ("updated", "Other updates"),
        ("new_teams", "New teams"), ("conflicts", "Conflicts kept"), ("problems", "Problems")))
    line = _run_line(run)
    await ctx.reply(Message((Text("Last people changes", heading=True), Text(line), Fields(pairs)),
                            fallback=line + " " + ", ".join(f"{a}: {b}" for a, b in pairs)))


async def end_contracts(core: Core, now: datetime) -> int:
    """Fixed-term and agency staff whose end date has passed become leavers."""
    async with core.db.session() as s:
        return await directory.end_contracts(s, now.date())


def register(r: Router) -> None:
    r.command("people", people_, "how many people, by team, and the last import or sync",
              roles={CHANGE_TEAM, TEAM_LEAD})
    r.command("people changes", changes, "what the last import or sync changed (counts)",
              roles={CHANGE_TEAM})
    r.ticker("people-contracts", end_contracts)
