"""The weekly leadership digest, posted to programme.channels.leadership_digest.

Participation in the latest closed round, the three biggest movements, and roadmap health when
the milestones feature is installed. Everything comes from results that passed the anonymity
engine. A row per week records the post, so a restart or a second scheduler never posts twice.
Missed while the process was down for longer than the usual 4-hour grace, that week's digest is
skipped (and recorded) rather than posted days late.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.model import Block, Context, Message, Text
from bot.programme.core_sections import get_setting
from bot.reports import service
from bot.reports.anonymity import ALL
from bot.reports.card import pct, signed
from bot.reports.results import RoundResults
from bot.reports.tables import LeadershipDigest
from bot.scheduling.prompts import weekly_next_due, weekly_post_due
from bot.workhours import Pattern

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.reports")
JOB = "leadership_digest"  # the scheduler's name for this ticker (its records of late work use it)


def week_of(prog: dict[str, Any], now: datetime) -> date:
    local = now.astimezone(ZoneInfo(prog.get("timezone") or "Europe/London")).date()
    return local - timedelta(days=local.weekday())


async def tick(core: Core, now: datetime) -> int:
    """Post this week's digest at the first working moment of the week, once."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
        channel = (prog.get("channels") or {}).get("leadership_digest")
        week = week_of(prog, now)
        if not channel or await s.get(LeadershipDigest, week) is not None:
            return 0
    if not await weekly_post_due(core, JOB, Pattern.from_settings(prog), now):
        return 0
    async with core.db.session() as s:
        msg = await build(s, now)
    ref = await core.post_channel(channel, msg)
    if ref is None:
        return 0
    try:
        async with core.db.session() as s:
            s.add(LeadershipDigest(week_of=week, sent_at=now))
    except IntegrityError:
        log.warning("leadership digest for this week was recorded twice")
    return 1


async def next_due(core: Core, now: datetime) -> datetime | None:
    """This week's first working moment if the digest is still to post, else next week's."""
    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
        if not (prog.get("channels") or {}).get("leadership_digest"):
            return None
        posted = await s.get(LeadershipDigest, week_of(prog, now)) is not None
    return await weekly_next_due(core, JOB, Pattern.from_settings(prog), now, posted)


def movements(results: RoundResults, top: int = 3) -> list[str]:
    """The biggest changes against the previous round among the groups that may be shown."""
    found = []
    for g in results.groups.values():
        for q in g.questions if g.shown else ():
            if q.shown and q.change:
                found.append((abs(q.change), g.key != ALL, g.label, q))
    found.sort(key=lambda x: (-x[0], x[1], x[2], x[3].question.text))
    # One line per question (its biggest mover), so three lines say three different things.
    seen: set[str] = set()
    picked = []
    for item in found:
        if item[3].question.id not in seen:
            seen.add(item[3].question.id)
            picked.append(item)
    out = []
    for _, _, label, q in picked[:top]:
        unit = " points" if q.question.kind == "enps" else " pts"
        name = {"likert5": "favourable", "enps": "eNPS", "yesno": "yes"}.get(q.question.kind, "")
        out.append(f"• {label}: \u201c{q.question.text}\u201d {signed(q.change or 0, unit)} "
                   f"({name} now {q.score:g}{'' if q.question.kind == 'enps' else '%'})")
    return out


async def roadmap_health(s: AsyncSession, now: datetime) -> str | None:
    """One line of roadmap health, or None when the milestones feature is not installed."""
    try:
        from bot.milestones import service as milestones
        from bot.milestones.status import LABELS, STATUSES
    except ImportError:
        return None
    today = await milestones.today(s, now)
    counts = await milestones.health(s, today)
    if not counts.get("total"):
        return "Roadmap: no milestones yet."
    parts = [f"{LABELS[st]} {counts.get(st, 0)}" for st in STATUSES]
    extra = f" · overdue {counts.get('overdue', 0)}" if counts.get("overdue") else ""
    return f"Roadmap ({counts['total']} milestones): " + " · ".join(parts) + extra


async def build(s: AsyncSession, now: datetime) -> Message:
    """The digest message."""
    lines = ["Leadership digest: how staff are finding the change"]
    info = await service.latest_closed_round(s)
    if info is None:
        lines.append("Pulse: no round has closed yet.")
    else:
        results = await service.round_results(s, info)
        whole = results.groups[ALL]
        lines.append(f"Pulse: {info.survey_title}, {info.label}.")
        if not whole.shown:
            lines.append("Participation: not enough responses to show.")
        else:
            change = f", {signed(whole.rate_change)} on last round" if whole.rate_change is not None else ""
            rate = pct(whole.rate) if whole.rate is not None else "n/a"
            lines.append(f"Participation: {rate} ({whole.respondents} of {whole.invited} asked{change}).")
        moved = movements(results)
        lines.append("Biggest movements:\n" + ("\n".join(moved) if moved else "• no changes to show"))
    health = await roadmap_health(s, now)
    if health:
        lines.append(health)
    blocks: tuple[Block, ...] = (
        Text(lines[0], heading=True), *(Text(x) for x in lines[1:]),
        Context("Groups under the anonymity threshold are never shown. Ask me for "
                "“results” or “results TEAM” for more."),
    )
    return Message(blocks, fallback="\n".join(lines))
