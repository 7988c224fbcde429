"""Anonymous feedback in chat: the form, the safeguarding check, replies, and "you said, we did".

Feedback text only ever arrives through a form (a Slack modal, a Teams card input, console
prompts), never as a chat message, because chat platforms can export DMs. Answers to an author
open in a form too, so neither side's words sit in the author's DM history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.audit import trail
from bot.core import PRIVATELY, Core, Ctx, shared
from bot.errors import FormInvalid, UserError
from bot.feedback import counts, identifiers, moments, release, safeguarding
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.model import (
    Choice,
    Choices,
    CommandEvent,
    Context,
    Fields,
    Form,
    FormSubmitEvent,
    Message,
    SelectInput,
    Text,
    TextInput,
    ToggleInput,
)
from bot.people import service as people
from bot.port import PlatformError
from bot.privacy import rules as retention
from bot.programme.core_sections import SETTINGS_TTL_S
from bot.roles import CHANGE_TEAM, SAFEGUARDING_LEAD
from bot.router import Router
from bot.scheduling.jobs import with_next_due

log = logging.getLogger("staffvoice.feedback")

READERS = {CHANGE_TEAM, SAFEGUARDING_LEAD}
OPEN_ACTION = "feedback.open"  # adapters may bind a button or shortcut to this action id


# -- giving feedback -----------------------------------------------------------------------


async def feedback_form(ctx: Ctx, *, text: str = "", theme: str = "", replies: bool = False,
                        warnings: list[str] | None = None) -> Form:
    """The feedback form; with `warnings`, the "before you send" version that repeats the routes."""
    async with ctx.session() as s:
        cfg = await fb.config(s)
        themes = await fb.themes(s)
        days = (await retention.current(s, ttl=SETTINGS_TTL_S)).reply_routes_days
        leads = bool(warnings) and await people.any_with_role(s, SAFEGUARDING_LEAD)
    intro: list[Text | Context] = []
    submit = "Send"
    title = "Anonymous feedback"
    if warnings:
        title, submit = "Before you send", "Send anyway"
        concerns = [w for w in warnings if w in safeguarding.CATEGORIES]
        ids = [w for w in warnings if w not in safeguarding.CATEGORIES]
        if concerns:
            intro.append(Text(
                "What you wrote may describe a safeguarding concern "
                f"({safeguarding.describe(concerns)}). Please use one of these routes as well: "
                "anonymous feedback cannot be followed up with you. "
                + ("If you still send it, it goes to the safeguarding leads straight away, "
                   "marked urgent, without your name." if leads else NO_LEAD)))
            intro.extend(safeguarding.route_blocks(cfg))
        if ids:
            intro.append(Text(
                f"It may contain {identifiers.describe(ids)}, which could identify you or someone "
                "else. You can edit it below. Nothing is changed unless you change it."))
    else:
        intro.extend(safeguarding.route_blocks(cfg))
        intro.append(Context(
            "Your name is not stored with your feedback and nobody can see who sent it. "
            f"Up to {cfg.max_length:,} characters; up to {cfg.daily_limit} a day. If you let the "
            f"change team reply, they can reach you for {days} days after you send it"
            f"{_evening(days, cfg)}."))
    return Form(
        form_id="feedback.submit",
        title=title,
        intro=tuple(intro),
        inputs=(
            TextInput("text", "Your feedback", multiline=True, max_length=cfg.max_length,
                      initial=text, placeholder="What is and isn't working for you?"),
            SelectInput("theme", "Theme (optional)",
                        tuple(Choice(t.name, t.id) for t in themes), optional=True, initial=theme),
            ToggleInput("replies", "Let the change team reply to me anonymously", initial=replies),
        ),
        submit_label=submit,
        metadata="ack:" + ",".join(warnings or []),
    )


# Said instead of "it goes to the safeguarding leads straight away" while the programme has
# no current safeguarding lead: nobody would be alerted, and the sender must not rely on it.
NO_LEAD = ("No safeguarding lead is set up to receive it straight away, so please use one of "
           "these routes now.")
NO_LEAD_SENT = ("No safeguarding lead is set up to receive feedback that may describe a risk "
                "to a child or an allegation about a colleague straight away: if someone is at "
                "risk, please use a route below now.")


async def feedback_cmd(ctx: Ctx, args: str) -> None:
    """Open the anonymous feedback form (anything typed after the word is not kept)."""
    typed = ("I haven't kept what you typed: anonymous feedback only goes through the form, "
             "so it never sits in the chat. Please write it in the form.")
    # A slash command leaves nothing in the chat (N20): what it has to say goes in the form.
    slash = isinstance(ctx.event, CommandEvent) and ctx.event.conversation is None
    if args.strip() and not slash:
        await ctx.say(typed)
    # Adapters that cannot open a form from a typed message offer a button that does.
    # A first slash command: the privacy notice, in the form (N20).
    first = (Text(typed),) if args.strip() and slash else ()
    await ctx.open_form(_headed(await feedback_form(ctx), *first, notice=ctx.notice))


# How much of a typed message is read for a disclosure (a chat message can be 40,000
# characters on Slack; the feedback form takes 2,000 by default).
TYPED_SCAN = 20_000


async def typed_concern(ctx: Ctx, text: str) -> bool:
    """Typed text that no command matches and that looks like a safeguarding concern is
    answered with the routes, not "I didn't understand" (docs/invariants.md N52).

    Someone who types "I want to kill myself" or "a boy on my caseload told me his stepdad
    hits him" to the bot, rather than into the form, was told "Sorry, I didn't understand
    that": no route, no 999. The text is not kept and nobody is told (what is typed in the
    chat names its writer, and anonymous feedback is not a referral route): the answer says
    so, shows every configured route, and how to send it anonymously. Nothing is echoed."""
    if not text.strip():
        return False
    async with ctx.session() as s:
        cfg = await fb.config(s)
    concerns = safeguarding.concerns(text[:TYPED_SCAN], cfg)
    if not concerns:
        return False
    last = "To tell the change team anonymously, type “feedback” to open the form."
    if shared(ctx.event):
        # Written where others read (a channel mention): the answer, which says what it
        # looks like, goes to the person's DM, as a personal command's does; the channel
        # hears only that it did, once it did. Where no DM can be opened or sent to (Teams:
        # a stored chat the person blocked), the routes go where they wrote, without what
        # the words look like (review26).
        where = ctx.event
        try:
            ctx.event = replace(where, conversation=await ctx.port.open_dm(where.user))
            await ctx.reply(_routes_message(cfg, concerns, last))
        except PlatformError:
            ctx.event = where
        else:
            await ctx.core.say_shared(ctx.port, where, PRIVATELY)
            return True
    await ctx.reply(_routes_message(cfg, concerns, last, in_shared=shared(ctx.event)))
    return True


async def outsider_concern(core: Core, text: str,
                           notice: str) -> Callable[[bool], Message] | None:
    """Typed text from someone outside the programme that looks like a safeguarding concern
    gets the routes too (N52), with the not-enrolled `notice`: they were told only "you are
    not part of this programme", no route, no 999 (found in review22). Nothing is kept. The
    answer is made for where it is shown: `in_shared`, where others read (no DM could be
    opened), it never says what the words look like."""
    if not text.strip():
        return None
    async with core.db.session() as s:
        cfg = await fb.config(s)
    concerns = safeguarding.concerns(text[:TYPED_SCAN], cfg)
    if not concerns:
        return None
    return lambda in_shared: _routes_message(cfg, concerns, notice, in_shared=in_shared)


def _routes_message(cfg: safeguarding.Config, concerns: Sequence[str], last: str, *,
                    in_shared: bool = False) -> Message:
    """What typed text that looks like a concern is answered with: what it looks like, that it
    was not kept and reaches nobody, every configured route, then `last`. `in_shared` (a
    channel, where no DM could be opened): never what it looks like, which beside the
    writer's name would tell their colleagues (found in review26)."""
    said = ("What you wrote may describe a safeguarding concern "
            f"({safeguarding.describe(concerns)}). I haven't kept it, and nothing"
            if not in_shared else "I haven't kept what you wrote, and nothing")
    return Message(
        (Text(f"{said} typed in "
              "this chat reaches anyone: not the safeguarding leads, not the change team. If "
              "someone is at risk, please use one of these routes now."),
         *safeguarding.route_blocks(cfg),
         Context(last)),
        fallback="What you wrote may describe a safeguarding concern. Nothing typed here "
                 "reaches anyone: please use a safeguarding route now (in an emergency, 999).")


def _evening(days: int, cfg: safeguarding.Config) -> str:
    """Feedback sent after the day's last release counts as the next day's (N29), and its
    way to reply is kept by that day (N6): a day longer, as the privacy notice says."""
    last = moments.last(cfg.release_times)
    return f" ({days + 1} if you send it after {last})" if last else ""


async def open_action(ctx: Ctx) -> None:
    """The form from a button, a shortcut or the Home tab: nothing is said in the chat, so a
    person whose first contact this is reads the privacy notice in the form (N20)."""
    from bot.privacy.feature import due_notice

    form = await feedback_form(ctx)
    await ctx.open_form(_headed(form, notice=await due_notice(ctx)))


def _headed(form: Form, *first: Text | Context, notice: Message | None = None) -> Form:
    """`form` with `first`, then the privacy `notice`'s words, above its own intro."""
    if notice is not None:
        first = (*first, *(b for b in notice.blocks if isinstance(b, Text | Context)))
    return replace(form, intro=(*first, *form.intro)) if first else form


# The daily limit is checked when the form is sent, and said in the form (`_check_limit`,
# `fb.store`), never when it is opened: a refusal then went to the chat, which the platform
# keeps by name and time, and "You have sent 5 pieces of feedback today" there made that day's
# five items theirs (docs/invariants.md N39). The form opens the same for everyone, so the
# button a typed word gets in the DM (Slack) and the form stored under it read alike too.
async def _check_limit(ctx: Ctx, *, s: AsyncSession | AsyncConnection,
                       concerns: list[str]) -> None:
    """Refuse, in the form, once the person has sent today's allowance (larger for what looks
    like a safeguarding concern: "Before you send" and its routes come first, N53)."""
    limit = fb.daily_limit((await fb.config(s)).daily_limit, concerns)
    if await fb.sent_today(ctx.core, ctx.person.id, s) >= limit:
        raise FormInvalid({"text": fb.limit_message(limit)})


def _acknowledged(metadata: str) -> set[str]:
    _, _, rest = metadata.partition("ack:")
    return {w for w in rest.split(",") if w}


async def _checked_text(ctx: Ctx, field: str = "text",
                        s: AsyncSession | AsyncConnection | None = None
                        ) -> tuple[str, list[str], list[str]]:
    """The submitted text after the length check, and what it looks like (concerns, identifiers)."""
    if s is None:
        async with ctx.session() as s:
            return await _checked_text(ctx, field, s)
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    text = ev.values.get(field) or ""
    cfg = await fb.config(s)
    # Length first: a giant paste is refused before any pattern runs over it.
    if len(text) > cfg.max_length:
        raise FormInvalid({field: f"That is {len(text):,} characters; the limit is "
                                  f"{cfg.max_length:,}. Please shorten it. Nothing was sent."})
    if not text.strip():
        raise FormInvalid({field: "Please write something first. Nothing was sent."})
    return text, safeguarding.concerns(text, cfg), identifiers.findings(text)


async def submit_form(ctx: Ctx) -> None:
    """A submitted feedback form: check, maybe ask again, then store without the author."""
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    theme = ev.values.get("theme") or ""
    replies = ev.values.get("replies") == "true"
    # The checks and the item: one transaction, inside the hold that counts the send once
    # the item is committed (the count itself is written later, apart: bot/feedback/counts.py).
    async with counts.holding(ctx.core) as hold, ctx.connection() as conn:
        text, concerns, ids = await _checked_text(ctx, s=conn)
        if theme and not await fb.is_theme(conn, theme):
            raise FormInvalid({"theme": "Please choose one of the listed themes."})
        warnings = concerns + ids
        ask = not set(warnings) <= _acknowledged(ev.metadata)
        if ask:  # over today's limit, the form says so rather than ask again
            await _check_limit(ctx, s=conn, concerns=concerns)
        else:  # store() refuses past the limit with the same words
            stored = await fb.store(ctx.core, ctx.person.id, text=text, theme_id=theme or None,
                                    replies=replies, concerns=concerns, conn=conn, hold=hold)
            # Read on this connection (settings kept up to SETTINGS_TTL_S: usually no
            # statement), not in an ORM session of its own after it.
            thanks = await _thanks(conn, stored)
    if ask:
        await ctx.open_form(await feedback_form(ctx, text=text, theme=theme, replies=replies,
                                                warnings=warnings))
        return
    # No log line for an ordinary item: its time, to the millisecond, beside the platform's
    # record of who submitted a form then, would name its sender (the release logs counts).
    if stored.urgent:  # its leads are alerted in this second anyway (N20)
        log.info("urgent feedback stored; alerting the safeguarding leads")
        # Stored already: a failure now must not make the platform resend (a second item).
        try:
            await fb.deliver_alerts(ctx.core, stored.item_id)
        except Exception:
            log.exception("safeguarding alert delivery failed; the scheduler retries it")
    # In the form, not the DM (N19, N20): adapters show a notice only in answer to its form.
    await ctx.open_form(thanks)


async def _thanks(s: AsyncSession | AsyncConnection, stored: fb.Stored) -> Form:
    """The thanks, shown in the form just sent, never left in the chat.

    A thanks in the DM, kept by the platform by name and time, says that this person sent
    feedback then; with the change team's knowledge of which item came when (or which was
    urgent: the leads are alerted in the same second), it names the author (docs/invariants.md
    N19, N20). In the form it leaves nothing behind. The words are the same whether or not
    the item was flagged urgent; the flagged sender was told before sending ("Before you send").
    """
    intro: list[Text | Context | Fields] = [Text("Thank you. Your feedback was sent anonymously.")]
    cfg = await fb.config(s)
    days = (await retention.current(s, ttl=SETTINGS_TTL_S)).reply_routes_days
    # The same words for every sender: when the change team can read it, not whether it waits.
    intro.append(Context("The change team gets new feedback in batches, at "
                         f"{release.describe(cfg.release_times)} each day, so nobody can tell "
                         "when you sent it."))
    intro.append(Text("If it may describe a risk to a child or an allegation about a "
                      "colleague, it went to the safeguarding leads straight away. They cannot "
                      "trace you, so please also use a route below if someone is at risk."
                      if await people.any_with_role(s, SAFEGUARDING_LEAD) else NO_LEAD_SENT))
    intro.extend(safeguarding.route_blocks(cfg)[1:])
    if stored.token:
        intro.append(Context(f"If the change team answers within {days} days, I'll tell you in "
                             "our chat. You can stop replies at any time: tap Stop replies on "
                             "their message, or send me “feedback stop replies”."))
    return Form(form_id="feedback.thanks", title="Feedback sent", inputs=(), intro=tuple(intro),
                submit_label="", close_label="Close")


# -- the author's side of a thread ---------------------------------------------------------


async def read_action(ctx: Ctx) -> None:
    """The author opens the change team's answer (in a form, so it stays out of the DM)."""
    token = getattr(ctx.event, "value", "")
    await ctx.open_form(await _answer_form(ctx, token))


async def _answer_form(ctx: Ctx, token: str, *, text: str = "", warnings: list[str] | None = None) -> Form:
    async with ctx.session() as s:
        handle = await fb.handle_for_token(ctx.core, s, token, ctx.person.id)
        item = await s.get(FeedbackItem, handle.item_id)
        msgs = await fb.thread(s, handle.item_id, author=True)
        cfg = await fb.config(s)
        leads = bool(warnings) and await people.any_with_role(s, SAFEGUARDING_LEAD)
    assert item is not None
    intro: list[Text | Context] = [Text(f"You wrote ({item.day:%d %b}): {_clip(item.text, 300)}")]
    for m in msgs[-6:]:
        who = "The change team" if m.sender == "team" else "You"
        intro.append(Text(f"{who} ({m.day:%d %b}): {m.text}"))
    submit = "Send answer"
    if warnings:
        submit = "Send anyway"
        concerns = [w for w in warnings if w in safeguarding.CATEGORIES]
        ids = [w for w in warnings if w not in safeguarding.CATEGORIES]
        if concerns:
            intro.append(Text("Your answer may describe a safeguarding concern. "
                              + ("If you send it, it goes to the safeguarding leads at once, "
                                 "without your name." if leads else NO_LEAD)))
            intro.extend(safeguarding.route_blocks(cfg))
        if ids:
            intro.append(Text(f"Your answer may contain {identifiers.describe(ids)}, which could "
                              "identify you or someone else. You can edit it."))
    if not any(w in safeguarding.CATEGORIES for w in warnings or ()):  # (else shown above)
        # Before anything is written, as the feedback form: an answer is where an author
        # says more, and the patterns may miss it (S1, S2).
        intro.extend(safeguarding.route_blocks(cfg))
    intro.append(Context("You stay anonymous. Leave the answer empty to just close this."))
    return Form(
        form_id="feedback.answer", title="The change team answered", intro=tuple(intro),
        inputs=(TextInput("text", "Your answer (optional)", multiline=True,
                          max_length=cfg.max_length, optional=True, initial=text),),
        submit_label=submit, metadata=f"{token}|ack:{','.join(warnings or [])}",
    )


async def answer_form(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    token, _, ack = ev.metadata.partition("|")
    if not (ev.values.get("text") or "").strip():
        return  # just read it
    text, concerns, ids = await _checked_text(ctx)
    warnings = concerns + ids
    if not set(warnings) <= _acknowledged(ack):
        await ctx.open_form(await _answer_form(ctx, token, text=text, warnings=warnings))
        return
    item_id = await fb.author_answer(ctx.core, token, ctx.person.id, text, concerns)
    if concerns:
        try:
            await fb.deliver_alerts(ctx.core, item_id)
        except Exception:
            log.exception("safeguarding alert delivery failed; the scheduler retries it")
    # In the form just sent, never the DM: there, by name and to the second, it dated the
    # answer the change team reads only from its release and, with the thread that got an
    # answer, named the item's author (docs/invariants.md N41).
    await ctx.open_form(ANSWER_SENT)


ANSWER_SENT = Form(form_id="feedback.answered", title="Answer sent", inputs=(),
                   intro=(Text("Your answer was sent anonymously to the change team."),),
                   submit_label="", close_label="Close")


async def revoke_action(ctx: Ctx) -> None:
    """The author stops replies: the sealed route back to them is destroyed."""
    await fb.revoke(ctx.core, getattr(ctx.event, "value", ""), ctx.person.id)
    await ctx.say("Done: replies to that feedback are stopped and the way back to you was "
                  "destroyed. Nobody can use it again, including the change team.")


async def stop_cmd(ctx: Ctx, args: str) -> None:
    await fb.revoke_all(ctx.core, ctx.person.id)
    # The same words whether they had no such feedback, one piece or ten: this answer stays
    # in their chat, by name, and "replies to 2 pieces of your feedback" there, beside the
    # items the change team sees "replies possible" on, said which were theirs (N43).
    await ctx.say(STOPPED)


STOPPED = ("Done: replies to any feedback of yours are stopped and every way back to you was "
           "destroyed. Nobody can use them again, including the change team. (I don't say how "
           "many there were: this chat is kept by the platform.)")


# -- change team and safeguarding leads ----------------------------------------------------


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


async def list_cmd(ctx: Ctx, args: str) -> None:
    """List feedback by theme and status: `feedback list [families] [THEME] [STATUS|urgent|all]`."""
    theme_id: str | None = None
    statuses: tuple[str, ...] = fb.OPEN
    urgent = False
    sources: tuple[str, ...] = (fb.STAFF,)
    await release.release_due(ctx.core)
    async with ctx.session() as s:
        names = {t.id: t.name for t in await fb.themes(s)}
        when = release.describe((await fb.config(s)).release_times)
        for word in args.lower().split():
            if word in names:
                theme_id = word
            elif word in fb.STATUSES:
                statuses = (word,)
            elif word == "all":
                statuses = fb.STATUSES
            elif word == "urgent":
                urgent = True
            elif word in ("families", "family", "young-people", "public"):
                sources = fb.PUBLIC_SOURCES
            else:
                raise UserError(f"'{word}' is neither a theme ({', '.join(sorted(names))}) nor a "
                                f"status ({', '.join(fb.STATUSES)}, all, urgent), nor families.")
        if urgent and sources == (fb.STAFF,):
            # A lead looking for urgent items wants every one, whichever page it came from.
            sources = (fb.STAFF, *fb.PUBLIC_SOURCES)
        # The urgent queue is a lead's view: their urgent items at once (they were alerted);
        # everyone else's listing shows an urgent item from its release (N37).
        lead = urgent and ctx.has(SAFEGUARDING_LEAD)
        items = await fb.list_items(s, theme_id=theme_id, statuses=statuses, urgent_only=urgent,
                                    sources=sources, lead=lead)
        # Whoever reads the urgent queue learns when a lead cannot be alerted (bot/people/reach.py).
        # The change team is told it as it was at a release (an alert that finds a lead
        # unreachable would date its urgent item, N37); a lead at once.
        short = (await release.leads_reach(s, lead=ctx.has(SAFEGUARDING_LEAD))).warning() \
            if urgent else None
        replyable = {i.id for i in items if await fb.has_handle(s, i.id)}
        threads = {i.id: await fb.thread(s, i.id, lead=lead) for i in items}
    # Which listing, never how many items it showed: counts kept to the minute would date
    # each release (and, before releases, each item) for any later reader of the trail.
    await trail.record_ctx(ctx, "view.urgent_queue" if urgent else "view.feedback",
                           target=" ".join(args.lower().split()) or "open")
    released = (f"New feedback appears at {when} (programme time), everything that waited "
                "together, so that no list says when an item was sent; urgent items reach the "
                "safeguarding leads at once (their urgent queue), everyone else's lists with the "
                "release.")
    if not items:
        await ctx.say(f"No feedback matches that. {released}" + (f"\n\n{short}" if short else ""))
        return
    title = "Feedback from families and young people" if sources != (fb.STAFF,) else "Feedback"
    blocks: list[Text | Choices | Context] = [Text(f"{title} ({len(items)})", heading=True),
                                              *([Text(short)] if short else []), Context(released)]
    day = None
    for item in items:
        if fb.day_for(item, lead) != day:
            day = fb.day_for(item, lead)
            blocks.append(Context(f"{day:%A %d %B %Y} (shuffled within the day)"))
        tags = [fb.ref_of(item.id), names.get(item.theme_id or "", "no theme"), item.status]
        if item.source != fb.STAFF:
            tags.insert(1, "from " + fb.SOURCE_LABELS.get(item.source, item.source))
        if fb.urgent_for(item, lead):
            tags.append("URGENT: " + safeguarding.describe(fb.concerns_for(item, lead)))
        if item.id in replyable:
            tags.append("replies possible")
        if threads[item.id] and threads[item.id][-1].sender == "author":
            tags.append("the author answered")
        blocks.append(Text(" · ".join(tags) + "\n" + _clip(item.text, 600)))
        opts = [Choice("Read", f"status:{item.id}:read"), Choice("Done", f"status:{item.id}:done")]
        if item.id in replyable:
            opts.insert(0, Choice("Reply", f"reply:{item.id}", "primary"))
        blocks.append(Choices("feedback.item", tuple(opts)))
    await ctx.reply(Message(tuple(blocks), fallback=f"Feedback ({len(items)})"))


async def show_cmd(ctx: Ctx, args: str) -> None:
    """One item with its whole thread."""
    await release.release_due(ctx.core)
    async with ctx.session() as s:
        lead = ctx.has(SAFEGUARDING_LEAD)
        item = await fb.find_item(s, args, lead=lead)
        msgs = await fb.thread(s, item.id, lead=lead)
        can_reply = await fb.has_handle(s, item.id)
    if not (lead and (fb.lead_only(item) or not all(m.released for m in msgs))):
        await trail.record_ctx(ctx, "view.feedback_item", target=fb.ref_of(item.id))
    else:
        # A lead reading an urgent item, or an author's urgent answer, before its release:
        # recorded as a look at the urgent queue (which names no item), as the change team
        # reads the trail (`audit`), and a ref there, with its minute, would say the item
        # exists, or that something came of it, and date it (N37).
        await trail.record_ctx(ctx, "view.urgent_queue", target="urgent")
    blocks: list[Text | Context] = [
        Text(f"Feedback {fb.ref_of(item.id)} ({fb.day_for(item, lead):%d %b %Y}, {item.status}"
             f"{', URGENT' if fb.urgent_for(item, lead) else ''})", heading=True),
        Text(item.text)]
    for m in msgs:
        blocks.append(Text(f"{'Change team' if m.sender == 'team' else 'Author'} "
                           f"({fb.message_day(m, lead):%d %b}): {m.text}"))
    if item.source in fb.PUBLIC_SOURCES:
        blocks.append(Context(f"From {fb.SOURCE_LABELS[item.source]}, on the public page. If they "
                              "asked to be contacted: families contact " + fb.ref_of(item.id)))
    else:
        blocks.append(Context("Replies possible: feedback reply " + fb.ref_of(item.id) if can_reply
                              else "The author did not allow replies (or stopped them)."))
    await ctx.reply(Message(tuple(blocks)))


def _reply_form(item: FeedbackItem) -> Form:
    return Form(
        form_id="feedback.reply", title="Reply anonymously",
        intro=(Text(f"Feedback {fb.ref_of(item.id)}: {_clip(item.text, 1500)}"),
               Context("The author gets a DM that the change team answered, and reads your "
                       "reply privately. You will not learn who they are.")),
        inputs=(TextInput("text", "Your reply", multiline=True, max_length=3000),),
        submit_label="Send reply", metadata=item.id,
    )


async def reply_cmd(ctx: Ctx, args: str) -> None:
    async with ctx.session() as s:
        item = await fb.find_item(s, args, lead=ctx.has(SAFEGUARDING_LEAD))
        if not await fb.has_handle(s, item.id):
            raise UserError("The author of this feedback did not allow replies, or has stopped "
                            "them. You can answer everyone with “you said we did”.")
    await ctx.open_form(_reply_form(item))


async def item_action(ctx: Ctx) -> None:
    """Buttons under a listed item: reply:<id> or status:<id>:<status>."""
    value = getattr(ctx.event, "value", "")
    kind, _, rest = value.partition(":")
    if kind == "reply":
        async with ctx.session() as s:
            item = await fb.find_item(s, rest, lead=ctx.has(SAFEGUARDING_LEAD))
        await ctx.open_form(_reply_form(item))
    elif kind == "status":
        item_id, _, status = rest.partition(":")
        await _set_status(ctx, item_id, status)
    else:
        raise UserError("That button is no longer active.")


async def reply_form(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    text = (ev.values.get("text") or "").strip()
    if not text:
        raise FormInvalid({"text": "Please write a reply. Nothing was sent."})
    if len(text) > 3000:
        raise FormInvalid({"text": f"That is {len(text):,} characters; the limit is 3,000."})
    await fb.reply(ctx.core, ev.metadata, ctx.person.id, text,
                   lead=ctx.has(SAFEGUARDING_LEAD))
    # The same words whether or not the author could be reached: reachability would narrow
    # who they are (a leaver, someone who blocked the app).
    await ctx.say(f"Reply saved under {fb.ref_of(ev.metadata)}. The author is told there is an "
                  "answer when the app can reach them.")


async def _set_status(ctx: Ctx, ref: str, status: str) -> None:
    async with ctx.session() as s:
        item = await fb.find_item(s, ref, lead=ctx.has(SAFEGUARDING_LEAD))
        await fb.set_status(s, item, status, lead=ctx.has(SAFEGUARDING_LEAD))
    await ctx.say(f"Feedback {fb.ref_of(item.id)} is now {status}.")


async def status_cmd(ctx: Ctx, args: str) -> None:
    words = args.split()
    if len(words) != 2:
        raise UserError(f"Usage: feedback status REF STATUS (one of {', '.join(fb.STATUSES)}).")
    await _set_status(ctx, words[0], words[1].lower())


# -- you said, we did ------------------------------------------------------------------------


async def publish_cmd(ctx: Ctx, args: str) -> None:
    """Open the "you said, we did" form for a theme."""
    key = args.strip().lower()
    async with ctx.session() as s:
        themes = await fb.themes(s)
        theme = next((t for t in themes if key and key in (t.id, t.name.lower())), None)
        if theme is None:
            names = ", ".join(t.id for t in themes)
            raise UserError(f"Which theme? Type: you said we did THEME (one of: {names}).")
    await release.release_due(ctx.core)
    async with ctx.session() as s:
        items = await fb.list_items(s, theme_id=theme.id, statuses=fb.OPEN, limit=50)
    listing = "\n".join(f"{fb.ref_of(i.id)}: {_clip(i.text, 120)}" for i in items) or "(none open)"
    form = Form(
        form_id="feedback.publish", title="You said, we did",
        intro=(Text(f"Theme: {theme.name}. Open feedback:", heading=True), Text(listing),
               Context("Your response goes to all staff, and to every author of these items who "
                       "allowed replies. Leave 'items' empty to answer all of them.")),
        inputs=(TextInput("title", "Headline", max_length=150),
                TextInput("text", "What we did", multiline=True, max_length=3000),
                TextInput("items", "Items (refs separated by spaces; empty = all listed)",
                          optional=True)),
        submit_label="Publish", metadata=theme.id,
    )
    await ctx.open_form(form)


async def publish_action(ctx: Ctx) -> None:
    await publish_cmd(ctx, getattr(ctx.event, "value", ""))


async def publish_form(ctx: Ctx) -> None:
    ev = ctx.event
    assert isinstance(ev, FormSubmitEvent)
    title = (ev.values.get("title") or "").strip()
    text = (ev.values.get("text") or "").strip()
    errors = {}
    if not title:
        errors["title"] = "Please give a headline."
    if not text:
        errors["text"] = "Please say what was done."
    if len(title) > 150 or len(text) > 3000:
        errors["text"] = "Too long: headline up to 150 and text up to 3,000 characters."
    if errors:
        raise FormInvalid(errors)
    refs = (ev.values.get("items") or "").replace(",", " ").split()
    done = await fb.publish(ctx.core, ctx.person.id, theme_id=ev.metadata, title=title, text=text,
                            refs=refs)
    # Never how many authors were told: that would say whether two items share an author.
    await ctx.say(f"Published. {done.items} item{'s' if done.items != 1 else ''} marked done; "
                  f"sent to staff ({done.staff}) and to the authors who allowed replies.")


async def home(ctx: Ctx) -> list[object]:
    return [Choices(OPEN_ACTION, (Choice("Give anonymous feedback", "open", "primary"),))]


async def _tick(core: Core, now: datetime) -> int:
    return await fb.tick(core, now)


def register(r: Router) -> None:
    from bot.feedback.section import SafeguardingSection

    r.fallback(typed_concern)
    r.outsider(outsider_concern)
    r.command("feedback", feedback_cmd, "send anonymous feedback to the change team (opens a form)",
              private=True, traceless=True)
    r.intent(r"^(?:give|send|leave) (?:some )?(?:anonymous )?feedback$", "feedback")
    r.command("feedback stop replies", stop_cmd, "stop all replies to feedback you sent",
              private=True)
    r.command("feedback list", list_cmd,
              "read feedback by theme and status (new items appear at release times)",
              usage="[families] [THEME] [STATUS|urgent|all]", roles=READERS, private=True)
    r.command("feedback show", show_cmd, "one feedback item and its thread", usage="REF", roles=READERS,
              private=True)
    r.command("feedback reply", reply_cmd, "answer a feedback author anonymously", usage="REF",
              roles=READERS)
    r.command("feedback status", status_cmd, "set a feedback item's status", usage="REF STATUS",
              roles=READERS)
    r.command("feedback publish", publish_cmd, "publish a 'you said, we did' for a theme",
              usage="THEME", roles={CHANGE_TEAM})
    r.intent(r"^you said,? we did(?: (.+))?$", "feedback publish")
    r.action(OPEN_ACTION, open_action)
    r.action("feedback.read", read_action)
    r.action("feedback.revoke", revoke_action)
    r.action("feedback.item", item_action, roles=READERS)
    r.action("feedback.publish", publish_action, roles={CHANGE_TEAM})
    # One commit per form: the submission's admission (its de-duplication key) and the
    # item's transaction are one (issue 22); the item's transaction still writes no row
    # about its sender (docs/invariants.md N4, N21).
    r.form("feedback.submit", submit_form, joins=True)
    r.form("feedback.answer", answer_form)
    r.form("feedback.reply", reply_form, roles=READERS)
    r.form("feedback.publish", publish_form, roles={CHANGE_TEAM})
    r.sections.append(SafeguardingSection())
    r.home.append(home)
    r.ticker("feedback", _tick)
    r.ticker(release.JOB, with_next_due(release.tick, release.next_due))
    # Every process writes the daily counts it holds, in batches apart from the items.
    r.worker("feedback-counts", counts.worker)

