"""Data protection in chat and on the schedule: `privacy`, the notice on first contact, the
daily retention run, and the `retention:` programme section."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.audit import trail
from bot.core import Core, Ctx, shared
from bot.model import CommandEvent, Message
from bot.privacy import notice, retention
from bot.privacy.rules import RetentionSection
from bot.router import Router
from bot.scheduling.jobs import timed

JOB = "retention"


async def privacy(ctx: Ctx, args: str) -> None:
    """The privacy notice, any time."""
    async with ctx.session() as s:
        text = await notice.text_of(s)
    await ctx.reply(notice.message(text, first=False))


async def first_contact(ctx: Ctx) -> None:
    """The notice, once per platform account, before the first answer it gets."""
    if shared(ctx.event):
        return  # never in a channel: they are told in their own chat with the bot
    traceless = False
    if isinstance(ctx.event, CommandEvent) and ctx.event.conversation is None:
        # A slash command typed nowhere in the chat: one that must leave no trace (opening
        # the feedback form) gets no notice in the DM, which would say there, by name and
        # time, that they used it then (N20). The form it opens shows the notice instead:
        # they are told before they write anything (UK GDPR Art. 13), not only if they
        # ever type to the bot later.
        said = ctx.core.router.match(ctx.event.text)
        traceless = said is not None and said[0].traceless
    due = await due_notice(ctx)
    if due is None:
        return
    if traceless:
        ctx.notice = due
        return
    await ctx.reply(due)


async def due_notice(ctx: Ctx) -> Message | None:
    """The privacy notice if the sender's platform account has not been shown it (it counts
    as shown from now: the caller shows it), else None. For a form opened with nothing said
    in the chat (a shortcut, the Home tab's button), whose intro carries it (N20)."""
    u = ctx.event.user
    told = notice.told(ctx.core.db.engine.sync_engine)
    account = (u.platform, u.workspace, u.user_id)
    if ctx.sender_known and account in told:
        return None  # the usual case: this process has seen the row since the account was linked
    async with ctx.connection() as conn:
        first = await notice.first_time(ctx.core, conn, account)
    told.add(account)
    if not first:
        return None
    async with ctx.session() as s:
        text = await notice.text_of(s)
    return notice.message(text, first=True)


async def daily(core: Core, at: datetime) -> int:
    """Remove what is past its retention period; the counts go to the audit trail."""
    counts = await retention.run(core.db, core.clock.now())
    await trail.record(core.db, trail.Who(None, "scheduler"), "retention.run",
                       surface="scheduler", now=core.clock.now(), detail=counts)
    return sum(counts.values())


def register(r: Router) -> None:
    r.command("privacy", privacy, "how staffvoice uses your information (privacy notice)",
              private=True)
    r.intent(r"^(privacy notice|privacy policy|data protection|gdpr)$", "privacy")
    r.greeter(first_contact)
    r.worker("privacy-notices", notice.worker)
    r.ticker(JOB, timed(JOB, daily, hour=2, minute=30, grace=timedelta(hours=20)))
    r.sections.append(RetentionSection())
