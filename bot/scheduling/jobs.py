"""Running due work: every feature's ticker once, with a record of each run and of misses.

Tickers registered with `r.ticker(name, fn)` derive what is due from their own tables, so
a restart loses nothing. Three optional pieces make the schedule visible and misses explicit:

- a ticker may expose `next_due(core, now) -> datetime | None` (when it next has work), which
  `staffvoice schedule list` shows and the scheduler uses to wake up exactly on time;
- `once(core, job, key, due_at, now)` claims one due item (a reminder, a check-in) at most once:
  done while inside its grace period, recorded as skipped when it is found too late;
- `too_late(core, job, key, due_at, now)` is the same judgement for items whose own table
  already says whether they were done (a round's reminders, a check-in row): it only records
  the exceptions, skipped or caught up, for `staffvoice schedule list`;
- `timed(name, fn, cron=...)` wraps a function that runs at fixed local times (a weekly digest)
  into a ticker with both of the above.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bot import background
from bot.scheduling.tables import JobRecord, Occurrence

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.scheduler")

# A prompt found this late (after downtime) is skipped rather than sent: a reminder half a day
# late confuses more than it helps. Jobs may choose their own.
DEFAULT_GRACE = timedelta(hours=4)
# A ticker not run for this long was missed (the process was down): its next run is a catch-up.
GAP = timedelta(minutes=5)
LOOKBACK = timedelta(days=8)

_skips: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("skips", default=None)
# Set by run_due while a ticker runs: when that job last ran before, and the gap that counts
# as downtime. Outside run_due (core.tick, tests) nothing counts as missed while down.
_previous: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("previous", default=None)
_gap: contextvars.ContextVar[timedelta] = contextvars.ContextVar("gap", default=GAP)


@dataclass(frozen=True)
class JobResult:
    name: str
    outcome: str  # ok | caught-up | skipped | error
    count: int
    skipped: int
    seconds: float


async def run_due(core: Core, now: datetime, *, instance: str = "", gap: timedelta = GAP) -> list[JobResult]:
    """Run every ticker once at `now`, recording each run; one failing job never stops the rest."""
    if not core.secret:
        await core.start()
    async with core.db.session() as s:
        last = {r.name: r.last_run_at for r in (await s.execute(select(JobRecord))).scalars()}
    results = []
    for name, fn in core.router.tickers.items():
        # Each job in its own turn, behind the requests that arrived (bot/background.py), as
        # in Core.tick: `serve`'s scheduler runs the jobs here, not through Core.tick.
        await background.turn()
        results.append(await _run_one(core, name, fn, now, last.get(name), gap))
    await _record(core, now, results, instance)
    return results


async def _run_one(core: Core, name: str, fn: Any, now: datetime, last: datetime | None,
                   gap: timedelta) -> JobResult:
    skips: list[str] = []
    token = _skips.set(skips)
    prev_token, gap_token = _previous.set(last), _gap.set(gap)
    started = time.perf_counter()
    try:
        count = int(await fn(core, now) or 0)
        if last is not None and now - last > gap:
            log.info("job caught up after a gap", extra={"job": name, "gap_s": int((now - last).total_seconds())})
            outcome = "caught-up"
        else:
            outcome = "ok"
        if skips and count == 0:
            outcome = "skipped"
    except Exception:
        log.exception("scheduled job failed", extra={"job": name})
        count, outcome = -1, "error"
    finally:
        _skips.reset(token)
        _previous.reset(prev_token)
        _gap.reset(gap_token)
    return JobResult(name, outcome, count, len(skips), time.perf_counter() - started)


async def _record(core: Core, now: datetime, results: list[JobResult], instance: str) -> None:
    """One transaction for the whole tick's records (cheap enough to tick often)."""
    try:
        async with core.db.session() as s:
            recs = {r.name: r for r in (await s.execute(select(JobRecord))).scalars()}
            for res in results:
                rec = recs.get(res.name)
                if rec is None:
                    rec = JobRecord(name=res.name, runs=0, errors=0, skipped=0, last_count=0)
                    s.add(rec)
                rec.last_run_at = now
                rec.last_outcome = res.outcome
                rec.last_count = max(res.count, 0)
                rec.runs = (rec.runs or 0) + 1
                rec.errors = (rec.errors or 0) + (res.outcome == "error")
                rec.skipped = (rec.skipped or 0) + res.skipped
                rec.instance = instance[:100]
    except IntegrityError:
        # Two processes created a row at once (a cron run-due next to serve): the other won.
        log.warning("job records written concurrently; this tick's record was dropped")


def previous_run() -> datetime | None:
    """When the job now running last ran (None on its first run, or outside run_due)."""
    return _previous.get()


def missed(due_at: datetime) -> bool:
    """True when the running job has run before but not since `due_at` (so it was down then)."""
    prev = _previous.get()
    return prev is not None and prev < due_at


def fell_in_gap(due_at: datetime, now: datetime) -> bool:
    """True when `due_at` passed during a downtime gap this run is catching up on."""
    prev = _previous.get()
    return prev is not None and now - prev > _gap.get() and prev < due_at < now


async def once(core: Core, job: str, key: str, due_at: datetime, now: datetime | None = None,
               grace: timedelta = DEFAULT_GRACE, *, stamp_due: bool = False) -> bool:
    """Claim one due item of `job`: True to do it now; False if done before or too late (skipped).

    With `stamp_due`, an item done on time is recorded `at` its due time rather than to the
    microsecond of the tick that did it (which tick that was can say something: N16).
    """
    now = now or core.clock.now()
    if now - due_at > grace:
        outcome = "skipped"
    else:
        outcome = "caught-up" if fell_in_gap(due_at, now) else "done"
    at = due_at if stamp_due and outcome == "done" else now
    if not await note(core, job, key, due_at, now, outcome, at=at):
        return False
    return outcome != "skipped"


async def too_late(core: Core, job: str, key: str, due_at: datetime, now: datetime,
                   grace: timedelta = DEFAULT_GRACE, *, only_if_missed: bool = False) -> bool:
    """True when the item `key` (its own table says if it was done) is found beyond its grace.

    The first time, the skip is recorded; an item still inside its grace that fell due while
    the process was down is recorded as caught up. With `only_if_missed`, lateness counts only
    when the job was not running at `due_at` (a digest the job held back on purpose is not late).
    """
    async with core.db.session() as s:
        seen = await s.get(Occurrence, (job, key[:200]))
        before = seen.outcome if seen is not None else None
    if before == "skipped":
        return True
    if now - due_at > grace and (not only_if_missed or missed(due_at)):
        if before is None:
            await note(core, job, key, due_at, now, "skipped")
        return True
    if before is None and fell_in_gap(due_at, now):
        await note(core, job, key, due_at, now, "caught-up")
    return False


async def was_skipped(core: Core, job: str, key: str) -> bool:
    """True when the item `key` of `job` was recorded as skipped."""
    async with core.db.session() as s:
        seen = await s.get(Occurrence, (job, key[:200]))
    return seen is not None and seen.outcome == "skipped"


async def note(core: Core, job: str, key: str, due_at: datetime, now: datetime, outcome: str,
               *, at: datetime | None = None) -> bool:
    """Record one occurrence of `job` (done, caught-up or skipped); False if it was recorded before.

    `at` is the moment stored (`now` unless given)."""
    try:
        async with core.db.session() as s:
            # Looked up first so a repeat costs a read, not a failed insert in the server log.
            if await s.get(Occurrence, (job, key[:200])) is not None:
                return False
            s.add(Occurrence(job=job, key=key[:200], due_at=due_at, outcome=outcome, at=at or now))
    except IntegrityError:
        return False  # another scheduler recorded it first
    if outcome == "skipped":
        log.warning("missed beyond its grace period; skipped",
                    extra={"job": job, "late_s": int((now - due_at).total_seconds())})
        skips = _skips.get()
        if skips is not None:
            skips.append(key)
    elif outcome == "caught-up":
        log.info("missed while down; done late, inside its grace period",
                 extra={"job": job, "late_s": int((now - due_at).total_seconds())})
    return True


async def release(core: Core, job: str, key: str) -> None:
    """Undo a claim from `once` (the work failed), so the next tick tries again."""
    async with core.db.session() as s:
        await s.execute(delete(Occurrence).where(Occurrence.job == job, Occurrence.key == key[:200]))


async def programme_tz(core: Core) -> str:
    """The programme's time zone (Europe/London until a programme is loaded, or if its zone
    is unknown here: `programme_zone`)."""
    from bot.programme.core_sections import programme_zone

    async with core.db.session() as s:
        return (await programme_zone(s)).key


TimedFn = Callable[["Core", datetime], Awaitable[int]]


class TimedJob:
    """A ticker that runs `fn(core, occurrence)` at the times of a cron timetable, local time."""

    def __init__(self, name: str, fn: TimedFn, cron: dict[str, Any],
                 grace: timedelta = DEFAULT_GRACE, tz: str | None = None) -> None:
        self.name = name
        self.fn = fn
        self.cron = cron
        self.grace = grace
        self.tz = tz
        self.__doc__ = fn.__doc__

    async def _trigger(self, core: Core) -> CronTrigger:
        return CronTrigger(**self.cron, timezone=ZoneInfo(self.tz or await programme_tz(core)))

    async def __call__(self, core: Core, now: datetime) -> int:
        occ = latest_at_or_before(await self._trigger(core), now)
        if occ is None:
            return 0
        key = occ.isoformat()
        if now - occ > self.grace:
            last = await self._last_run(core)
            if last is None or last >= occ:
                return 0  # not missed while down: the job did not exist yet, or saw it already
        if not await once(core, self.name, key, occ, now, self.grace):
            return 0
        try:
            return int(await self.fn(core, occ) or 0)
        except Exception:
            await release(core, self.name, key)
            raise

    async def _last_run(self, core: Core) -> datetime | None:
        async with core.db.session() as s:
            rec = await s.get(JobRecord, self.name)
            return rec.last_run_at if rec is not None else None

    async def next_due(self, core: Core, now: datetime) -> datetime | None:
        nxt = (await self._trigger(core)).get_next_fire_time(None, now)
        return None if nxt is None else nxt.astimezone(UTC)


TickFn = Callable[["Core", datetime], Awaitable[int]]
NextDueFn = Callable[["Core", datetime], Awaitable[datetime | None]]


class Probed:
    """A plain ticker function together with its `next_due` (what `schedule list` shows)."""

    def __init__(self, fn: TickFn, probe: NextDueFn) -> None:
        self.fn = fn
        self.probe = probe
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "ticker")

    async def __call__(self, core: Core, now: datetime) -> int:
        return await self.fn(core, now)

    async def next_due(self, core: Core, now: datetime) -> datetime | None:
        return await self.probe(core, now)


def with_next_due(fn: TickFn, probe: NextDueFn) -> Probed:
    """`r.ticker(name, with_next_due(tick, next_due))`: the ticker, able to say when it is next due."""
    return Probed(fn, probe)


def soonest(times: Iterable[datetime | None], now: datetime) -> datetime | None:
    """The earliest of `times` at or after `now` (None when there is none)."""
    return min((t for t in times if t is not None and t >= now), default=None)


def timed(name: str, fn: TimedFn, *, grace: timedelta = DEFAULT_GRACE, tz: str | None = None,
          **cron: Any) -> TimedJob:
    """A ticker running `fn` at local times, e.g. `timed("digest", f, day_of_week="mon", hour=9)`."""
    return TimedJob(name, fn, cron, grace, tz)


def latest_at_or_before(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The most recent time the timetable fired at or before `now` (within the look-back)."""
    t = trigger.get_next_fire_time(None, now - LOOKBACK)
    last = None
    # Bounded: hourly over the look-back is ~200 steps; finer work belongs in a plain ticker.
    for _ in range(5000):
        if t is None or t > now:
            break
        last = t
        t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    return None if last is None else last.astimezone(UTC)


async def next_due(core: Core, fn: Any, now: datetime) -> datetime | None:
    """When a ticker next has work, if it says (optional `next_due` protocol); None otherwise."""
    probe = getattr(fn, "next_due", None)
    if probe is None:
        return None
    try:
        when = await probe(core, now)
    except Exception:
        log.exception("next_due failed", extra={"job": getattr(fn, "__name__", "?")})
        return None
    return None if when is None else when.astimezone(UTC)
