"""Milestones in chat: asking where things stand, updating, check-ins and the weekly digest."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import Ctx
from bot.errors import FormInvalid, NotAllowed, UserError
from bot.milestones import cards, checkins, digest, offers, service, shown
from bot.milestones.programme import EarlyWinsSection, MilestonesSection
from bot.milestones.status import LABELS, STATUSES
from bot.milestones.tables import Milestone
from bot.model import Context, FormSubmitEvent, Message, Text, text_message
from bot.people import service as people
from bot.people.tables import Team, Theme
from bot.roles import CHANGE_TEAM
from bot.router import Router
from bot.scheduling.jobs import with_next_due

log = logging.getLogger("staffvoice.milestones")


# -- asking ----------------------------------------------------------------------------


async def status(ctx: Ctx, args: str) -> None:
    """`status` for the whole roadmap, `status <milestone>` for one."""
    query = args.strip()
    if not query:
        # The hot one: the card as last drawn (display-only, at most shown.STALE old), the
        # cached setting, in the dispatcher's transaction: usually no statement of its own.
        async with ctx.connection() as conn:
            today = await service.today(conn, ctx.now)
            msg = await shown.overview(conn, ctx.now, today)
        await ctx.reply(msg)
        return
    async with ctx.session() as s:
        today = await service.today(s, ctx.now)
        msg = await _one_or_ask(s, query, ctx, today)
    await ctx.reply(msg)


async def _one_or_ask(s: AsyncSession, query: str, ctx: Ctx, today: date) -> Message:
    found = await service.resolve(s, query)
    if found.one:
        m = await service.get(s, found.one)
        assert m is not None
        return cards.card(await service.view(s, m), ctx.now, today)
    if found.ids:
        ms = [m for m in [await service.get(s, i) for i in found.ids] if m is not None]
        return cards.which_one(query, ms)
    closest = await service.get(s, found.closest) if found.closest else None
    return cards.not_found(query, closest)


async def show(ctx: Ctx) -> None:
    """A tap on "which one?": show that milestone's card in place of the question."""
    mid = getattr(ctx.event, "value", "")
    async with ctx.session() as s:
        m = await service.get(s, mid)
        if m is None:
            raise UserError("That milestone no longer exists.")
        msg = cards.card(await service.view(s, m), ctx.now, await service.today(s, ctx.now))
    await ctx.update(msg)


async def _list(ctx: Ctx, title: str, ms: list[Milestone], empty: str) -> None:
    async with ctx.session() as s:
        today = await service.today(s, ctx.now)
        msg = cards.listing(title, await service.views(s, ms), ctx.now, today, empty)
    await ctx.reply(msg)


async def at_risk(ctx: Ctx, args: str) -> None:
    """Milestones at risk or off track."""
    async with ctx.connection() as conn:
        today = await service.today(conn, ctx.now)
        vs = service.risky_first(await service.roadmap(conn))
    await ctx.reply(cards.listing("At risk or off track", vs, ctx.now, today,
                                  "Nothing is at risk or off track right now. 🟢"))


async def overdue(ctx: Ctx, args: str) -> None:
    """Milestones past their due date and not done."""
    async with ctx.session() as s:
        ms = await service.overdue(s, await service.today(s, ctx.now))
    await _list(ctx, "Overdue", ms, "Nothing is overdue. 🟢")


async def mine(ctx: Ctx, args: str) -> None:
    """Milestones the asker owns."""
    async with ctx.session() as s:
        ms = await service.owned_by(s, ctx.person.id)
    await _list(ctx, "Your milestones", ms, "You don't own any milestones.")


async def for_team(ctx: Ctx, args: str) -> None:
    """`milestones for <team>` (the team and the teams below it); no team: the whole roadmap."""
    name = args.strip()
    if name.lower().startswith("for "):
        name = name[4:].strip()
    if not name:
        await status(ctx, "")
        return
    async with ctx.session() as s:
        team = await _team(s, name)
        ms = await service.of_team(s, team.id)
    await _list(ctx, f"Milestones for {team.name}", ms, f"{team.name} has no milestones.")


async def _team(s: AsyncSession, name: str) -> Team:
    """A team by id, name, or a close match of its name ("family support team")."""
    team = await people.find_team(s, name)
    if team is not None:
        return team
    teams = list((await s.execute(select(Team))).scalars())
    from rapidfuzz import fuzz, utils  # at the first near miss (2.8 MB: bench/README.md)

    q = utils.default_process(name.removesuffix(" team"))
    scored: list[tuple[float, str, Team]] = sorted(((fuzz.WRatio(q, utils.default_process(t.name)), t.id, t) for t in teams),
                    key=lambda x: (-x[0], x[1]))
    if scored and scored[0][0] >= 85:
        return scored[0][2]
    names = ", ".join(t.name for t in sorted(teams, key=lambda t: t.name))
    raise UserError(f"I don't know a team called '{name}'. Teams: {names}.")


# -- updating --------------------------------------------------------------------------


async def _updatable(s: AsyncSession, ctx: Ctx, mid: str) -> Milestone:
    m = await service.get(s, mid)
    if m is None:
        raise UserError(f"I don't know a milestone '{mid}'. Nothing was changed.")
    if not await service.may_update(s, m, ctx.person.id, ctx.roles):
        raise NotAllowed(f"Only the owners of {m.title} and the change team can update it. "
                         "Nothing was changed.")
    return m


async def update(ctx: Ctx, args: str) -> None:
    """`update <milestone>`: open the update form (owners and the change team)."""
    query = args.strip()
    async with ctx.session() as s:
        if not query:
            own = await service.owned_by(s, ctx.person.id)
            if len(own) != 1:
                raise UserError("Which milestone? Type “update <milestone>”, for example "
                                f"“update {own[0].id if own else 'family-network-meetings'}”.")
            m = own[0]
        else:
            m = await service.find_one(s, query)
        m = await _updatable(s, ctx, m.id)
        form = cards.update_form(m)
    await ctx.open_form(form)


async def checkin_tap(ctx: Ctx) -> None:
    """A status tapped on a check-in card: open the form with that status chosen."""
    mid, _, st = getattr(ctx.event, "value", "").partition("|")
    async with ctx.session() as s:
        m = await _updatable(s, ctx, mid)
        form = cards.update_form(m, st if st in STATUSES else None)
    await ctx.open_form(form)


async def update_submitted(ctx: Ctx) -> None:
    """The update form: record it, turn open check-in cards into confirmations."""
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    errors: dict[str, str] = {}
    st = ev.values.get("status", "")
    if st not in STATUSES:
        errors["status"] = f"Choose one of: {', '.join(LABELS[x] for x in STATUSES)}."
    try:
        progress = service.check_progress(ev.values.get("progress", ""))
    except UserError as e:
        errors["progress"] = str(e).replace(" Nothing was changed.", "")
        progress = 0
    if errors:
        raise FormInvalid(errors)
    note = ev.values.get("note", "").strip()
    async with ctx.session() as s:
        m = await _updatable(s, ctx, ev.metadata)
        rec = await service.record_update(s, m, ctx.person.id, status=st, progress=progress,
                                          note=note, at=ctx.now, source="chat")
        closed = rec.closed_checkins
        who = ctx.person.display_name or ctx.person.email or "Someone"
        mine_msg = cards.confirmation(m, who, note, yours=True)
        theirs_msg = cards.confirmation(m, who, note, yours=False)
        done_now, mid = rec.became_done, m.id
    edited = await checkins.edit_cards(
        ctx.core, closed, lambda pid: mine_msg if pid == ctx.person.id else theirs_msg
    )
    if ctx.person.id not in edited:
        await ctx.reply(mine_msg)
    if done_now:
        await offers.offer(ctx.core, mid, ctx.person, ctx.roles, ctx.now)
    log.info("milestone updated", extra={"milestone": mid, "status": st})


# -- early wins on done ----------------------------------------------------------------


async def draft_tap(ctx: Ctx) -> None:
    """The change team taps "Draft it as a broadcast" on an early-win offer."""
    broadcasts = offers.broadcasts_service()
    if broadcasts is None:
        raise UserError("Broadcasts are not available yet; copy the text and send it yourself.")
    mid = getattr(ctx.event, "value", "")
    title, text = await offers.draft_text(ctx.core, mid)
    await broadcasts.draft(ctx.core, ctx.person.id, title=title, text=text, source=f"milestone:{mid}")
    await ctx.update(text_message(f"Drafted “{title}” as a broadcast for you to review."))


# -- the change team creates and edits milestones --------------------------------------


async def _form_choices(s: AsyncSession) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    teams = [(t.id, t.name) for t in (await s.execute(select(Team).order_by(Team.name))).scalars()]
    themes = [(t.id, t.name) for t in (await s.execute(select(Theme).order_by(Theme.name))).scalars()]
    return teams, themes


async def new(ctx: Ctx, args: str) -> None:
    """`milestone new`: the form for a new milestone."""
    async with ctx.session() as s:
        teams, themes = await _form_choices(s)
    await ctx.open_form(cards.milestone_form(teams, themes))


async def edit(ctx: Ctx, args: str) -> None:
    """`milestone edit <milestone>`: the same form, filled in."""
    if not args.strip():
        raise UserError("Which milestone? For example: milestone edit family-network-meetings")
    async with ctx.session() as s:
        m = await service.find_one(s, args)
        owners = [p.email or "" for p in await service.owners_of(s, m.id)]
        teams, themes = await _form_choices(s)
        form = cards.milestone_form(teams, themes, m, ", ".join(owners))
    await ctx.open_form(form)


async def new_submitted(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    async with ctx.session() as s:
        m = await service.create(s, ev.values, ctx.now)
        msg = cards.card(await service.view(s, m), ctx.now, await service.today(s, ctx.now))
    await ctx.reply(Message((Text("Milestone added."), *msg.blocks), fallback="Milestone added. " + msg.plain))


async def edit_submitted(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    async with ctx.session() as s:
        m = await service.get(s, ev.metadata)
        if m is None:
            raise UserError("That milestone no longer exists. Nothing was changed.")
        await service.edit(s, m, ev.values, ctx.now)
        msg = cards.card(await service.view(s, m), ctx.now, await service.today(s, ctx.now))
    await ctx.reply(Message((Text("Milestone saved."), *msg.blocks), fallback="Milestone saved. " + msg.plain))


# -- home ------------------------------------------------------------------------------


async def home(ctx: Ctx) -> list[Any]:
    """"Your milestones" on the home surface, for people who own any."""
    async with ctx.session() as s:
        ms = await service.owned_by(s, ctx.person.id)
        if not ms:
            return []
        today = await service.today(s, ctx.now)
        lines = [cards.line(v, ctx.now, today) for v in await service.views(s, ms)]
    return [Text("Your milestones", heading=True), Text("\n".join(f"• {x}" for x in lines)),
            Context("Type “update <milestone>” to record where one stands.")]


def register(r: Router) -> None:
    r.sections.append(EarlyWinsSection())
    r.sections.append(MilestonesSection())
    r.command("status", status, "where the roadmap stands, or one milestone", usage="[MILESTONE]",
              joins=True)  # reads, then answers: one commit with the message's admission
    r.command("at risk", at_risk, "milestones at risk or off track")
    r.command("overdue", overdue, "milestones past their due date")
    r.command("my milestones", mine, "the milestones you own")
    r.command("milestones", for_team, "milestones of a team", usage="for TEAM")
    r.command("update", update, "record where a milestone you own stands", usage="MILESTONE")
    r.command("milestone new", new, "add a milestone to the roadmap", roles={CHANGE_TEAM})
    r.command("milestone edit", edit, "change a milestone's details", usage="MILESTONE",
              roles={CHANGE_TEAM})
    r.intent(r"^(?:what(?:'s| is| are)\s+)?(?:the\s+)?status of (?:the\s+)?(.+?)(?:\s+milestone)?$",
             "status")
    r.intent(r"^how(?:'s| is) (?:the\s+)?(.+?)(?:\s+milestone)? going$", "status")
    r.intent(r"^(?:what(?:'s|s| is)|which milestones are|anything|milestones)\s+at risk$", "at risk")
    r.intent(r"^(?:what(?:'s|s| is)|which milestones are|anything)\s+overdue$", "overdue")
    r.intent(r"^overdue milestones$", "overdue")
    r.intent(r"^(?:show\s+)?milestones? (?:for|of) (?:the\s+)?(.+)$", "milestones")
    r.action(cards.CHECKIN_ACTION, checkin_tap)
    r.action(cards.PICK_ACTION, show)
    r.action(cards.DRAFT_ACTION, draft_tap, roles={CHANGE_TEAM})
    r.form(cards.UPDATE_FORM, update_submitted)
    r.form(cards.NEW_FORM, new_submitted, roles={CHANGE_TEAM})
    r.form(cards.EDIT_FORM, edit_submitted, roles={CHANGE_TEAM})
    r.ticker(checkins.JOB, with_next_due(checkins.tick, checkins.next_due))
    r.ticker(digest.JOB, with_next_due(digest.tick, digest.next_due))
    r.ticker("early_win_offers", offers.send_pending)
    r.home.append(home)

