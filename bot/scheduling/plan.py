"""The plan of scheduled work: what runs next and when, and what was found late after downtime."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.scheduling.jobs import LOOKBACK, next_due
from bot.scheduling.tables import JobRecord, Occurrence

if TYPE_CHECKING:
    from bot.core import Core


@dataclass(frozen=True)
class Planned:
    job: str
    next_at: datetime | None  # None: nothing due (a probed job) or checked on every tick
    summary: str
    last_run_at: datetime | None
    last_outcome: str
    probed: bool = False  # the job says when it is next due (the next_due protocol)


async def plan(core: Core, now: datetime) -> list[Planned]:
    """Every job with its next due time (if it says), soonest first, and how it last went."""
    rows = []
    for name, fn in core.router.tickers.items():
        async with core.db.session() as s:
            rec = await s.get(JobRecord, name)
        doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
        rows.append(Planned(
            job=name,
            next_at=await next_due(core, fn, now),
            summary=doc[0] if doc else "",
            last_run_at=rec.last_run_at if rec else None,
            last_outcome=rec.last_outcome if rec else "",
            probed=getattr(fn, "next_due", None) is not None,
        ))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(rows, key=lambda p: (p.next_at or far, p.job))


@dataclass(frozen=True)
class Missed:
    job: str
    what: str  # the kind of item: open, remind, checkin, week, ... (its key's prefix)
    due_at: datetime
    outcome: str  # caught-up | skipped
    at: datetime  # when it was found (and, if caught up, done)
    count: int


async def missed(core: Core, now: datetime) -> list[Missed]:
    """Items found late after downtime over the look-back: done late (caught up) or skipped."""
    async with core.db.session() as s:
        rows = (await s.execute(select(Occurrence).where(
            Occurrence.outcome.in_(("caught-up", "skipped")), Occurrence.at >= now - LOOKBACK,
        ))).scalars().all()
    counts: Counter[tuple[str, str, datetime, str]] = Counter()
    found: dict[tuple[str, str, datetime, str], datetime] = {}
    for o in rows:
        what = o.key.partition(":")[0] if ":" in o.key and not o.key[:1].isdigit() else "run"
        k = (o.job, what, o.due_at, o.outcome)
        counts[k] += 1
        found[k] = max(found.get(k, o.at), o.at)
    out = [Missed(j, w, d, oc, found[(j, w, d, oc)], n) for (j, w, d, oc), n in counts.items()]
    return sorted(out, key=lambda m: (m.at, m.due_at, m.job, m.what))


def render(rows: list[Planned], now: datetime, tz: str, interval_s: float,
           late: list[Missed] | None = None) -> str:
    """The plan as a table in local time, then what was caught up or skipped after downtime."""
    zone = ZoneInfo(tz)

    def local(t: datetime | None, empty: str) -> str:
        return t.astimezone(zone).strftime("%a %d %b %H:%M %Z") if t else empty

    every = f"every tick ({interval_s:g} s)"
    lines = [f"Scheduled work, times in {tz} (now {local(now, '')}):", ""]
    if not rows:
        return "\n".join(lines + ["  no scheduled jobs are registered"])
    width = max(len(r.job) for r in rows)
    lines.append(f"  {'job'.ljust(width)}  {'next due'.ljust(22)}  {'last run'.ljust(22)}  last outcome")
    for r in rows:
        due = local(r.next_at, "nothing due" if r.probed else every)
        lines.append((
            f"  {r.job.ljust(width)}  {due.ljust(22)}  {local(r.last_run_at, 'never').ljust(22)}  "
            f"{(r.last_outcome or '-').ljust(12)} {r.summary}").rstrip())
    if late:
        lines += ["", f"Found late after downtime (last {LOOKBACK.days} days):"]
        w = max(len(m.job) for m in late)
        for m in late:
            done = "caught up" if m.outcome == "caught-up" else "skipped"
            times = f" x{m.count}" if m.count > 1 else ""
            lines.append(f"  {m.job.ljust(w)}  {m.what.ljust(8)}  due {local(m.due_at, '')}, "
                         f"{done} {local(m.at, '')}{times}")
    return "\n".join(lines)


def parse_at(text: str, tz: str) -> datetime | None:
    """A local date-time ('2027-05-04 09:00' or ISO with an offset) as UTC; None if unreadable."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(UTC)
