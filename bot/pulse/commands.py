"""Change-team commands: list surveys and rounds (counts only), open, pause, resume, close, new."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import Ctx
from bot.errors import FormInvalid, UserError
from bot.model import Choice, Fields, Form, FormSubmitEvent, Message, SelectInput, Text, TextInput
from bot.people.tables import Team
from bot.pulse import cards, definition, invitations, rounds
from bot.pulse import schedule as sched
from bot.pulse import service as pulse
from bot.pulse.tables import PulseRound, PulseSurvey

DEFINE_FORM = "pulse.define"
USAGE = "pulse [SURVEY] · pulse open|close|pause|resume SURVEY · pulse new"


async def find_survey(s: AsyncSession, name: str) -> PulseSurvey:
    """The survey called `name`, or a UserError listing the ones there are."""
    key = name.strip().lower()
    if not key:
        raise UserError(f"Which survey? Usage: {USAGE}")
    survey = await pulse.survey_by_id(s, key)
    if survey is None or not survey.active:
        known = ", ".join(x.id for x in await pulse.surveys(s)) or "none yet"
        raise UserError(f"There is no survey called '{name.strip()[:60]}'. Surveys: {known}. "
                        "Nothing was changed.")
    return survey


# A round may close before its time only once k people answered or a day has passed: closing at
# will right after a known few answered would let the change team read those few's answers.
EARLY_CLOSE_AFTER = timedelta(hours=24)


def _rate(c: pulse.Counts, *, live: bool = False) -> str:
    """Counts as the change team sees them; while a round is open, answers to the nearest 5."""
    if live:
        resp, done = pulse.rounded(c.respondents), pulse.rounded(c.finished)
        return (f"about {resp} of {c.asked} answered, about {done} finished "
                "(rounded to 5 while the round is open)")
    pct = round(100 * c.rate)
    return f"{c.respondents} of {c.asked} answered ({pct}%), {c.finished} finished"


async def _delivery(s: AsyncSession, rnd: PulseRound, c: pulse.Counts) -> str:
    """Invitations that did not reach people, as the change team sees them: while the round is
    open, how many and why by kind (bot/pulse/invitations.py); once closed, how many of those
    asked never had one (the reasons went with the ledger rows at the close, N3)."""
    if rnd.state == "open":
        missing = (await invitations.not_invited(s, rnd.id)).describe()
        return f"; {missing}" if missing else ""
    never = c.asked - c.invited
    return f"; {never} never had the invitation" if never > 0 else ""


async def _may_close_early(s: AsyncSession, rnd: PulseRound, now: datetime, tz: str) -> None:
    """UserError unless the round has k respondents or has been open a day."""
    if now >= rnd.closes_at or now >= rnd.opens_at + EARLY_CLOSE_AFTER:
        return
    k = (await pulse.thresholds(s)).min_group
    if (await pulse.counts(s, rnd.id)).respondents >= k:
        return
    raise UserError(
        f"Round {rnd.number} cannot be closed yet: fewer than {k} people have answered and it "
        f"opened less than a day ago, so closing it now could show how a known few answered. "
        f"It can be closed from {cards.when(rnd.opens_at + EARLY_CLOSE_AFTER, tz)}, and closes "
        f"by itself {cards.when(rnd.closes_at, tz)}. Nothing was changed.")


async def list_surveys(ctx: Ctx, args: str) -> None:
    """`pulse`: every survey with its open round's counts; `pulse SURVEY`: its rounds."""
    if args.strip():
        await list_rounds(ctx, args)
        return
    lines: list[str] = []
    async with ctx.session() as s:
        for sv in await pulse.surveys(s):
            state = "paused" if sv.paused else "active"
            line = (f"• {sv.id}: {sv.title} ({sched.describe(sv.schedule, sv.timezone)}; "
                    f"{sv.anonymity}; {state})")
            rnd = await pulse.open_round_of(s, sv.id)
            if rnd is not None:
                c = await pulse.counts(s, rnd.id)
                line += (f"\n   round {rnd.number} open until "
                         f"{cards.when(rnd.closes_at, sv.timezone)}: {_rate(c, live=True)}"
                         f"{await _delivery(s, rnd, c)}")
            nxt = sched.next_after(sv.schedule, sv.timezone, ctx.now) if not sv.paused else None
            if nxt is not None:
                line += f"\n   next round {cards.when(nxt, sv.timezone)}"
            lines.append(line)
    body = "\n".join(lines) or "No pulse surveys yet. Add one to the programme file or type pulse new."
    await ctx.reply(Message((Text("Pulse surveys", heading=True), Text(body)),
                            fallback=f"Pulse surveys:\n{body}"))


async def list_rounds(ctx: Ctx, args: str) -> None:
    async with ctx.session() as s:
        sv = await find_survey(s, args)
        rows: list[tuple[str, str]] = []
        for rnd in reversed((await pulse.rounds_of(s, sv.id))[-12:]):
            c = await pulse.counts(s, rnd.id)
            rows.append((f"Round {rnd.number} ({rnd.state})",
                         f"{cards.when(rnd.opens_at, sv.timezone)} to "
                         f"{cards.when(rnd.closes_at, sv.timezone)}: "
                         f"{_rate(c, live=rnd.state == 'open')}{await _delivery(s, rnd, c)}"))
    if not rows:
        await ctx.say(f"{sv.title} has had no rounds yet.")
        return
    fallback = "\n".join(f"{k}: {v}" for k, v in rows)
    await ctx.reply(Message((Text(f"{sv.title}: rounds", heading=True), Fields(tuple(rows))),
                            fallback=f"{sv.title}: rounds\n{fallback}"))


async def open_now(ctx: Ctx, args: str) -> None:
    """`pulse open SURVEY`: a round now, invitations going out straight away in working hours."""
    async with ctx.session() as s:
        sv = await find_survey(s, args)
        if sv.paused:
            raise UserError(f"{sv.id} is paused; type pulse resume {sv.id} first. Nothing was changed.")
        # A new round replaces one still open: say so, with how the old one ended.
        older = await pulse.open_round_of(s, sv.id)
        if older is not None:
            await _may_close_early(s, older, ctx.now, sv.timezone)
        rnd = await pulse.open_round(s, sv, ctx.now, ctx.core.secret)
        if rnd is None:
            raise UserError(f"{sv.id} has no questions or a round just opened. Nothing was changed.")
        replaced = (f"Round {older.number} was still open and is now closed: "
                    f"{_rate(await pulse.counts(s, older.id))}. ") if older is not None else ""
        asked = (await pulse.counts(s, rnd.id)).asked
        rid, number, closes = rnd.id, rnd.number, cards.when(rnd.closes_at, sv.timezone)
    await rounds.invite_due(ctx.core, rid, ctx.now)
    async with ctx.session() as s:
        invited = await invitations.invited(s, rid)
    await ctx.say(f"{replaced}Round {number} of {sv.title} is open until {closes}. {invited} of "
                  f"{asked} people have it now; the rest get it when their working hours start.")


async def close_now(ctx: Ctx, args: str) -> None:
    async with ctx.session() as s:
        sv = await find_survey(s, args)
        rnd = await pulse.open_round_of(s, sv.id)
        if rnd is None:
            raise UserError(f"{sv.id} has no open round. Nothing was changed.")
        await _may_close_early(s, rnd, ctx.now, sv.timezone)
        await pulse.close_round(s, rnd, ctx.now, ctx.core.secret)
        c = await pulse.counts(s, rnd.id)
    await ctx.say(f"Round {rnd.number} of {sv.title} is closed: {_rate(c)}.")


async def pause(ctx: Ctx, args: str) -> None:
    await _set_paused(ctx, args, True)


async def resume(ctx: Ctx, args: str) -> None:
    await _set_paused(ctx, args, False)


async def _set_paused(ctx: Ctx, args: str, paused: bool) -> None:
    async with ctx.session() as s:
        sv = await find_survey(s, args)
        was = sv.paused
        sv.paused = paused
    if was == paused:
        await ctx.say(f"{sv.id} was already {'paused' if paused else 'running'}.")
    elif paused:
        await ctx.say(f"{sv.id} is paused: no new rounds, invitations or reminders until you "
                      f"type pulse resume {sv.id}. Answers already given are kept.")
    else:
        await ctx.say(f"{sv.id} is running again.")


# -- defining a survey in chat -------------------------------------------------------------

QUESTION_HELP = ("One question per line (or separated by ;), each starting with its kind: "
                 "rating: TEXT (1-5) · enps: TEXT (0-10) · yesno: TEXT · "
                 "choice: TEXT | option | option · text: TEXT (optional comment)")
KIND_WORDS = {"rating": "likert5", "likert": "likert5", "likert5": "likert5", "enps": "enps",
              "yesno": "yesno", "yes/no": "yesno", "choice": "choice", "text": "text",
              "comment": "text"}


def define_form() -> Form:
    opt = True  # blank means the default, so the console can skip with Enter
    return Form(
        form_id=DEFINE_FORM, title="New pulse survey", submit_label="Create",
        intro=(Text("The survey starts with its next scheduled time; type pulse open ID to "
                    "start a round straight away."),),
        inputs=(
            TextInput("id", "Short id (lower-case letters, digits, dashes)", max_length=64),
            TextInput("title", "Title people see", max_length=200),
            SelectInput("every", "How often", tuple(Choice(e, e) for e in sched.EVERY),
                        initial="weekly"),
            TextInput("when", "When: 'mon 10:00', monthly '1st mon 10:00', or a cron "
                      "expression like '0 10 * * mon'", max_length=100),
            TextInput("timezone", "Time zone (blank: Europe/London)", optional=opt),
            TextInput("audience", "Who: everyone (blank), or team ids and roles, comma-separated",
                      optional=opt),
            TextInput("reminder_after", "Reminder after (blank: 2d)", optional=opt),
            TextInput("close_after", "Close after (blank: 4d)", optional=opt),
            SelectInput("anonymity", "Anonymity", (Choice("anonymous", "anonymous"),
                                                   Choice("attributed", "attributed")),
                        optional=opt, initial="anonymous"),
            TextInput("questions", QUESTION_HELP, multiline=True, max_length=5000),
        ),
    )


async def new_survey(ctx: Ctx, args: str) -> None:
    await ctx.open_form(define_form())


def _schedule_from(every: str, when: str) -> dict[str, Any]:
    if every == "cron":
        return {"every": "cron", "cron": when}
    parts = when.split()
    if not parts:
        return {"every": every}
    time = parts[-1] if ":" in parts[-1] else "10:00"
    day = " ".join(parts[:-1] if ":" in parts[-1] else parts)
    return {"every": every, "time": time, **({"day": day} if day else {})}


def _audience_from(text: str, teams: set[str]) -> Any:
    words = [w.strip() for w in text.replace(";", ",").split(",") if w.strip()]
    if not words or words == ["everyone"]:
        return "everyone"
    roles = [w.replace(" ", "_") for w in words if w not in teams]
    return {"teams": [w for w in words if w in teams], "roles": roles}


def _questions_from(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in (x.strip() for x in text.replace(";", "\n").splitlines()):
        if not line:
            continue
        kind_word, sep, rest = line.partition(":")
        kind = KIND_WORDS.get(kind_word.strip().lower()) if sep else None
        q: dict[str, Any] = {"id": f"q{len(out) + 1}", "kind": kind or kind_word.strip()[:20],
                             "text": rest.strip() if sep else line}
        if kind == "choice":
            head, *opts = [p.strip() for p in rest.split("|")]
            q["text"], q["choices"] = head, opts
        out.append(q)
    return out


FIELD_OF = {"id": "id", "title": "title", "schedule": "when", "timezone": "timezone",
            "audience": "audience", "reminder_after": "reminder_after",
            "close_after": "close_after", "anonymity": "anonymity", "questions": "questions"}


async def on_define(ctx: Ctx) -> None:
    """The `pulse new` form: checked like the programme file; problems shown by the fields."""
    assert isinstance(ctx.event, FormSubmitEvent)
    v = {k: (x or "").strip() for k, x in ctx.event.values.items()}
    async with ctx.session() as s:
        teams = set((await s.execute(select(Team.id))).scalars())
        raw = {
            "id": v.get("id", ""), "title": v.get("title", ""),
            "schedule": _schedule_from(v.get("every") or "weekly", v.get("when", "")),
            "timezone": v.get("timezone") or "Europe/London",
            "audience": _audience_from(v.get("audience", ""), teams),
            "reminder_after": v.get("reminder_after") or "2d",
            "close_after": v.get("close_after") or "4d",
            "anonymity": v.get("anonymity") or "anonymous",
            "questions": _questions_from(v.get("questions", "")),
        }
        errors: dict[str, str] = {}

        def report(path: tuple[str | int, ...], msg: str) -> None:
            name = FIELD_OF.get(str(path[0]), "_") if path else "_"
            where = f"question {int(path[1]) + 1}: " if len(path) > 1 and path[0] == "questions" else ""
            errors.setdefault(name, where + msg)

        d = definition.check(raw, report, teams=teams)
        if d is not None and await pulse.survey_by_id(s, d.id) is not None:
            errors["id"] = f"a survey called '{d.id}' exists already; choose another id"
        if errors or d is None:
            raise FormInvalid(errors or {"_": "the survey could not be read"})
        d.starts_at = ctx.now  # no back-dated round for a survey made just now
        await pulse.store_definition(s, d, source="chat")
        nxt = sched.next_after(d.schedule, d.timezone, ctx.now)
    when = cards.when(nxt, d.timezone) if nxt else "never"
    await ctx.say(f"Created {d.id}: {d.title}, {len(d.questions)} questions, "
                  f"{sched.describe(d.schedule, d.timezone)}. First round: {when}. "
                  f"Type pulse open {d.id} to start one now.")
