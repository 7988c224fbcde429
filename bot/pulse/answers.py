"""Where a pulse answer goes: a tap is checked, stored without a name, and the card moves on."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import Core, Ctx
from bot.errors import UserError
from bot.model import ActionEvent, Context, Form, FormSubmitEvent, Message, MessageRef, TextInput
from bot.people import service as people
from bot.pulse import cards
from bot.pulse import service as pulse
from bot.pulse.cards import Where
from bot.pulse.tables import PulseQuestion

GONE = "That survey is no longer available, so nothing was saved."
NOT_YOURS = "That survey wasn't sent to you, so nothing was saved."
FORGED = "That isn't one of the answers to this question, so nothing was saved."


def parse_target(action_id: str, prefix: str) -> tuple[str, int]:
    """'pulse.a.<round>.<pos>' -> (round id, position); UserError for anything else."""
    rid, _, pos = action_id[len(prefix):].rpartition(".")
    if not rid or not pos.isdigit() or len(pos) > 3:
        raise UserError(GONE)
    return rid, int(pos)


async def load_where(s: AsyncSession, round_id: str) -> Where:
    rnd = await pulse.round_by_id(s, round_id)
    survey = await pulse.survey_by_id(s, rnd.survey_id) if rnd else None
    if rnd is None or survey is None:
        raise UserError(GONE)
    return Where(survey, rnd, await pulse.questions_of_round(s, rnd))


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
        w = await _check(s, ctx, rid, pos)
        if w is None:
            await ctx.update(cards.closed_card())
            return
        q = w.questions[pos]
        value, choice = parse_value(q, ctx.event.value)
        key = pulse.response_key(ctx.core.secret, rid, ctx.person.id)
        await pulse.save_answer(s, rnd=w.round, question_id=q.id, key=key,
                                team_id=ctx.person.team_id, role=pulse.main_role(ctx.roles),
                                value=value, choice=choice, person_id=ctx.person.id)
        mine = await pulse.answers_by_key(s, rid, key)
    saved = f"Saved: {cards.answer_label(q, value, choice, None)} for question {pos + 1}."
    await show(ctx, w, pos + 1, mine, saved=saved)


async def on_nav(ctx: Ctx) -> None:
    """Previous, Skip, Finish later, Continue, and the button that opens the comment form."""
    assert isinstance(ctx.event, ActionEvent)
    rid, pos = parse_target(ctx.event.action_id, cards.NAV)
    move = ctx.event.value
    if move not in ("prev", "skip", "later", "go", "text"):
        raise UserError(FORGED)
    async with ctx.session() as s:
        w = await _check(s, ctx, rid, pos)
        if w is None:
            await ctx.update(cards.closed_card())
            return
        key = pulse.response_key(ctx.core.secret, rid, ctx.person.id)
        mine = await pulse.answers_by_key(s, rid, key)
    if move == "later":
        await ctx.update(cards.later_card(w, pos))
    elif move == "text":
        await ctx.open_form(comment_form(w, pos))
    else:
        target = {"prev": max(pos - 1, 0), "skip": pos + 1, "go": pos}[move]
        await show(ctx, w, target, mine)


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
        w = await _check(s, ctx, rid, pos)
        if w is None:
            raise UserError(cards.CLOSED)
        q = w.questions[pos]
        if q.kind != "text":
            raise UserError(FORGED)
        key = pulse.response_key(ctx.core.secret, rid, ctx.person.id)
        if text:
            await pulse.save_answer(s, rnd=w.round, question_id=q.id, key=key,
                                    team_id=ctx.person.team_id, role=pulse.main_role(ctx.roles),
                                    text=text, person_id=ctx.person.id)
        mine = await pulse.answers_by_key(s, rid, key)
        part = await pulse.participation(s, rid, ctx.person.id)
        live = _ref(part.message) if part and part.message else None
    saved = f"Saved your comment for question {pos + 1}." if text else ""
    await show(ctx, w, pos + 1, mine, saved=saved, live=live)


async def _check(s: AsyncSession, ctx: Ctx, rid: str, pos: int) -> Where | None:
    """The round if this person may answer at `pos` now; None once it has closed."""
    w = await load_where(s, rid)
    if await pulse.participation(s, rid, ctx.person.id) is None:
        raise UserError(NOT_YOURS)
    if not 0 <= pos < w.total:
        raise UserError(GONE)
    return None if is_closed(w, ctx) else w


async def show(ctx: Ctx, w: Where, pos: int, mine: dict[str, object], *, saved: str = "",
               live: MessageRef | None = None) -> None:
    """Edit the survey message to the question at `pos`, or to the thank-you after the last."""
    if pos < w.total:
        q = w.questions[pos]
        a = mine.get(q.id)
        current = cards.answer_label(q, a.value, a.choice, a.text) if a is not None else ""  # type: ignore[attr-defined]
        msg = cards.question_card(w, pos, current=current, saved=saved)
    else:
        skipped = sum(1 for q in w.questions if q.id not in mine and q.kind != "text")
        msg = cards.thanks_card(w, results=await results_pointer(ctx, w),
                                results_url=w.survey.results_url, skipped=skipped, saved=saved)
        await _finished(ctx.core, w.round.id, ctx.person.id)
    await _edit(ctx, msg, live)


async def _edit(ctx: Ctx, msg: Message, live: MessageRef | None) -> None:
    if getattr(ctx.event, "message", None) is None and live is not None:
        try:
            await ctx.core.update(live, msg)
            return
        except Exception:  # the old message is gone: say it afresh instead
            pass
    await ctx.update(msg)


async def _finished(core: Core, round_id: str, person_id: str) -> None:
    # Its own transaction, apart from the answer's, so the two rows never share one.
    async with core.db.session() as s:
        part = await pulse.participation(s, round_id, person_id)
        if part is not None and not part.finished:
            part.finished = True


async def results_pointer(ctx: Ctx, w: Where) -> str:
    """Where the last published results are, in words."""
    async with ctx.session() as s:
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
