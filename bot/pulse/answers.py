"""Where a pulse answer goes: a tap is checked, stored without a name, and the card moves on."""

from __future__ import annotations

import time
from typing import NamedTuple

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import Ctx
from bot.errors import UserError
from bot.model import ActionEvent, Context, Form, FormSubmitEvent, Message, MessageRef, TextInput
from bot.people import service as people
from bot.pulse import cards
from bot.pulse import service as pulse
from bot.pulse.cards import Where
from bot.pulse.tables import (
    PulseAnswer,
    PulseParticipation,
    PulseQuestion,
    PulseRound,
    PulseSurvey,
)

GONE = "That survey is no longer available, so nothing was saved."
NOT_YOURS = "That survey wasn't sent to you, so nothing was saved."
FORGED = "That isn't one of the answers to this question, so nothing was saved."
# Survey and questions per round, kept a little while: every tap needs them.
STATIC_TTL_S = 30.0
_STATIC: dict[str, tuple[float, PulseSurvey, list[PulseQuestion]]] = {}


def parse_target(action_id: str, prefix: str) -> tuple[str, int]:
    """'pulse.a.<round>.<pos>' -> (round id, position); UserError for anything else."""
    rid, _, pos = action_id[len(prefix):].rpartition(".")
    if not rid or not pos.isdigit() or len(pos) > 3:
        raise UserError(GONE)
    return rid, int(pos)


async def load_where(s: AsyncSession, round_id: str) -> Where:
    """The round (always fresh) with its survey and questions (cached briefly: they rarely change)."""
    rnd = await pulse.round_by_id(s, round_id)
    if rnd is None:
        raise UserError(GONE)
    return await _where(s, rnd)


async def _where(s: AsyncSession, rnd: PulseRound) -> Where:
    hit = _STATIC.get(rnd.id)
    if hit is not None and time.monotonic() - hit[0] < STATIC_TTL_S:
        return Where(hit[1], rnd, hit[2])
    survey = await pulse.survey_by_id(s, rnd.survey_id)
    if survey is None:
        raise UserError(GONE)
    questions = await pulse.questions_of_round(s, rnd)
    if len(_STATIC) > 1000:
        _STATIC.clear()
    _STATIC[rnd.id] = (time.monotonic(), survey, questions)
    return Where(survey, rnd, questions)


def is_closed(w: Where, ctx: Ctx) -> bool:
    return w.round.state != "open" or ctx.now >= w.round.closes_at


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


async def on_answer(ctx: Ctx) -> None:
    """A tap on an answer button: store it (or change it), then show the next question."""
    assert isinstance(ctx.event, ActionEvent)
    rid, pos = parse_target(ctx.event.action_id, cards.ANSWER)
    async with ctx.session() as s:
        w, mine = await _check(s, ctx, rid, pos)
        if w is not None:
            q = w.questions[pos]
            value, choice = parse_value(q, ctx.event.value)
            await pulse.save_answer(s, rnd=w.round, question_id=q.id, key=_key(ctx, rid),
                                    team_id=ctx.person.team_id, role=pulse.main_role(ctx.roles),
                                    value=value, choice=choice, person_id=ctx.person.id)
            mine[q.id] = Given(value, choice, None)
            ending = await _at_end(s, ctx, w, pos + 1)
    if w is None:
        await ctx.update(cards.closed_card())
        return
    saved = f"Saved: {cards.answer_label(q, value, choice, None)} for question {pos + 1}."
    await show(ctx, w, pos + 1, mine, saved=saved, ending=ending)


async def on_nav(ctx: Ctx) -> None:
    """Previous, Skip, Finish later, Continue, and the button that opens the comment form."""
    assert isinstance(ctx.event, ActionEvent)
    rid, pos = parse_target(ctx.event.action_id, cards.NAV)
    move = ctx.event.value
    if move not in ("prev", "skip", "later", "go", "text"):
        raise UserError(FORGED)
    target = {"prev": max(pos - 1, 0), "skip": pos + 1}.get(move, pos)
    async with ctx.session() as s:
        w, mine = await _check(s, ctx, rid, pos)
        ending = await _at_end(s, ctx, w, target) if w is not None else ""
    if w is None:
        await ctx.update(cards.closed_card())
    elif move == "later":
        await ctx.update(cards.later_card(w, pos))
    elif move == "text":
        await ctx.open_form(comment_form(w, pos))
    else:
        await show(ctx, w, target, mine, ending=ending)


def comment_form(w: Where, pos: int) -> Form:
    q = w.questions[pos]
    return Form(
        form_id=f"{cards.FORM}{w.round.id}.{pos}",
        title=w.survey.title[:24],
        inputs=(TextInput("comment", q.text[:150], multiline=True, max_length=2000),),
        intro=(Context(cards.privacy_note(w)),
               Context("This is not the way to report a concern about a child: use the usual "
                       "safeguarding routes for that.")),
        submit_label="Save",
        metadata=f"{w.round.id}.{pos}",
    )


async def on_comment(ctx: Ctx) -> None:
    """The free-text form: store the comment and move the survey message on."""
    assert isinstance(ctx.event, FormSubmitEvent)
    rid, pos = parse_target(ctx.event.form_id, cards.FORM)
    text = (ctx.event.values.get("comment") or "").strip()[:2000]
    async with ctx.session() as s:
        w, mine = await _check(s, ctx, rid, pos)
        if w is None:
            raise UserError(cards.CLOSED)
        q = w.questions[pos]
        if q.kind != "text":
            raise UserError(FORGED)
        if text:
            await pulse.save_answer(s, rnd=w.round, question_id=q.id, key=_key(ctx, rid),
                                    team_id=ctx.person.team_id, role=pulse.main_role(ctx.roles),
                                    text=text, person_id=ctx.person.id)
            mine[q.id] = Given(None, None, text)
        part = await pulse.participation(s, rid, ctx.person.id)
        live = _ref(part.message) if part and part.message else None
        ending = await _at_end(s, ctx, w, pos + 1)
    saved = f"Saved your comment for question {pos + 1}." if text else ""
    await show(ctx, w, pos + 1, mine, saved=saved, live=live, ending=ending)


class Given(NamedTuple):
    """An answer this person already gave (read back with their response key)."""

    value: int | None
    choice: str | None
    text: str | None


def _key(ctx: Ctx, rid: str) -> str:
    return pulse.response_key(ctx.core.secret, rid, ctx.person.id)


async def _check(s: AsyncSession, ctx: Ctx, rid: str, pos: int
                 ) -> tuple[Where | None, dict[str, Given]]:
    """The round if this person may answer at `pos` now (None once closed), and their answers."""
    P, A = PulseParticipation, PulseAnswer
    # One query for the round, whether this person was asked, and what they answered so far:
    # every tap runs it, so it is one round trip.
    rows = (await s.execute(
        select(PulseRound, P.person_id, A.question_id, A.value, A.choice, A.text)
        .outerjoin(P, and_(P.round_id == PulseRound.id, P.person_id == ctx.person.id))
        .outerjoin(A, and_(A.round_id == PulseRound.id, A.response_key == _key(ctx, rid)))
        .where(PulseRound.id == rid))).all()
    if not rows:
        raise UserError(GONE)
    w = await _where(s, rows[0][0])
    if rows[0][1] is None:
        raise UserError(NOT_YOURS)
    if not 0 <= pos < w.total:
        raise UserError(GONE)
    mine = {r[2]: Given(r[3], r[4], r[5]) for r in rows if r[2] is not None}
    return (None if is_closed(w, ctx) else w), mine


async def _at_end(s: AsyncSession, ctx: Ctx, w: Where, pos: int) -> str:
    """Past the last question: record completion (by response key) and say where results are."""
    if pos < w.total:
        return ""
    await pulse.mark_completed(s, w.round.id, _key(ctx, w.round.id))
    return await results_pointer(s, ctx, w)


async def show(ctx: Ctx, w: Where, pos: int, mine: dict[str, Given], *, saved: str = "",
               live: MessageRef | None = None, ending: str = "") -> None:
    """Edit the survey message to the question at `pos`, or to the thank-you after the last."""
    if pos < w.total:
        q = w.questions[pos]
        a = mine.get(q.id)
        current = cards.answer_label(q, a.value, a.choice, a.text) if a is not None else ""
        msg = cards.question_card(w, pos, current=current, saved=saved)
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
    await ctx.update(msg)


async def results_pointer(s: AsyncSession, ctx: Ctx, w: Where) -> str:
    """Where the last published results are, in words."""
    last = await pulse.last_closed_round(s, w.survey.id)
    cmd = ctx.core.router.commands.get("results")
    can_see = cmd is not None and (cmd.roles is None or bool(cmd.roles & ctx.roles))
    if last is None:
        return ("Results are shared once a round closes, and only for groups where enough "
                "people answered that nobody can be picked out.")
    closed = cards.when(last.closes_at, w.survey.timezone)
    return (f"Results of round {last.number} (closed {closed}) are published"
            + (": type results to see them." if can_see else " by the change team."))


def ref_to_json(ref: MessageRef) -> dict[str, object]:
    return {"conversation": people.conversation_to_json(ref.conversation),
            "message_id": ref.message_id}


def _ref(data: dict[str, object]) -> MessageRef:
    conv = people.conversation_from_json(data["conversation"])  # type: ignore[arg-type]
    return MessageRef(conv, str(data["message_id"]))


ref_from_json = _ref
