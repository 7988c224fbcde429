"""The pulse ticker: open rounds that are due, invite in working hours, remind once, close.

Everything is derived from the tables on each tick, so a restart (or a missed tick) loses
nothing: a round whose fire time passed while the bot was down still opens if its window is
open, and whoever was not invited yet is invited at their next working moment.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from bot.core import Core
from bot.people.tables import Person
from bot.port import RateLimited, TransientError
from bot.programme.core_sections import get_setting
from bot.pulse import cards
from bot.pulse import schedule as sched
from bot.pulse import service as pulse
from bot.pulse.answers import load_where, ref_from_json, ref_to_json
from bot.pulse.cards import Where
from bot.pulse.tables import PulseParticipation, PulseRound, PulseSurvey
from bot.workhours import Pattern, is_working_moment

log = logging.getLogger("staffvoice.pulse")
# Bound the work of one tick; whoever is left is invited on the next.
BATCH = 2000


async def tick(core: Core, now: datetime) -> int:
    """Run whatever pulse work is due at `now`; returns how many things were done."""
    done = await close_due_rounds(core, now)
    done += await open_due_rounds(core, now)
    async with core.db.session() as s:
        rows = (await s.execute(
            select(PulseRound.id).join(PulseSurvey, PulseSurvey.id == PulseRound.survey_id)
            .where(PulseRound.state == "open", PulseSurvey.paused.is_(False)))).scalars().all()
    for rid in rows:
        done += await invite_due(core, rid, now)
        done += await remind_due(core, rid, now)
    return done


async def open_due_rounds(core: Core, now: datetime) -> int:
    opened = 0
    async with core.db.session() as s:
        for survey in await pulse.surveys(s):
            if survey.paused:
                continue
            try:
                due = sched.latest_due(survey.schedule, survey.timezone, now,
                                       survey.close_after_min)
            except sched.ScheduleError:
                log.warning("survey schedule unreadable", extra={"survey": survey.id})
                continue
            if due is None or (survey.starts_at is not None and due < survey.starts_at):
                continue
            latest = await pulse.latest_opening(s, survey.id)
            if latest is not None and latest >= due:
                continue  # this fire time's round (or a later, manual one) exists
            if await pulse.open_round(s, survey, due, core.secret) is not None:
                opened += 1
    return opened


async def close_due_rounds(core: Core, now: datetime) -> int:
    async with core.db.session() as s:
        due = (await s.execute(select(PulseRound).where(
            PulseRound.state == "open", PulseRound.closes_at <= now))).scalars().all()
        for rnd in due:
            await pulse.close_round(s, rnd, now, core.secret)
    return len(due)


async def _pending(core: Core, round_id: str, now: datetime, *, reminders: bool
                   ) -> tuple[Where | None, list[tuple[PulseParticipation, Person]]]:
    """The round and the people due an invitation (or a reminder) who are at work now."""
    P = PulseParticipation
    async with core.db.session() as s:
        w = await load_where(s, round_id)
        if w.round.state != "open" or now >= w.round.closes_at or now < w.round.opens_at:
            return None, []
        q = select(P, Person).join(Person, Person.id == P.person_id).where(
            P.round_id == round_id, P.unreachable.is_(False))
        if reminders:
            if now < w.round.remind_at:
                return None, []
            q = q.where(P.invited_at.is_not(None), P.invited_at < w.round.remind_at,
                        P.finished.is_(False), P.reminded.is_(False))
        else:
            q = q.where(P.invited_at.is_(None))
        rows = [(p, person) for p, person in (await s.execute(q)).all()]
        prog = await get_setting(s, "programme", {})
    at_work = [
        (p, person) for p, person in rows
        if is_working_moment(Pattern.from_settings(prog, person.tz, person.work_pattern), now)
    ]
    return w, at_work[:BATCH]  # bounded after the hours filter, so nobody at work waits behind


async def invite_due(core: Core, round_id: str, now: datetime) -> int:
    """DM the first question to everyone not yet invited who is at work now."""
    w, people = await _pending(core, round_id, now, reminders=False)
    if w is None:
        return 0
    card = cards.question_card(w, 0, lead=w.survey.intro or f"{w.survey.title} is open.")
    sent = 0
    for _part, person in people:
        try:
            ref = await core.dm(person.id, card)
        except (RateLimited, TransientError):
            log.info("platform busy: the rest are invited on the next tick")
            break
        async with core.db.session() as s:
            row = await pulse.participation(s, round_id, person.id)
            if row is None:
                continue
            if ref is None:
                row.unreachable = True
            else:
                row.invited_at, row.message = now, ref_to_json(ref)
                sent += 1
    return sent


async def remind_due(core: Core, round_id: str, now: datetime) -> int:
    """Once, to the invited who have not finished, at the survey where they left off."""
    w, people = await _pending(core, round_id, now, reminders=True)
    if w is None:
        return 0
    async with core.db.session() as s:
        await pulse.sync_finished(s, round_id, core.secret)
        done = await pulse.completed_keys(s, round_id)
    sent = 0
    for part, person in people:
        if pulse.response_key(core.secret, round_id, person.id) in done:
            continue
        async with core.db.session() as s:
            key = pulse.response_key(core.secret, round_id, person.id)
            mine = await pulse.answers_by_key(s, round_id, key)
        pos = next((i for i, q in enumerate(w.questions) if q.id not in mine), 0)
        if part.message:
            try:  # the old message stops offering buttons, so only one survey card is live
                await core.update(ref_from_json(part.message), cards.moved_card(w))
            except Exception:
                log.info("could not edit an old survey message")
        try:
            ref = await core.dm(person.id, cards.question_card(w, pos, lead=cards.reminder_lead(w)))
        except (RateLimited, TransientError):
            break
        async with core.db.session() as s:
            row = await pulse.participation(s, round_id, person.id)
            if row is not None:
                row.reminded = True
                if ref is not None:
                    row.message = ref_to_json(ref)
                    sent += 1
    return sent
