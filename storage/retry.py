"""The one retry policy: which failures are tried again, how often, and how long in between.

Every retry in staffvoice goes through a `Retry`: the dispatcher's admission and a pulse tap
when SQLite is busy (bot/), a statement that finds SQLite's write lock held (the inline SQLite
driver, storage/), a Bot Connector call that is throttled or fails in transit, and a Slack Web
API call refused with a 429 (adapters/).
It lives in `storage/`, the lowest layer, so that every layer may use it.

The delays grow exponentially from `base`, are never longer than `cap`, and are jittered
(each one drawn from [d/2, d]) so that writers who collided do not collide again. A server's
own wait (HTTP `Retry-After`, returned by `after`) is honoured: the delay is never shorter than
it (up to `cap`). `attempts` bounds the number of tries; `deadline`, if set, bounds the time
from the first failure instead. The first try costs nothing beyond the call itself.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import OperationalError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]


def _never(_e: BaseException) -> float | None:
    return None


@dataclass(frozen=True)
class Retry:
    """How to try an operation again. `retry_on(e)` says whether failure `e` may be retried."""

    retry_on: Callable[[BaseException], bool]
    attempts: int | None = 5  # tries in all, the first included; None: until `deadline`
    base: float = 0.01  # seconds before the second try (before jitter)
    cap: float = 1.0  # the longest single wait
    deadline: float | None = None  # seconds from the first failure after which none is retried
    after: Callable[[BaseException], float | None] = _never  # the server's own wait, if it said

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry policy needs attempts or a deadline")

    def delay(self, retry: int, error: BaseException | None = None) -> float:
        """The wait before retry number `retry` (0 for the first), jittered, with the
        server's wait for `error` honoured."""
        wanted = min(self.cap, self.base * (2 ** retry))
        wait = random.uniform(wanted / 2, wanted)
        asked = self.after(error) if error is not None else None
        if asked is not None:
            wait = max(wait, min(asked, self.cap))
        return wait

    def begin(self) -> Tries:
        """The count of one operation's tries, for a loop that cannot use `run` (a driver
        calling SQLite synchronously)."""
        return Tries(self)

    async def run(self, fn: Callable[[], Awaitable[T]], *, sleep: Sleep = asyncio.sleep,
                  on_retry: Callable[[BaseException, float], object] | None = None) -> T:
        """`await fn()`, tried again after a wait while it fails with a retryable error; the
        last error is raised as it was."""
        tries = self.begin()
        while True:
            try:
                return await fn()
            except Exception as e:
                wait = tries.wait(e)
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(e, wait)
            await sleep(wait)


class Tries:
    """One operation's tries under a policy."""

    def __init__(self, policy: Retry) -> None:
        self.policy = policy
        self.failed = 0
        self.first_failure: float | None = None

    def wait(self, error: BaseException) -> float | None:
        """How long to wait before trying again after `error`; None: raise it (it is not
        retryable, or the tries or the time are used up)."""
        p = self.policy
        if not p.retry_on(error):
            return None
        self.failed += 1
        if p.attempts is not None and self.failed >= p.attempts:
            return None
        now = time.monotonic()
        if self.first_failure is None:
            self.first_failure = now
        elif p.deadline is not None and now - self.first_failure >= p.deadline:
            return None
        return p.delay(self.failed - 1, error)


def database_busy(e: BaseException) -> bool:
    """SQLite refused a transaction a lock ("database is locked": another writer holds it, or
    this transaction's snapshot went stale), as SQLAlchemy or sqlite3 reports it: the whole
    transaction, tried again after a moment, succeeds."""
    return isinstance(e, OperationalError | sqlite3.OperationalError) and "locked" in str(e)


# A transaction SQLite refused for a lock (the dispatcher's admission, a pulse tap).
DATABASE_BUSY = Retry(database_busy, attempts=6, base=0.01, cap=0.2)
