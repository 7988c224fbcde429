"""The in-process scheduler: APScheduler ticks every feature's due work, on the leader only."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.scheduling.jobs import GAP, JobResult, next_due, run_due
from bot.scheduling.leader import Leadership, for_database

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.scheduler")

# Non-leaders try for the lock this often, so a dead leader is replaced within a minute.
LEADER_CHECK_S = 15.0


class _QuietShutdownCancels(logging.Filter):
    """APScheduler's shutdown cancels a job it has queued but not started, then logs that as
    'Error running job' with a traceback. Nothing failed (a job that has started finishes:
    see Scheduler._shielded), so that record is dropped; real job errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


logging.getLogger("apscheduler.executors.default").addFilter(_QuietShutdownCancels())


class Scheduler:
    """Runs `run_due` every `interval_s` (and exactly when a ticker says work is due)."""

    def __init__(self, core: Core, leadership: Leadership | None = None, *,
                 interval_s: float | None = None, check_s: float = LEADER_CHECK_S,
                 instance: str | None = None) -> None:
        self.core = core
        self.leadership = leadership or for_database(core.db)
        self.interval_s = interval_s or core.settings.scheduler_interval_s
        self.check_s = min(check_s, self.interval_s)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.is_leader = False
        self.ticks = 0
        self.lag_s = 0.0
        self.last_tick_at: float | None = None  # wall clock, seconds
        self.job_runs: Counter[tuple[str, str]] = Counter()
        self._lock = asyncio.Lock()
        self._aps: AsyncIOScheduler | None = None
        self._stopping = False

    def start(self) -> None:
        """Start ticking in the running event loop."""
        aps = AsyncIOScheduler(timezone=UTC)
        aps.add_job(self._interval_tick, IntervalTrigger(seconds=self.interval_s), id="tick",
                    next_run_time=datetime.now(UTC), coalesce=True, max_instances=1,
                    misfire_grace_time=None)
        aps.add_job(self._check_leadership, IntervalTrigger(seconds=self.check_s), id="leader",
                    coalesce=True, max_instances=1, misfire_grace_time=None)
        aps.start()
        self._aps = aps

    async def stop(self) -> None:
        """Stop ticking, let a tick in progress finish, and give up leadership."""
        self._stopping = True
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        async with self._lock:
            await self.leadership.release()
            self.is_leader = False

    async def tick(self, now: datetime | None = None) -> list[JobResult] | None:
        """One round of due work if this process leads; None when another process does."""
        async with self._lock:
            if self._stopping:
                return None
            self.is_leader = await self.leadership.ensure()
            if not self.is_leader:
                return None
            when = now or self.core.clock.now()
            # Ticks further apart than a few intervals mean the process (or leader) was away.
            gap = max(GAP, timedelta(seconds=3 * self.interval_s))
            results = await run_due(self.core, when, instance=self.instance, gap=gap)
            self.ticks += 1
            self.last_tick_at = time.time()
            for r in results:
                self.job_runs[(r.name, r.outcome)] += 1
            await self._plan_wakeup(when)
            return results

    async def _interval_tick(self) -> None:
        job = self._aps.get_job("tick") if self._aps else None
        if job is not None and job.next_run_time is not None:
            # While the job runs, APScheduler has already moved next_run_time one interval on.
            scheduled = job.next_run_time - timedelta(seconds=self.interval_s)
            self.lag_s = max(0.0, (datetime.now(UTC) - scheduled).total_seconds())
        await self._shielded(self.tick())

    async def _wakeup(self, planned: datetime) -> None:
        self.lag_s = max(0.0, (datetime.now(UTC) - planned).total_seconds())
        await self._shielded(self.tick())

    async def _check_leadership(self) -> None:
        await self._shielded(self._leadership_round())

    async def _leadership_round(self) -> None:
        if self._stopping:
            return
        was = self.is_leader
        async with self._lock:
            if self._stopping:
                return
            self.is_leader = await self.leadership.ensure()
        if self.is_leader and not was:
            await self.tick()  # a new leader catches up at once instead of at the next interval

    @staticmethod
    async def _shielded(work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` so APScheduler's shutdown cannot cut it off halfway (stop() waits for it)."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # the scheduler is shutting down; the task itself carries on to the end

    async def soonest_due(self, now: datetime) -> datetime | None:
        """The earliest moment after `now` at which a ticker says it has work (if any says)."""
        soonest = None
        for fn in self.core.router.tickers.values():
            t = await next_due(self.core, fn, now)
            if t is not None and t > now and (soonest is None or t < soonest):
                soonest = t
        return soonest

    async def _plan_wakeup(self, now: datetime) -> None:
        """Wake up exactly when a ticker says work is due, if that is before the next interval."""
        if self._aps is None:
            return
        soonest = await self.soonest_due(now)
        if soonest is None or soonest - now >= timedelta(seconds=self.interval_s):
            return
        planned = datetime.now(UTC) + (soonest - now)
        self._aps.add_job(self._wakeup, DateTrigger(run_date=planned), args=[planned], id="wakeup",
                          replace_existing=True, misfire_grace_time=None)
