"""The loop of every flusher: writes about people held in memory per process and written
every few seconds, apart from the moment they describe (docs/invariants.md N4, N12, N18,
N21). Each holder (bot/feedback/counts.py, bot/privacy/notice.py, bot/people/held.py) has
its own `flush(core)`; this runs it every `STAFFVOICE_FEEDBACK_FLUSH_INTERVAL` seconds, as a
router worker in every `serve` replica, or around a block (the console, tests)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.core import Core


class Worker(Protocol):
    def __call__(self, core: Core, stop: asyncio.Event, every: float | None = None,
                 ) -> Coroutine[Any, Any, None]: ...


def worker_for(flush: Callable[[Core], Awaitable[int]], log: logging.Logger,
               what: str) -> Worker:
    """A router worker that calls `flush` every `every` seconds (default: the settings'
    `feedback_flush_s`) until `stop`, then once more. A failed flush is logged ("`what` not
    written") and tried again at the next: each holder keeps what it could not write."""

    async def worker(core: Core, stop: asyncio.Event, every: float | None = None) -> None:
        period = core.settings.feedback_flush_s if every is None else every
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), period)
            except TimeoutError:
                pass
            try:
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
