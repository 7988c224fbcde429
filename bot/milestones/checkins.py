"""Check-ins: the scheduler asks owners for an update on each milestone's cadence.

Everything due is derived from the tables on every tick (a restart loses nothing):
a cycle opens a cadence after the latest of the anchor, the last update and the last cycle;
each owner's row then goes due -> sent -> reminded -> expired unless someone answers, and
when a cycle expires unanswered the milestone is stale and its team lead is told once.
DMs go out only at the recipient's working moments.

After downtime a prompt (the first one or the reminder) found more than one cadence after its
send time is skipped and recorded, not sent: the next cycle is due anyway, and opens at once.
Cycles keep to their grid (a cadence after the start, then another), so the ones that passed
entirely while the process was down are recorded as skipped too; one prompt goes, not many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.milestones import cards, service
from bot.milestones.status import DONE, cadence_delta, due_words
from bot.milestones.tables import Milestone, MilestoneCheckin
from bot.model import Context, Fields, Message, MessageRef, Text
from bot.people import service as people
from bot.people.tables import Person, Team
from bot.port import PlatformError, RateLimited, TransientError
from bot.programme.core_sections import get_setting
from bot.roles import CHANGE_TEAM
from bot.scheduling.jobs import fell_in_gap, missed, note, soonest, too_late
from bot.workhours import Pattern, is_working_moment, next_working_moment, pattern_for

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.milestones")
JOB = "milestone_checkins"  # the scheduler's name for this ticker (its records of late work use it)
# At most this many cycles that passed entirely while down are recorded one by one.
MISSED_RECORDS = 8


async def tick(core: Core, now: datetime) -> int:
    """Open due cycles, send prompts and reminders, expire unanswered ones, tell leads."""
    await skip_late(core, now)
    opened = await open_cycles(core, now)
    sent = await _prompt(core, now, "due", reminder=False)
    reminded = await _prompt(core, now, "sent", reminder=True)
    expired = await expire(core, now)
    told = await tell_leads(core, now)
    return opened + sent + reminded + expired + told


async def open_cycles(core: Core, now: datetime) -> int:
    """Create one due check-in per owner for each milestone whose cadence has come round."""
    opened = 0
    passed: list[tuple[str, datetime]] = []
    async with core.db.session() as s:
        for m in await service.all_milestones(s):
            delta = cadence_delta(m.cadence)
            if m.status == DONE or delta is None:
                continue
            if m.anchor_at is None:
                m.anchor_at = now  # first sight: the cadence counts from here
                continue
            if await _open_rows(s, m.id):
                continue
            start = await _cycle_start(s, m)
            if now < start + delta:
                continue
            # The latest point of the cadence's grid that has come: earlier ones passed unasked.
            k = (now - start) // delta
            cycle = start + k * delta
            passed += [(f"checkin:{m.id}:{t:%Y%m%dT%H%M}", t)
                       for t in (start + i * delta for i in range(max(1, k - MISSED_RECORDS), k))
                       if missed(t)]
            for pid in await service.owner_ids(s, m.id):
                s.add(MilestoneCheckin(milestone_id=m.id, person_id=pid, cycle_at=cycle, state="due"))
                opened += 1
    for key, t in passed:
        await note(core, JOB, key, t, now, "skipped")
    return opened


async def _open_rows(s: AsyncSession, milestone_id: str) -> int:
    return int((await s.execute(
        select(func.count()).select_from(MilestoneCheckin).where(
            MilestoneCheckin.milestone_id == milestone_id,
            MilestoneCheckin.state.in_(service.OPEN_CHECKIN),
        )
    )).scalar_one())


async def _cycle_start(s: AsyncSession, m: Milestone) -> datetime:
    """The latest of the anchor, the last update and the last cycle: cadences count from it."""
    last_cycle = (await s.execute(
        select(func.max(MilestoneCheckin.cycle_at)).where(MilestoneCheckin.milestone_id == m.id)
    )).scalar_one_or_none()
    if isinstance(last_cycle, str):  # SQLite returns an aggregate as text, outside the column type
        last_cycle = datetime.fromisoformat(last_cycle)
    if last_cycle is not None and last_cycle.tzinfo is None:
        last_cycle = last_cycle.replace(tzinfo=UTC)
    return max(t for t in (m.anchor_at, m.last_update_at, last_cycle) if t)


async def skip_late(core: Core, now: datetime) -> int:
    """Close prompts found more than a cadence late (after downtime) as skipped."""
    candidates = []
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {})
        rows = (await s.execute(
            select(MilestoneCheckin, Milestone, Person)
            .join(Milestone, Milestone.id == MilestoneCheckin.milestone_id)
            .join(Person, Person.id == MilestoneCheckin.person_id)
            .where(MilestoneCheckin.state.in_(("due", "sent"))))).all()
        for c, m, person in rows:
            delta = cadence_delta(m.cadence) or timedelta(days=14)
            what, at = _next_prompt(c, m, Pattern.from_settings(prog, person.tz, person.work_pattern))
            if now - at > delta:
                candidates.append((c.id, f"{what}:{c.id}", at, delta))
    late = [cid for cid, key, at, delta in candidates
            if await too_late(core, JOB, key, at, now, delta)]
    if late:
        async with core.db.session() as s:
            for c in (await s.execute(
                    select(MilestoneCheckin).where(MilestoneCheckin.id.in_(late)))).scalars():
                if c.state in ("due", "sent"):
                    c.state, c.closed_at = "skipped", now
    return len(late)


def _next_prompt(c: MilestoneCheckin, m: Milestone, hours: Pattern) -> tuple[str, datetime]:
    """Which prompt a check-in waits for (the first or the reminder) and when it may be sent."""
    if c.state == "due":
        return "checkin", next_working_moment(hours, c.cycle_at)
    sent = c.sent_at or c.cycle_at
    return "reminder", next_working_moment(hours, sent + timedelta(days=m.grace_days))


async def _prompt(core: Core, now: datetime, state: str, *, reminder: bool) -> int:
    """Send first prompts (state due) or the one reminder (state sent, grace passed)."""
    done = 0
    async with core.db.session() as s:
        rows = list((await s.execute(
            select(MilestoneCheckin).where(MilestoneCheckin.state == state)
            .order_by(MilestoneCheckin.cycle_at, MilestoneCheckin.milestone_id)
        )).scalars())
        work: list[tuple[str, str, Message]] = []
        late: list[tuple[str, datetime]] = []
        prog = await get_setting(s, "programme", {})
        for c in rows:
            m = await s.get(Milestone, c.milestone_id)
            person = await s.get(Person, c.person_id)
            if m is None or person is None or person.left_on is not None:  # a leaver
                continue
            if reminder and (c.sent_at is None or now < c.sent_at + timedelta(days=m.grace_days)):
                continue
            hours = Pattern.from_settings(prog, person.tz, person.work_pattern)
            if not is_working_moment(hours, now):
                continue
            v = await service.view(s, m)
            msg = cards.checkin_prompt(v, now, await service.today(s, now), reminder=reminder)
            work.append((c.id, c.person_id, msg))
            what, at = _next_prompt(c, m, hours)
            if fell_in_gap(at, now):
                late.append((f"{what}:{c.id}", at))
    for key, at in late:
        await note(core, JOB, key, at, now, "caught-up")
    for cid, pid, msg in work:
        try:
            ref = await core.dm(pid, msg)
        except (RateLimited, TransientError):
            break  # passing, or the app awaits a reinstall: the next tick goes on from here
        except PlatformError as e:
            # Refused for good: the prompt counts as sent (tried once, said in the log), so
            # one refusal neither repeats every tick nor stops the prompts after it.
            log.warning("milestone check-in refused by the platform; not tried again",
                        extra={"error": str(e)[:200]})
            ref = None
        async with core.db.session() as s:
            row = await s.get(MilestoneCheckin, cid)
            if row is None or row.state != state:
                continue
            c = row
            if ref is not None:
                c.cards = [*(c.cards or []), [people.conversation_to_json(ref.conversation), ref.message_id]]
            if reminder:
                c.state, c.reminded_at = "reminded", now
            else:
                c.state, c.sent_at = "sent", now
        done += 1
    return done


async def expire(core: Core, now: datetime) -> int:
    """Close reminded check-ins whose grace has passed; an unanswered cycle makes the milestone stale."""
    done = 0
    async with core.db.session() as s:
        rows = list((await s.execute(
            select(MilestoneCheckin).where(MilestoneCheckin.state == "reminded")
        )).scalars())
        for c in rows:
            m = await s.get(Milestone, c.milestone_id)
            if m is None or c.reminded_at is None:
                continue
            if now < c.reminded_at + timedelta(days=m.grace_days):
                continue
            c.state, c.closed_at = "expired", now
            done += 1
            await s.flush()
            still_open = (await s.execute(
                select(func.count()).select_from(MilestoneCheckin).where(
                    MilestoneCheckin.milestone_id == m.id,
                    MilestoneCheckin.cycle_at == c.cycle_at,
                    MilestoneCheckin.state.in_(service.OPEN_CHECKIN),
                )
            )).scalar_one()
            if not still_open and m.stale_since is None:
                m.stale_since, m.stale_told_at, m.stale_tell = now, None, None
    return done


async def tell_leads(core: Core, now: datetime) -> int:
    """Tell the team lead (else the change team) once that a milestone went stale.

    Each recipient is struck off `stale_tell` as they are told, so a platform that refuses
    the app part-way (uninstalled, token revoked: AppNotAuthorised) leaves only the rest to
    tell on a later tick, after the reinstall: nobody is told twice, nobody is forgotten."""
    done = 0
    async with core.db.session() as s:
        stale = [m for m in await service.all_milestones(s)
                 if m.stale_since is not None and m.stale_told_at is None and m.status != DONE]
        work: list[tuple[str, list[str], Message]] = []
        for m in stale:
            if m.stale_tell is not None:
                to = list(m.stale_tell)  # telling began; these are still to be told
            else:
                team = await s.get(Team, m.team_id) if m.team_id else None
                if team is not None and team.lead_person_id:
                    to = [team.lead_person_id]
                else:
                    to = [p.id for p in await people.people_with_role(s, CHANGE_TEAM)]
            recipients = [p for p in [await s.get(Person, pid) for pid in to] if p is not None]
            patterns = [await pattern_for(s, p) for p in recipients]
            if not all(is_working_moment(p, now) for p in patterns):
                continue  # wait until everyone we tell is at work
            v = await service.view(s, m)
            m.stale_tell = [p.id for p in recipients]
            work.append((m.id, [p.id for p in recipients], stale_notice(v, now, await service.today(s, now))))
    for mid, to, msg in work:
        waiting = False
        for pid in to:
            try:
                await core.dm(pid, msg)
            except RateLimited:
                return done  # the workspace's budget: the rest on a later tick
            except TransientError as e:  # the app refused (awaits a reinstall), or passing
                # info: the adapter says a refused token once; this repeats every tick
                log.info("stale-milestone notice waits: the platform refused it for now",
                         extra={"error": str(e)[:200]})
                waiting = True
                continue
            except PlatformError as e:  # refused for good: tried once, said in the log
                log.warning("stale-milestone notice refused by the platform; not tried again",
                            extra={"error": str(e)[:200]})
            async with core.db.session() as s:
                row = await s.get(Milestone, mid)
                if row is not None and row.stale_tell is not None:
                    row.stale_tell = [x for x in row.stale_tell if x != pid]
        if waiting:
            continue
        async with core.db.session() as s:
            row = await s.get(Milestone, mid)
            if row is not None and row.stale_since is not None:
                row.stale_told_at, row.stale_tell = now, None
        done += 1
    return done


def stale_notice(v: service.View, now: datetime, today: date) -> Message:
    """What a team lead is told when a milestone's check-in went unanswered."""
    m = v.m
    text = (f"⏳ {m.title} has gone stale: {cards.names(v)} did not answer the check-in or its "
            "reminder, so the roadmap may not be true for it any more.")
    return Message(
        (Text(text),
         Fields((("Status", cards.badge(m)), ("Progress", f"{m.progress}%"),
                 ("Due", due_words(m.due, today)), ("Last update", cards.last_words(v, now)))),
         Context(f"Perhaps check in with them? Anyone can ask “status {m.id}”.")),
        fallback=text,
    )


async def edit_cards(core: Core, closed: list[MilestoneCheckin],
                     message_for: Callable[[str], Message]) -> set[str]:
    """Edit every card of answered check-ins; returns whose cards were edited."""
    edited: set[str] = set()
    for c in closed:
        for conv, mid in c.cards or []:
            ref = MessageRef(people.conversation_from_json(conv), mid)
            try:
                await core.update(ref, message_for(c.person_id))
                edited.add(c.person_id)
            except Exception:
                log.warning("could not edit a check-in card", extra={"milestone": c.milestone_id})
    return edited


async def next_due(core: Core, now: datetime) -> datetime | None:
    """The next check-in or reminder at its owner's working moment, or the next expiry."""
    times: list[datetime | None] = []
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {})
        patterns: dict[str, Pattern] = {}

        async def hours(pid: str) -> Pattern | None:
            if pid not in patterns:
                person = await s.get(Person, pid)
                if person is None:
                    return None
                patterns[pid] = Pattern.from_settings(prog, person.tz, person.work_pattern)
            return patterns[pid]

        ms = {m.id: m for m in await service.all_milestones(s)}
        rows = (await s.execute(select(MilestoneCheckin).where(
            MilestoneCheckin.state.in_(service.OPEN_CHECKIN)))).scalars().all()
        for c in rows:
            m = ms.get(c.milestone_id)
            if m is None:
                continue
            if c.state == "reminded":
                times.append((c.reminded_at or now) + timedelta(days=m.grace_days))
                continue
            p = await hours(c.person_id)
            if p is None:
                continue
            _, at = _next_prompt(c, m, p)
            if now - at <= (cadence_delta(m.cadence) or timedelta(days=14)):
                times.append(next_working_moment(p, max(now, at)))
        busy = {c.milestone_id for c in rows}
        for m in ms.values():
            delta = cadence_delta(m.cadence)
            if m.status == DONE or delta is None or m.id in busy:
                continue
            # Not seen by a tick yet: the first tick anchors its cadence at that moment.
            due = (await _cycle_start(s, m) if m.anchor_at else now) + delta
            for pid in await service.owner_ids(s, m.id):
                p = await hours(pid)
                if p is not None:
                    times.append(next_working_moment(p, max(now, due)))
        if any(m.stale_since and not m.stale_told_at and m.status != DONE for m in ms.values()):
            times.append(next_working_moment(Pattern.from_settings(prog), now))
    return soonest(times, now)
