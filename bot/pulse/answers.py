"""Where a pulse answer goes: a tap is checked, stored without a name, and the card moves on."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.core import Ctx
from bot.errors import UserError
from bot.feedback import identifiers, safeguarding
from bot.model import (
    ActionEvent,
    Context,
    Form,
    FormSubmitEvent,
    Message,
    MessageRef,
    Text,
    TextInput,
)
from bot.people import service as people
from bot.port import PlatformError
from bot.programme.core_sections import get_setting_as
from bot.pulse import cards
from bot.pulse import service as pulse
from bot.pulse.cards import Where
from bot.pulse.tables import PulseQuestion, PulseRound
from storage.retry import DATABASE_BUSY

log = logging.getLogger("staffvoice.pulse")

GONE = "That survey is no longer available, so nothing was saved."
NOT_YOURS = "That survey wasn't sent to you, so nothing was saved."
FORGED = "That isn't one of the answers to this question, so nothing was saved."
# A round with its survey and questions, kept a little while: every tap needs them. Whether the
# round is still open is always read fresh.
STATIC_TTL_S = 30.0
_STATIC: dict[str, tuple[float, Where]] = {}


class Closed(Exception):
    """The round closed: roll back whatever the tap wrote and say so."""


def parse_target(action_id: str, prefix: str) -> tuple[str, int]:
    """'pulse.a.<round>.<pos>' -> (round id, position); UserError for anything else."""
    rid, _, pos = action_id[len(prefix):].rpartition(".")
    if not rid or not pos.isdigit() or len(pos) > 3:
        raise UserError(GONE)
    return rid, int(pos)


def parse_value(q: PulseQuestion, raw: str) -> tuple[int | None, str | None]:
    """The (value, choice) a button means; UserError for a value the question never offered."""
    if not raw.isdigit() or len(raw) > 3:
        raise UserError(FORGED)
    n = int(raw)
    if q.kind == "likert5" and 1 <= n <= 5:
        return n, None
    if q.kind == "enps" and 0 <= n <= 10:
        return n, None
    if q.kind == "yesno" and n in (0, 1):
        return n, None
    choices = q.options.get("choices", [])
    if q.kind == "choice" and n < len(choices):
        return None, choices[n]
    raise UserError(FORGED)


async def load_where(s: AsyncSession, round_id: str) -> Where:
    """The round (always fresh) with its survey and questions (cached briefly)."""
    rnd = await pulse.round_by_id(s, round_id)
    if rnd is None:
        raise UserError(GONE)
    return await _where(s, rnd)


async def _where(s: AsyncSession, rnd: PulseRound) -> Where:
    hit = _STATIC.get(rnd.id)
    if hit is not None and time.monotonic() - hit[0] < STATIC_TTL_S:
        return Where(hit[1].survey, rnd, hit[1].questions)
    survey = await pulse.survey_by_id(s, rnd.survey_id)
    if survey is None:
        raise UserError(GONE)
    w = Where(survey, rnd, await pulse.questions_of_round(s, rnd))
    if len(_STATIC) > 1000:
        _STATIC.clear()
    _STATIC[rnd.id] = (time.monotonic(), w)
    return w


async def _known_where(ctx: Ctx, rid: str, pos: int) -> Where:
    """The round's questions before any transaction (from the cache, else a short read)."""
    hit = _STATIC.get(rid)
    if hit is not None and time.monotonic() - hit[0] < STATIC_TTL_S:
        w = hit[1]
    else:
        async with ctx.session() as s:
            w = await load_where(s, rid)
    if not 0 <= pos < w.total:
        raise UserError(GONE)
    return w


async def on_answer(ctx: Ctx) -> None:
    """A tap on an answer button: store it (or change it), then show the next question."""
    assert isinstance(ctx.event, ActionEvent)
    rid, pos = parse_target(ctx.event.action_id, cards.ANSWER)
    known = await _known_where(ctx, rid, pos)
    q = known.questions[pos]
    value, choice = parse_value(q, ctx.event.value)

    async def store() -> tuple[Where, frozenset[str], str]:
        async with ctx.connection() as conn:  # continues the dispatcher's: one commit a tap
            rk = await _round_key(conn, ctx, rid)
            # Write first, then check, rolling back if the tap may not count: the transaction
            # then holds SQLite's write lock from its first statement (no stale read to upgrade).
            await pulse.save_answer(conn, rnd=known.round, question_id=q.id, key=rk.key,
                                    round_secret=rk.secret, value=value, choice=choice,
                                    room=pulse.answer_room(q))
            w, mine = await _check(conn, ctx, known, pos, rk)
            return w, mine, await _at_end(conn, ctx, w, pos + 1, rk)

    try:
        w, mine, ending = await DATABASE_BUSY.run(store)
    except Closed:
        await _replace(ctx, cards.closed_card())
        return
    # Never the value: the platform keeps every version of this message by name (N19).
    saved = f"Saved your answer to question {pos + 1}."
    await show(ctx, w, pos + 1, mine, saved=saved, ending=ending)


async def on_nav(ctx: Ctx) -> None:
    """Previous, Skip, Finish later, Continue, and the button that opens the comment form."""
    assert isinstance(ctx.event, ActionEvent)
    rid, pos = parse_target(ctx.event.action_id, cards.NAV)
    move = ctx.event.value
    if move not in ("prev", "skip", "later", "go", "text"):
        raise UserError(FORGED)
    target = {"prev": max(pos - 1, 0), "skip": pos + 1}.get(move, pos)
    known = await _known_where(ctx, rid, pos)

    async def look() -> tuple[Where, frozenset[str], str]:
        async with ctx.session() as s:
            rk = await _round_key(s, ctx, rid)
            w, mine = await _check(s, ctx, known, pos, rk)
            return w, mine, await _at_end(s, ctx, w, target, rk)

    try:
        w, mine, ending = await DATABASE_BUSY.run(look)
    except Closed:
        await _replace(ctx, cards.closed_card())
        return
    if move == "later":
        await _replace(ctx, cards.later_card(w, pos))
    elif move == "text":
        await ctx.open_form(comment_form(w, pos))
    else:
        await show(ctx, w, target, mine, ending=ending)


def comment_form(w: Where, pos: int, *, text: str = "", warnings: list[str] | None = None,
                 routes: safeguarding.Config | None = None) -> Form:
    """The comment form; with `warnings` (identifiers found, or what looks like a safeguarding
    concern: then with the programme's `routes`), the "before you save" version."""
    q = w.questions[pos]
    concerns = [x for x in warnings or () if x in safeguarding.CATEGORIES]
    ids = [x for x in warnings or () if x not in safeguarding.CATEGORIES]
    check: tuple[Text | Context, ...] = ()
    if concerns and routes is not None:
        # A comment is read only once the round has closed, and only where enough people
        # commented: a disclosure here may never be read. The sender is shown where to go
        # now, as the feedback form shows it ("Before you send"), and may still save it.
        check += (Text(f"Before you save: your comment may describe a safeguarding concern "
                       f"({safeguarding.describe(concerns)}). Survey comments are not read until "
                       "the round closes, and only if enough people comment, so nobody may ever "
                       "read it: please use one of these routes now."),
                  *safeguarding.route_blocks(routes))
    if ids:
        check += (Context(f"Before you save: your comment may contain {identifiers.describe(ids)}, "
                          "which could identify you or someone else. Edit it, or press Save to keep "
                          "it as it is."),)
    return Form(
        form_id=f"{cards.FORM}{w.round.id}.{pos}",
        title=w.survey.title[:24],
        inputs=(TextInput("comment", q.text[:150], multiline=True, max_length=2000, initial=text),),
        intro=(*check, Context(cards.privacy_note(w)),
               Context("This is not the way to report a concern about a child: use the usual "
                       "safeguarding routes for that.")),
        submit_label="Save",
        metadata=f"{w.round.id}.{pos}" + (":ack:" + ",".join(warnings) if warnings else ""),
    )


async def on_comment(ctx: Ctx) -> None:
    """The free-text form: store the comment and move the survey message on."""
    assert isinstance(ctx.event, FormSubmitEvent)
    rid, pos = parse_target(ctx.event.form_id, cards.FORM)
    text = (ctx.event.values.get("comment") or "").strip()[:2000]
    known = await _known_where(ctx, rid, pos)
    q = known.questions[pos]
    if q.kind != "text":
        raise UserError(FORGED)
    # Checked for identifying details as feedback is, and for what looks like a safeguarding
    # concern (shown the routes); the person edits or keeps it.
    found: list[str] = []
    routes = None
    if text:
        async with ctx.session() as s:
            routes = await get_setting_as(s, "safeguarding", safeguarding.Config.from_setting)
        found = safeguarding.concerns(text, routes) + identifiers.findings(text)
    acked = set(ctx.event.metadata.partition(":ack:")[2].split(","))
    if found and not set(found) <= acked:
        await ctx.open_form(comment_form(known, pos, text=text, warnings=found, routes=routes))
        return

    async def store() -> tuple[Where, frozenset[str], str, MessageRef | None]:
        async with ctx.session() as s:
            rk = await _round_key(s, ctx, rid)
            if text:
                await pulse.save_answer(s, rnd=known.round, question_id=q.id, key=rk.key,
                                        round_secret=rk.secret, text=text)
            w, mine = await _check(s, ctx, known, pos, rk)
            part = await pulse.participation(s, rid, ctx.person.id)
            live = _ref(part.message) if part and part.message else None
            return w, mine, await _at_end(s, ctx, w, pos + 1, rk), live

    try:
        w, mine, ending, live = await DATABASE_BUSY.run(store)
    except Closed:
        raise UserError(cards.CLOSED) from None
    # The card moves on as after Skip, comment or none: the platform's copy of the DM would
    # otherwise say who wrote one of a team's few comments (N19).
    await show(ctx, w, pos + 1, mine, live=live, ending=ending)


class RoundKey(NamedTuple):
    """An open round's secret and this person's response key under it."""

    secret: bytes
    key: str


async def _round_key(s: AsyncSession | AsyncConnection, ctx: Ctx, rid: str) -> RoundKey:
    """Closed once the round's secret is gone (it is destroyed when the round closes)."""
    secret = await pulse.round_secret(s, rid, ctx.core.secret)
    if secret is None:
        raise Closed()
    return RoundKey(secret, pulse.response_key(secret, ctx.person.id))


async def _check(s: AsyncSession | AsyncConnection, ctx: Ctx, known: Where, pos: int,
                 rk: RoundKey) -> tuple[Where, frozenset[str]]:
    """The round and the questions this person answered so far, if they may answer at `pos`
    now (which, never what: the answers stay sealed).

    UserError (rolling back the transaction) if not; Closed once the round has closed.
    """
    rid = known.round.id
    rows = await pulse.respondent(s, rid, ctx.person.id, rk.key)
    if not rows:
        raise UserError(GONE)
    state, closes_at, asked = rows[0][0], rows[0][1], rows[0][2]
    if asked is None:
        raise UserError(NOT_YOURS)
    if not 0 <= pos < known.total:
        raise UserError(GONE)
    if state != "open" or ctx.now >= closes_at:
        raise Closed()
    return known, frozenset(r[3] for r in rows if r[3] is not None)


async def _at_end(s: AsyncSession | AsyncConnection, ctx: Ctx, w: Where, pos: int,
                  rk: RoundKey) -> str:
    """Past the last question: record completion (by response key) and say where results are."""
    if pos < w.total:
        return ""
    await pulse.mark_completed(s, w.round.id, rk.key)
    return await results_pointer(s, ctx, w)


async def show(ctx: Ctx, w: Where, pos: int, mine: frozenset[str], *, saved: str = "",
               live: MessageRef | None = None, ending: str = "") -> None:
    """Edit the survey message to the question at `pos`, or to the thank-you after the last."""
    if pos < w.total:
        q = w.questions[pos]
        # Whether they answered, never what (nor whether they wrote a comment): N19.
        answered = q.id in mine and q.kind != "text"
        msg = cards.question_card(w, pos, answered=answered, saved=saved)
    else:
        skipped = sum(1 for q in w.questions if q.id not in mine and q.kind != "text")
        msg = cards.thanks_card(w, results=ending, results_url=w.survey.results_url,
                                skipped=skipped, saved=saved)
    await _edit(ctx, msg, live)


async def _edit(ctx: Ctx, msg: Message, live: MessageRef | None) -> None:
    if getattr(ctx.event, "message", None) is None and live is not None:
        try:
            await ctx.core.update(live, msg)
            return
        except Exception:  # the old message is gone: say it afresh instead
            pass
    await _replace(ctx, msg)


async def _replace(ctx: Ctx, msg: Message) -> None:
    """Show `msg` in place of the tapped card; as a new message when the platform will not
    edit it (Slack: message_not_found, cant_update_message, edit_window_closed; Teams: 404).

    By now the answer is saved: a failed edit must not end in the core's "nothing was saved".
    If the platform takes no new message either, the person still has the old card, whose
    taps are safe to repeat."""
    try:
        await ctx.update(msg)
        return
    except PlatformError as e:
        log.info("pulse card not edited; sent afresh", extra={"error": str(e)[:200]})
    try:
        await ctx.reply(msg)
    except PlatformError as e:
        log.warning("pulse card could not be shown; the answer is saved",
                    extra={"error": str(e)[:200]})


async def results_pointer(s: AsyncSession | AsyncConnection, ctx: Ctx, w: Where) -> str:
    """Where the last published results are, in words."""
    last = await pulse.last_closed(s, w.survey.id)
    cmd = ctx.core.router.commands.get("results")
    can_see = cmd is not None and (cmd.roles is None or bool(cmd.roles & ctx.roles))
    if last is None:
        return ("Results are shared once a round closes, and only for groups where enough "
                "people answered that nobody can be picked out.")
    number, closes_at = last
    closed = cards.when(closes_at, w.survey.timezone)
    return (f"Results of round {number} (closed {closed}) are published"
            + (": type results to see them." if can_see else " by the change team."))


def ref_to_json(ref: MessageRef) -> dict[str, object]:
    return {"conversation": people.conversation_to_json(ref.conversation),
            "message_id": ref.message_id}


def _ref(data: dict[str, object]) -> MessageRef:
    conv = people.conversation_from_json(data["conversation"])  # type: ignore[arg-type]
    return MessageRef(conv, str(data["message_id"]))


ref_from_json = _ref
