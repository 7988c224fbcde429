"""The pulse ticker: open rounds that are due, invite in working hours, remind once, close.

Everything is derived from the tables on each tick, so a restart (or a missed tick) loses
nothing: a round whose fire time passed while the bot was down still opens if its window is
open, and whoever was not invited yet is invited at their next working moment.

After downtime: a round opened late, invitations sent late and a round closed late are
recorded as caught up; a round whose whole window passed while down is recorded as skipped;
a reminder found more than REMIND_GRACE after the person's send time (or after the round
closed) is skipped and recorded, not sent: a nudge a day late confuses more than it helps.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.broadcasts import ledger
from bot.broadcasts.sender import Sender
from bot.core import Core
from bot.people.tables import Person
from bot.port import PlatformError, RateLimited, TransientError
from bot.programme.core_sections import get_setting
from bot.pulse import cards, invitations
from bot.pulse import schedule as sched
from bot.pulse import service as pulse
from bot.pulse.answers import load_where, ref_from_json, ref_to_json
from bot.pulse.cards import Where
from bot.pulse.tables import PulseParticipation, PulseRound, PulseSurvey
from bot.scheduling.jobs import (
    DEFAULT_GRACE,
    fell_in_gap,
    note,
    once,
    previous_run,
    soonest,
    too_late,
)
from bot.scheduling.prompts import send_time
from bot.workhours import Pattern, is_working_moment, next_working_moment

log = logging.getLogger("staffvoice.pulse")
# Bound the work of one tick; whoever is left is invited on the next.
BATCH = 2000
JOB = "pulse"  # the scheduler's name for this ticker (its records of late work use it)
# A reminder found later than this after the person's send time is skipped, not sent.
REMIND_GRACE = DEFAULT_GRACE


async def tick(core: Core, now: datetime) -> int:
    """Run whatever pulse work is due at `now`; returns how many things were done."""
    done = await close_due_rounds(core, now)
    done += await open_due_rounds(core, now)
    async with core.db.session() as s:
        live = (await s.execute(
            select(PulseRound, PulseSurvey).join(PulseSurvey, PulseSurvey.id == PulseRound.survey_id)
            .where(PulseRound.state == "open", PulseSurvey.paused.is_(False)))).all()
        rows = [rnd.id for rnd, _sv in live]
        for rnd, survey in live:  # joiners, and people who installed since the round opened
            if now < rnd.closes_at:
                await pulse.admit_latecomers(s, rnd, survey)
    for rid in rows:
        done += await invite_due(core, rid, now)
        done += await remind_due(core, rid, now)
    return done


async def open_due_rounds(core: Core, now: datetime) -> int:
    opened = 0
    late: list[tuple[str, datetime, str]] = []  # noted after the session: SQLite has one writer
    async with core.db.session() as s:
        for survey in await pulse.surveys(s):
            if survey.paused:
                continue
            try:
                due = sched.latest_due(survey.schedule, survey.timezone, now,
                                       survey.close_after_min)
                late += await _windows_missed(s, survey, now)
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
                if fell_in_gap(due, now):
                    late.append((f"open:{survey.id}:{due:%Y%m%dT%H%M}", due, "caught-up"))
    for key, due, outcome in late:
        await note(core, JOB, key, due, now, outcome)
    return opened


async def _windows_missed(s: Any, survey: PulseSurvey, now: datetime
                          ) -> list[tuple[str, datetime, str]]:
    """Fire times whose whole window (open to close) passed while the process was down."""
    prev = previous_run()
    if prev is None:
        return []
    window = timedelta(minutes=survey.close_after_min)
    times = sched.fire_times(survey.schedule, survey.timezone, max(prev, now - timedelta(days=8)),
                             now - window)
    if not times:
        return []
    latest = await pulse.latest_opening(s, survey.id)
    return [(f"open:{survey.id}:{t:%Y%m%dT%H%M}", t, "skipped") for t in times
            if (survey.starts_at is None or t >= survey.starts_at)
            and (latest is None or latest < t)]


async def close_due_rounds(core: Core, now: datetime) -> int:
    async with core.db.session() as s:
        due = (await s.execute(select(PulseRound).where(
            PulseRound.state == "open", PulseRound.closes_at <= now))).scalars().all()
        late = [(r.id, r.closes_at) for r in due if fell_in_gap(r.closes_at, now)]
        for rnd in due:
            await pulse.close_round(s, rnd, now, core.secret)
        await pulse.summarise_missing(s)  # rounds an older replica closed, during an upgrade
    for rid, at in late:
        await note(core, JOB, f"close:{rid}", at, now, "caught-up")
    return len(due)


async def _reminders(core: Core, round_id: str, now: datetime
                     ) -> tuple[Where | None, list[tuple[PulseParticipation, Person, Pattern]]]:
    """The round and the people due a reminder who are at work now."""
    P = PulseParticipation
    async with core.db.session() as s:
        w = await load_where(s, round_id)
        if w.round.state != "open" or now >= w.round.closes_at or now < w.round.opens_at:
            return None, []
        q = select(P, Person).join(Person, Person.id == P.person_id).where(
            P.round_id == round_id, P.unreachable.is_(False), Person.left_on.is_(None))
        if now < w.round.remind_at:
            return None, []
        q = q.where(P.invited_at.is_not(None), P.invited_at < w.round.remind_at,
                    P.finished.is_(False), P.reminded.is_(False))
        rows = [(p, person) for p, person in (await s.execute(q)).all()]
        prog = await get_setting(s, "programme", {})
    with_hours = [(p, person, Pattern.from_settings(prog, person.tz, person.work_pattern))
                  for p, person in rows]
    at_work = [(p, person, hours) for p, person, hours in with_hours
               if is_working_moment(hours, now)]
    return w, at_work[:BATCH]  # bounded after the hours filter, so nobody at work waits behind


async def invite_due(core: Core, round_id: str, now: datetime) -> int:
    """Queue the round's invitations in the delivery ledger, then send what is due now.

    Everyone asked gets one ledger row (bot/pulse/invitations.py), held until their working
    hours; the sender delivers each exactly once at the platform's pace. Returns how many in
    the round have had their invitation.
    """
    async with core.db.session() as s:
        rnd = await pulse.round_by_id(s, round_id)
        if rnd is None or rnd.state != "open" or now >= rnd.closes_at or now < rnd.opens_at:
            return 0
        opens_at = rnd.opens_at
        before = await invitations.invited(s, round_id)
    await invitations.enqueue(core, round_id, opens_at, now, JOB)
    await ledger.release_stale(core.db, core.clock.now())  # rows of a sender that died
    await Sender(core).drain()
    async with core.db.session() as s:
        return await invitations.invited(s, round_id) - before


async def remind_due(core: Core, round_id: str, now: datetime) -> int:
    """Once, to the invited who have not finished, at the survey where they left off."""
    w, people = await _reminders(core, round_id, now)
    if w is None:
        return 0
    async with core.db.session() as s:
        await pulse.sync_finished(s, round_id, core.secret)
        done = await pulse.completed_keys(s, round_id)
        secret = await pulse.round_secret(s, round_id, core.secret)
    if secret is None:
        return 0
    # One record per send time once it is due (done, caught up or skipped), for the send time
    # of everyone asked, finished or not: records only where someone was still to finish would
    # say, where a work pattern is one person's (the night duty worker's), that this person
    # had not answered, after the round is gone.
    skip: dict[datetime, bool] = {}
    for at in await _remind_times(core, w.round):
        if at > now:
            continue
        key = f"remind:{round_id}:{at:%Y%m%dT%H%M}"
        # recorded the first time only; on time, stamped with the send time, not the tick's
        # moment (which tick wrote it must not show who was still to finish)
        await once(core, JOB, key, at, now, REMIND_GRACE, stamp_due=True)
        skip[at] = await too_late(core, JOB, key, at, now, REMIND_GRACE)
    sent = 0
    for part, person, hours in people:
        key = pulse.response_key(secret, person.id)
        if key in done:
            continue
        at = send_time(hours, w.round.remind_at)
        if skip.get(at, True):
            continue
        async with core.db.session() as s:
            mine = await pulse.answered_questions(s, round_id, key)
        pos = cards.resume_at(w.questions, mine)
        if part.message:
            try:  # the old message stops offering buttons, so only one survey card is live
                await core.update(ref_from_json(part.message), cards.moved_card(w))
            except Exception:
                log.info("could not edit an old survey message")
        try:
            ref = await core.dm(person.id, cards.question_card(w, pos, lead=cards.reminder_lead(w)))
        except (RateLimited, TransientError):
            break  # the next tick goes on from here (an uninstalled app too: AppNotAuthorised)
        except PlatformError as e:
            # Refused for good (msg_too_long, invalid_blocks, a Teams 400): the same answer
            # would come every tick, and one person's refusal must not stop everyone after
            # them. Recorded as reminded (a reminder is tried once), said in the log.
            log.warning("pulse reminder refused by the platform; not tried again",
                        extra={"error": str(e)[:200]})
            ref = None
        async with core.db.session() as s:
            row = await pulse.participation(s, round_id, person.id)
            if row is not None:
                row.reminded = True
                if ref is not None:
                    row.message = ref_to_json(ref)
                    sent += 1
    return sent


async def _remind_times(core: Core, rnd: PulseRound) -> list[datetime]:
    """The reminder's send time of every work pattern among the people asked in the round."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {})
        rows = (await s.execute(select(Person.tz, Person.work_pattern)
                                .join(PulseParticipation, PulseParticipation.person_id == Person.id)
                                .where(PulseParticipation.round_id == rnd.id))).all()
    seen: dict[tuple[str | None, str], datetime] = {}
    for tz, own in rows:
        key = (tz, json.dumps(own, sort_keys=True))
        if key not in seen:
            seen[key] = send_time(Pattern.from_settings(prog, tz, own), rnd.remind_at)
    return sorted(set(seen.values()))


async def next_due(core: Core, now: datetime) -> datetime | None:
    """The next round opening, invitation or reminder (at the person's working moment) or close."""
    times: list[datetime | None] = []
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {})
        for survey in await pulse.surveys(s):
            if survey.paused:
                continue
            try:
                after = max(now, survey.starts_at - timedelta(seconds=1)) if survey.starts_at else now
                times.append(sched.next_after(survey.schedule, survey.timezone, after))
            except sched.ScheduleError:
                continue
        rounds = (await s.execute(
            select(PulseRound, PulseSurvey.paused).join(PulseSurvey, PulseSurvey.id == PulseRound.survey_id)
            .where(PulseRound.state == "open"))).all()
        for rnd, paused in rounds:
            times.append(rnd.closes_at)
            if not paused:
                times += await _next_prompts(s, prog, rnd, now)
    return soonest(times, now)


async def _next_prompts(s: Any, prog: dict[str, Any], rnd: PulseRound, now: datetime
                        ) -> list[datetime]:
    """When the round's next invitation and next reminder reach someone (one per work pattern)."""
    P = PulseParticipation
    rows = (await s.execute(
        select(Person.tz, Person.work_pattern, P.invited_at)
        .join(Person, Person.id == P.person_id)
        .where(P.round_id == rnd.id, P.unreachable.is_(False), P.finished.is_(False),
               P.reminded.is_(False)))).all()
    hours: dict[tuple[str | None, str, bool], Pattern] = {}
    for tz, own, invited_at in rows:
        if invited_at is not None and invited_at >= rnd.remind_at:
            continue  # invited after the reminder time: never reminded
        key = (tz, json.dumps(own, sort_keys=True), invited_at is None)
        if key not in hours:
            hours[key] = Pattern.from_settings(prog, tz, own)
    out = []
    for (_tz, _own, invite), pattern in hours.items():
        base = rnd.opens_at if invite else rnd.remind_at
        at = next_working_moment(pattern, max(now, base))
        if not invite and at - send_time(pattern, base) > REMIND_GRACE:
            continue  # would be skipped, not sent
        if at < rnd.closes_at:
            out.append(at)
    # Every asked pattern's send time wakes the scheduler, finished or not, so its record is
    # written at that moment either way (N16): waking only for the unfinished would leave the
    # record of a one-person pattern to the next interval tick when that person had answered.
    asked = (await s.execute(
        select(Person.tz, Person.work_pattern).join(P, P.person_id == Person.id)
        .where(P.round_id == rnd.id))).all()
    patterns = {(tz, json.dumps(own, sort_keys=True)): own for tz, own in asked}
    for (tz, _key), own in patterns.items():
        at = send_time(Pattern.from_settings(prog, tz, own), rnd.remind_at)
        if now < at < rnd.closes_at:
            out.append(at)
    return out
