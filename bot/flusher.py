"""The loop of every flusher: writes about people held in memory per process and written
every few seconds, apart from the moment they describe (docs/invariants.md N4, N12, N18,
N21). Each holder (bot/feedback/counts.py, bot/privacy/notice.py, bot/people/held.py) has
its own `flush(core)`; this runs it every `STAFFVOICE_FEEDBACK_FLUSH_INTERVAL` seconds, as a
router worker in every `serve` replica, or around a block (the console, tests)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot import background

if TYPE_CHECKING:
    from bot.core import Core


class Worker(Protocol):
    def __call__(self, core: Core, stop: asyncio.Event, every: float | None = None,
                 ) -> Coroutine[Any, Any, None]: ...


# A flush that rewrites every row of a big table is spaced out: its held writes wait at least
# a second for every REWRITE_RATE rows it last gave a new version, at most MAX_SPACING seconds
# (200,000 rows: 40 s), so the rewrite's cost per second stops growing with the organisation
# (bench/README.md, "flush arithmetic"). Holding longer makes each batch bigger, never smaller.
REWRITE_RATE = 5_000
MAX_SPACING = 120.0


@dataclass
class Spacing:
    """When a holder's rewrite last happened and how many rows it gave a new version."""

    rows: int = 0
    at: float = -math.inf  # time.monotonic() of the last rewrite

    def wrote(self, rows: int, now: float | None = None) -> None:
        """A rewrite of `rows` rows just committed."""
        self.rows, self.at = rows, time.monotonic() if now is None else now

    def wait(self) -> float:
        """Seconds the next rewrite waits after this one."""
        return min(MAX_SPACING, self.rows / REWRITE_RATE)

    def due(self, now: float | None = None) -> bool:
        """The worker may flush now (a direct call, the scheduler's or the last one at
        shutdown, always does)."""
        return (time.monotonic() if now is None else now) - self.at >= self.wait()


# Every holder's flush, as its worker was made (in import order): `flush_all` runs them.
_FLUSHES: list[tuple[Callable[[Core], Awaitable[int]], logging.Logger, str]] = []


async def flush_all(core: Core, within: float | None = None) -> list[str]:
    """Write what every holder keeps for `core`, once each; a failure is logged and the
    others still flush. `serve` calls it last, once the adapters have finished the events
    they had taken (what those held after the workers' own last flush).

    `within`: seconds for them all (serve's shutdown deadline); None, no limit. A flush
    still running then is cut (cancelled: its transaction rolls back), and it and those
    after it are said in the log at WARNING, by name, as not written: a hung database must
    not keep the process past its grace to SIGKILL, which would lose them all the same.
    Returns what was cut."""
    loop = asyncio.get_running_loop()
    end = None if within is None else loop.time() + within
    cut: list[str] = []
    for flush, log, what in _FLUSHES:
        left = None if end is None else end - loop.time()
        if left is not None and (cut or left <= 0):
            cut.append(what)
            log.warning("%s not written at shutdown: no time left before the deadline", what)
            continue
        try:
            await asyncio.wait_for(flush(core), left)
        except TimeoutError:
            cut.append(what)
            log.warning("%s not written at shutdown: the flush was cut at the deadline "
                        "(%.1f s)", what, within or 0.0)
        except Exception:
            log.exception("%s not written at shutdown", what)
    return cut


def worker_for(flush: Callable[[Core], Awaitable[int]], log: logging.Logger,
               what: str, due: Callable[[Core], bool] | None = None) -> Worker:
    """A router worker that calls `flush` every `every` seconds (default: the settings'
    `feedback_flush_s`) until `stop`, then once more. With `due` (the holder's spacing, per
    Core: `Spacing.due`), a flush waits until it says so, except the last. A failed flush
    is logged ("`what` not written") and tried again at the next: each holder keeps what it
    could not write."""
    _FLUSHES.append((flush, log, what))

    async def worker(core: Core, stop: asyncio.Event, every: float | None = None) -> None:
        period = core.settings.feedback_flush_s if every is None else every
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), period)
            except TimeoutError:
                pass
            if due is not None and not stop.is_set() and not due(core):
                continue  # kept for a later flush: the last rewrite was recent
            try:
                if not stop.is_set():  # the last flush, at shutdown, waits for nothing
                    await background.turn()
                await flush(core)
            except Exception:
                log.exception("%s not written; trying again", what)

    return worker


def running(worker: Worker, name: str) -> Callable[..., AbstractAsyncContextManager[None]]:
    """`flushing(core, every=None)`: run `worker` for a block, flushing once more at its end."""

    @asynccontextmanager
    async def flushing(core: Core, every: float | None = None) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(worker(core, stop, every), name=name)
        try:
            yield
        finally:
            stop.set()
            await task

    return flushing
