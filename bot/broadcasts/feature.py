"""Broadcasts in chat: compose, preview, confirm, status, retract, celebrate."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.broadcasts import service
from bot.broadcasts.tables import Broadcast
from bot.core import Core, Ctx
from bot.errors import FormInvalid, UserError
from bot.model import (
    ActionEvent,
    Context,
    Form,
    FormSubmitEvent,
    Message,
    Text,
    TextInput,
    ToggleInput,
    text_message,
)
from bot.port import too_big
from bot.roles import CHANGE_TEAM
from bot.router import Router
from bot.scheduling.jobs import with_next_due

COMPOSE = "bc-compose"
# Background drains started from chat so a console or single process sends without a worker.
KICKS: set[asyncio.Task[Any]] = set()


def compose_form(b: Broadcast | None = None, limit: int = service.DEFAULT_TEXT_LIMIT) -> Form:
    """The compose form, pre-filled from a draft when editing."""
    when = b.send_at.strftime("%Y-%m-%d %H:%M") if b and b.send_at else "now"
    audience = _audience_text(b.audience) if b else "everyone"
    return Form(
        form_id=COMPOSE,
        title="New broadcast",
        intro=(Context("You will see a preview first; nothing is sent until you confirm."),),
        inputs=(
            TextInput("title", "Title", max_length=service.TITLE_LIMIT, initial=b.title if b else ""),
            # Twice the limit, so an over-long text reaches us and gets a message with its length.
            TextInput("text", "Message", multiline=True, max_length=limit * 2,
                      initial=b.text if b else ""),
            TextInput("image_url", "Image (https address)", optional=True,
                      initial=(b.image_url or "") if b else ""),
            TextInput("link_url", "Link button (https address)", optional=True,
                      initial=(b.link_url or "") if b else ""),
            TextInput("link_label", "Link button label", optional=True,
                      initial=b.link_label if b else "", placeholder="Read more"),
            ToggleInput("celebrate", "Add a Celebrate button", initial=b.celebrate if b else True),
            TextInput("audience", "Audience", initial=audience,
                      placeholder="everyone · teams: assessment · roles: team lead · "
                                  "members: slack:T1/usergroup:S1 · channels: slack:T1/C1"),
            TextInput("when", "When (now, or YYYY-MM-DD HH:MM)", optional=True, initial=when),
        ),
        submit_label="Preview",
        metadata=b.id if b else "",
    )


def _audience_text(a: dict[str, Any]) -> str:
    if a.get("kind") == "channels":
        return "channels: " + ", ".join(a["channels"])
    if a.get("everyone"):
        return "everyone"
    parts = []
    if a.get("teams"):
        parts.append("teams: " + ", ".join(a["teams"]))
    if a.get("roles"):
        parts.append("roles: " + ", ".join(r.replace("_", " ") for r in a["roles"]))
    if a.get("groups"):
        parts.append("members: " + ", ".join(a["groups"]))
    return "; ".join(parts)


async def compose(ctx: Ctx, args: str) -> None:
    await ctx.open_form(compose_form(limit=service.text_limit(set(ctx.core.ports))))


async def submitted(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    async with ctx.session() as s:
        f = await service.validate(s, ev.values, set(ctx.core.ports), ctx.now)
    # Platforms count bytes of the message as sent, not characters (Teams: about 28 KB).
    problem = too_big(ctx.core.ports.values(), service.render(Broadcast(
        id="0" * 24, title=f.title, text=f.text, image_url=f.image_url, link_url=f.link_url,
        link_label=f.link_label, celebrate=f.celebrate)))
    if problem:
        raise FormInvalid({"text": problem})
    members = await service.check_groups(ctx.core, f)
    b = await service.store(ctx.core, ctx.person.id, f, draft_id=ev.metadata or None)
    ref = await ctx.reply(await service.preview_for(ctx.core, b, members))
    await service._remember_preview(ctx.core, b.id, ref)


async def decided(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, ActionEvent)
    bid = ev.action_id.removeprefix(service.DRAFT)
    if ev.value == "edit":
        async with ctx.session() as s:
            b = await service._editable(s, bid, ctx.person.id)
        if b.state != "draft":
            raise UserError(f"That broadcast is already {b.state}; it can't be edited now.")
        await ctx.open_form(compose_form(b, service.text_limit(set(ctx.core.ports))))
        return
    if ev.value == "cancel":
        await service.cancel(ctx.core, bid, ctx.person.id)
        await ctx.update(text_message("Broadcast cancelled. Nothing was sent."))
        return
    b = await service.confirm(ctx.core, bid, ctx.person.id)
    if b.state == "scheduled":
        when = _local(b.send_at)
        text = f"Scheduled '{b.title}' for {when}. Cancel with: broadcast retract {b.id}"
    elif b.total == 0:
        text = f"'{b.title}' has no recipients, so nothing was sent."
    else:
        st = await service.status(ctx.core, b.id)
        held = (f" ({st.waiting:,} of them outside their working hours get it then, the first "
                f"at {st.next_at})" if st.waiting else "")
        text = (f"Sending '{b.title}' to {b.total:,} recipients{held}. "
                f"Follow it with: broadcast status {b.id}")
        kick(ctx.core)
    await ctx.update(Message((Text(text),), fallback=text))


def _local(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "now"


def kick(core: Core) -> None:
    """Start draining at once in this process (the worker would pick it up within a second)."""
    from bot.broadcasts.sender import Sender

    task = asyncio.get_running_loop().create_task(Sender(core).drain())
    KICKS.add(task)
    task.add_done_callback(KICKS.discard)


async def settle() -> None:
    """Wait for background drains started from chat (tests, and a clean console exit)."""
    while KICKS:
        await asyncio.gather(*list(KICKS), return_exceptions=True)


async def celebrate(ctx: Ctx) -> None:
    """Count the tap once; the tapped message shows the count (no new message in the DM)."""
    ev = ctx.event
    assert isinstance(ev, ActionEvent)
    bid = ev.action_id.removeprefix(service.CELEBRATE)
    first, n = await service.celebrate(ctx.core, bid, ctx.person.id)
    so_far = "1 person so far" if n == 1 else f"{n:,} people so far"
    note = f"You celebrated this ({so_far})." if first else (
        f"You already celebrated this ({so_far}).")
    b = await service.get(ctx.core, bid)
    card = service.render(b) if b is not None and b.state in ("sending", "done") else None
    if card is None:
        await ctx.say(note)
        return
    await ctx.update(Message((*card.blocks, Context(note)), fallback=f"{card.fallback}\n{note}"))


async def status(ctx: Ctx, args: str) -> None:
    if not args.strip():
        raise UserError("Usage: broadcast status ID (type 'broadcasts' to see recent ids).")
    await ctx.reply(service.status_message(await service.status(ctx.core, args.split()[0])))


async def retract(ctx: Ctx, args: str) -> None:
    if not args.strip():
        raise UserError("Usage: broadcast retract ID (type 'broadcasts' to see recent ids).")
    bid = args.split()[0]
    n = await service.retract(ctx.core, bid, ctx.person.id)
    if n:
        await ctx.say(f"Retracting: deleting {n:,} delivered copies. No more will be sent. "
                      "I'll tell you when it's done.")
        kick(ctx.core)
    else:
        await ctx.say("Retracted before anything was delivered. Nothing more will be sent.")


async def listing(ctx: Ctx, args: str) -> None:
    rows = await service.recent(ctx.core)
    if not rows:
        await ctx.say("No broadcasts yet. Type 'broadcast' to write one.")
        return
    lines = [f"• {b.id} · {b.state} · {b.title}" for b in rows]
    await ctx.say("Recent broadcasts:\n" + "\n".join(lines))


async def ticker(core: Core, now: datetime) -> int:
    """Start scheduled broadcasts that are due, and send what is queued."""
    from bot.broadcasts.sender import Sender

    started = await service.start_due(core, now)
    stats = await Sender(core).drain()
    return started + stats.sent + stats.retracted


async def next_due(core: Core, now: datetime) -> datetime | None:
    """When the next scheduled broadcast is due to start (None when none is scheduled)."""
    async with core.db.session() as s:
        return (await s.execute(select(Broadcast.send_at).where(
            Broadcast.state == "scheduled", Broadcast.send_at.is_not(None))
            .order_by(Broadcast.send_at).limit(1))).scalar_one_or_none()


def register(r: Router) -> None:
    from bot.broadcasts.sender import run_worker

    change = {CHANGE_TEAM}
    r.command("broadcast", compose, "write an update or early win for staff", roles=change)
    r.command("broadcast status", status, "delivery progress and report", usage="ID",
              roles=change)
    r.command("broadcast retract", retract, "delete a sent broadcast everywhere", usage="ID",
              roles=change)
    r.command("broadcasts", listing, "recent broadcasts", roles=change)
    r.form(COMPOSE, submitted, roles=change)
    r.action(service.DRAFT, decided, roles=change)
    r.action(service.CELEBRATE, celebrate)
    r.ticker("broadcasts", with_next_due(ticker, next_due))
    r.worker("broadcast-sender", run_worker)

