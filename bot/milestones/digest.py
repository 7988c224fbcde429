"""The weekly roadmap digest, posted to programme.channels.roadmap_digest.

Posted at the first working moment of each week (programme hours); a row per week records
it, so a restart or a second scheduler run never posts twice. Missed while the process was
down for longer than the usual 4-hour grace, that week's digest is skipped (and recorded).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.milestones import service
from bot.milestones.status import EMOJI, LABELS, STALE_EMOJI, STATUSES
from bot.milestones.tables import Milestone, RoadmapDigest
from bot.model import Block, Context, Message, Text
from bot.people.tables import Person
from bot.programme.core_sections import get_setting
from bot.scheduling.prompts import week_of, weekly_next_due, weekly_post_due
from bot.workhours import Pattern

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.milestones")
JOB = "roadmap_digest"  # the scheduler's name for this ticker (its records of late work use it)


async def tick(core: Core, now: datetime) -> int:
    """Post this week's digest if it is due and not yet posted."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
        channel = (prog.get("channels") or {}).get("roadmap_digest")
        hours = Pattern.from_settings(prog)
        week = week_of(hours, now)
        if not channel or await s.get(RoadmapDigest, week) is not None:
            return 0
    if not await weekly_post_due(core, JOB, hours, now):
        return 0
    async with core.db.session() as s:
        previous = (await s.execute(select(func.max(RoadmapDigest.sent_at)))).scalar_one_or_none()
        # Changes already reported (up to and including the last post) are not repeated.
        msg = await build(s, now, since=previous + timedelta(microseconds=1) if previous else None)
    ref = await core.post_channel(channel, msg)
    if ref is None:
        return 0
    try:
        async with core.db.session() as s:
            s.add(RoadmapDigest(week_of=week, sent_at=now))
    except IntegrityError:
        log.warning("roadmap digest for this week was recorded twice")
    return 1


async def next_due(core: Core, now: datetime) -> datetime | None:
    """This week's first working moment if the digest is still to post, else next week's."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
        if not (prog.get("channels") or {}).get("roadmap_digest"):
            return None
        hours = Pattern.from_settings(prog)
        posted = await s.get(RoadmapDigest, week_of(hours, now)) is not None
    return await weekly_next_due(core, JOB, hours, now, posted)


async def build(s: AsyncSession, now: datetime, since: datetime | None = None) -> Message:
    """Counts by status, changes since the last digest (else 7 days), overdue, stale, early wins."""
    today = await service.today(s, now)
    counts = await service.health(s, today)
    summary = " · ".join(f"{EMOJI[st]} {LABELS[st]}: {counts[st]}" for st in STATUSES)
    sections = [f"Roadmap this week ({counts['total']} milestones)", summary]
    changes = await _changes(s, since or now - timedelta(days=7), now)
    sections.append("Changed this week:\n" + ("\n".join(changes) if changes else "• nothing changed"))
    late = [f"• {m.title} — due {m.due:%d %b %Y}, {LABELS[m.status]}, {m.progress}%"
            for m in await service.overdue(s, today)]
    sections.append("Overdue:\n" + ("\n".join(late) if late else "• nothing overdue"))
    stale = [f"• {STALE_EMOJI} {m.title} — no answer to its last check-in"
             for m in await service.stale(s)]
    sections.append("Stale:\n" + ("\n".join(stale) if stale else "• none"))
    wins = [f"• 🎉 {w.title} ({w.delivered_on:%d %b})"
            for w in await service.early_wins_delivered(s, today - timedelta(days=6), today)]
    sections.append("Early wins delivered:\n" + ("\n".join(wins) if wins else "• none this week"))
    blocks: list[Block] = [Text(sections[0], heading=True), *(Text(x) for x in sections[1:]),
                           Context("Ask me “status”, “what's at risk?” or “overdue” any time.")]
    return Message(tuple(blocks), fallback="\n".join(sections))


async def _changes(s: AsyncSession, since: datetime, now: datetime) -> list[str]:
    """One line per milestone updated since `since`: first status -> latest status."""
    first: dict[str, tuple[str, int]] = {}
    last: dict[str, tuple[str, int, str | None]] = {}
    for u in await service.updates_between(s, since, now + timedelta(seconds=1)):
        first.setdefault(u.milestone_id, (u.prev_status, u.prev_progress))
        last[u.milestone_id] = (u.status, u.progress, u.person_id)
    out = []
    for mid, (st, pr, pid) in last.items():
        m = await s.get(Milestone, mid)
        if m is None:
            continue
        st0, pr0 = first[mid]
        who = await s.get(Person, pid) if pid else None
        by = f" (by {who.display_name or who.email})" if who else ""
        move = (f"{LABELS[st0]} → {LABELS[st]}" if st0 != st else LABELS[st])
        out.append(f"• {EMOJI[st]} {m.title}: {move}, {pr0}% → {pr}%{by}")
    return out
