"""Core commands: help, who am I, and granting roles in chat."""

from __future__ import annotations

from datetime import datetime

from bot.audit import trail
from bot.core import Core, Ctx
from bot.errors import UserError
from bot.model import Fields, Message, Text
from bot.people import chat, held
from bot.people import service as people
from bot.roles import ALL_ROLES, CHANGE_TEAM, LABELS, PRACTITIONER, TEAM_LEAD
from bot.router import Router

ROLE_WORDS = {r.replace("_", " "): r for r in ALL_ROLES} | {r: r for r in ALL_ROLES}


async def help_(ctx: Ctx, args: str) -> None:
    """List what this user may do, by role."""
    lines: list[tuple[str, str]] = []
    for cmd in ctx.core.router.commands.values():
        if cmd.hidden or (cmd.roles is not None and not (cmd.roles & ctx.roles)):
            continue
        lines.append((f"{cmd.words} {cmd.usage}".strip(), cmd.summary))
    lines.sort()
    roles = ", ".join(LABELS[r] for r in ALL_ROLES if r in ctx.roles)
    body = "\n".join(f"• {w} — {s}" for w, s in lines)
    await ctx.reply(
        Message(
            (Text("What you can do here", heading=True), Text(body), Text(f"You are one of: {roles}.")),
            fallback=f"What you can do here:\n{body}\nYou are one of: {roles}.",
        )
    )


async def whoami(ctx: Ctx, args: str) -> None:
    """Show the person record and roles behind this chat user."""
    p = ctx.person
    roles = ", ".join(LABELS[r] for r in ALL_ROLES if r in ctx.roles)
    await ctx.reply(
        Message(
            (Fields((("Name", p.display_name or "-"), ("Email", p.email or "-"),
                     ("Team", p.team_id or "-"), ("Roles", roles))),),
            fallback=f"You are {p.display_name or p.email or 'unknown'} ({roles}).",
        )
    )


def _parse_grant(args: str) -> tuple[str, str]:
    words = args.split()
    if len(words) < 2:
        raise UserError("Usage: grant ROLE EMAIL, for example: grant team lead sam@example.org")
    email = words[-1]
    role_word = " ".join(words[:-1]).lower()
    if role_word not in ROLE_WORDS or ROLE_WORDS[role_word] in (PRACTITIONER, TEAM_LEAD):
        allowed = ", ".join(r.replace("_", " ") for r in ALL_ROLES if r not in (PRACTITIONER, TEAM_LEAD))
        raise UserError(f"'{role_word}' is not a role you can grant. Roles: {allowed}. "
                        "Team leads are set per team in the programme file.")
    return ROLE_WORDS[role_word], email


async def grant(ctx: Ctx, args: str) -> None:
    await _change_role(ctx, args, give=True)


async def revoke(ctx: Ctx, args: str) -> None:
    await _change_role(ctx, args, give=False)


async def _change_role(ctx: Ctx, args: str, *, give: bool) -> None:
    role, email = _parse_grant(args)
    async with ctx.session() as s:
        person = await people.person_by_email(s, email)
        if person is None:
            raise UserError(f"I don't know anyone with the email {email}. Nothing was changed.")
        change = people.grant_role if give else people.revoke_role
        changed = await change(s, person.id, role)
    if changed:
        await trail.record_ctx(ctx, "grant.role" if give else "revoke.role", target=role,
                               subject=person)
    label = LABELS[role]
    if give:
        await ctx.say(f"{email} is now one of {label}." if changed
                      else f"{email} was already one of {label}.")
    else:
        await ctx.say(f"{email} is no longer one of {label}." if changed
                      else f"{email} was not one of {label}.")


async def prune_events(core: Core, now: datetime) -> int:
    """Forget handled event ids after a week (platforms stop redelivering within minutes)."""
    await core.prune_events()
    return 0


def register(r: Router) -> None:
    r.ticker("prune-events", prune_events)
    r.worker("people-held", held.worker)
    r.command("help", help_, "what you can do here")
    r.intent(r"^(what can (you|i) do|commands|menu|hi|hello)$", "help")
    r.command("whoami", whoami, "who I think you are and your roles", private=True)
    r.command("grant", grant, "give someone a role", usage="ROLE EMAIL", roles={CHANGE_TEAM})
    r.command("revoke", revoke, "take a role away", usage="ROLE EMAIL", roles={CHANGE_TEAM})
    chat.register(r)  # people, people changes
