"""One reader per process behind a live stream, fanned out to every open connection.

A `Feed` reads with its `read` coroutine every `every` seconds while anyone subscribes (and at
once when someone new does), and hands each reading to every subscriber: a hundred open pages
cost one database read per interval, not a hundred. It also caps how many subscriptions are
open in the process and per sign-in session, so a reconnecting crowd cannot exhaust the
server: `subscribe` raises `Full`, which the page answers with 503 or 429 and Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("staffvoice.web")
T = TypeVar("T")


class Full(Exception):
    """No room for another stream: `status` 503 (the process is full) or 429 (this session is)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Subscription(Generic[T]):
    """One open stream's view of the feed: the latest reading, and whether the feed closed."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.closed = False
        self._latest: T | None = None
        self._fresh = asyncio.Event()

    def put(self, reading: T) -> None:
        self._latest = reading  # a slow reader skips to the newest reading: each one is whole
        self._fresh.set()

    def close(self) -> None:
        self.closed = True
        self._fresh.set()

    async def next(self, timeout: float) -> T | None:
        """The next reading, or None if none came within `timeout` seconds (or the feed closed)."""
        try:
            await asyncio.wait_for(self._fresh.wait(), max(timeout, 0.0))
        except TimeoutError:
            return None
        self._fresh.clear()
        reading, self._latest = self._latest, None
        return None if self.closed else reading


class Feed(Generic[T]):
    """A reading shared by every subscriber; see the module's docstring."""

    def __init__(self, read: Callable[[], Awaitable[T]], every: float) -> None:
        self._read = read
        self._every = every
        self._subs: set[Subscription[T]] = set()
        self._per_session: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.readings = 0  # how many times `read` ran (for tests and benchmarks)

    @property
    def open(self) -> int:
        return len(self._subs)

    def subscribe(self, session: str, *, limit: int, per_session: int) -> Subscription[T]:
        """A new subscription for `session`, or `Full` when `limit` streams are open in this
        process or `per_session` in this session."""
        if len(self._subs) >= limit:
            raise Full(503, "The live figures are busy: too many pages are following them. "
                            "The page still shows the figures as they were; try again shortly.")
        if self._per_session[session] >= per_session:
            raise Full(429, "This sign-in already follows the live figures in other tabs or "
                            "windows. Close one of them, or try again shortly.")
        sub: Subscription[T] = Subscription(session)
        self._subs.add(sub)
        self._per_session[session] += 1
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-feed")
        return sub

    def unsubscribe(self, sub: Subscription[T]) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._per_session[sub.session] -= 1
            if self._per_session[sub.session] <= 0:
                del self._per_session[sub.session]

    def close(self) -> None:
        """At shutdown: end every subscription now."""
        for sub in list(self._subs):
            sub.close()
            self.unsubscribe(sub)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            while self._subs:
                self._wake.clear()
                waiting = list(self._subs)  # those who joined during the read get the next one
                try:
                    reading = await self._read()
                except Exception:  # a database hiccup: the streams wait for the next reading
                    log.exception("live feed read failed")
                else:
                    self.readings += 1
                    for sub in waiting:
                        sub.put(reading)
                try:
                    await asyncio.wait_for(self._wake.wait(), self._every)
                except TimeoutError:
                    pass
        finally:
            self._task = None
