"""Background work takes its turn behind requests: one piece at a time, after the loop has
looked for new requests and started them, but never for longer than `MAX_WAIT_S`.

With the default SQLite driver (`sqlite+svinline`) a database call does not yield, so one
event's handling after its ack (Slack), or one scheduled job, runs as a single step of 5-10 ms
of CPU. Started as soon as they were ready, several such steps ran back to back while a newly
arrived request, whose answer is due at once (Slack's ack, a Teams turn), waited behind all
of them (bench/README.md, "twelfth session: scheduling"). Work that answers nobody's request
now waits for `turn()` before each heavy step: the turns are given one at a time, in the
order asked, and each only once the loop has polled its sockets and run the first steps of
the requests that arrived meanwhile. Nothing is dropped or reordered among background work;
it only goes behind requests that came in before its turn.

Ageing: one turn per poll is one piece of background work per batch of arrivals. Near
saturation arrivals come faster than that, and the queue behind the turns grew until the
person waiting for a Slack answer (posted after the ack) saw it 4x later than without turns
(bench/README.md, "twelfth session, end"). So a piece that has waited `MAX_WAIT_S` since it
became ready takes its turn at once, without waiting for a poll: an old backlog is worked off
in arrival order, interleaved with the requests (as before turns), and only work younger than
that bound goes behind new arrivals.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

# A timer, however short, expires only after the loop's next poll for I/O, which queues the
# callbacks of the requests that arrived; those run first and start their handlers (a plain
# `sleep(0)` resumes before that poll: tests/test_background_turns.py shows both). Then
# AFTER_POLL more steps of the loop: a handler that hands its work to a task of its own (a
# Slack form's submission, SlackAdapter.on_submit) has that task run first too
# (tests/slack/test_background_order.py).
POLL_S = 1e-6
AFTER_POLL = 1

# Work ready for this long takes its turn without waiting behind new arrivals (the ageing
# rule). With turns, the quiet machine's until-seen p99 at half the baseline's rate was 35 and
# 66 ms (two runs): at 50 ms the rule leaves most of that alone and bounds the wait near
# saturation, where it was 183 ms. A first guess, for the A/B (bench/README.md, lat10);
# `math.inf` switches ageing off, TURNS = False the turns (LOAD_HOOK files in bench/ab/).
MAX_WAIT_S = 0.05
TURNS = True

# Where ages are read from (tests count with a clock of their own).
clock: Callable[[], float] = time.monotonic


@dataclass
class Turns:
    """One event loop's turns: who holds the next one, and counts for benches and tests."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    given: int = 0  # turns given after a poll
    aged: int = 0  # turns taken at once by work older than MAX_WAIT_S


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


def turns() -> Turns:
    """This event loop's turns."""
    loop = asyncio.get_running_loop()
    found = _TURNS.get(loop)
    if found is None:
        found = _TURNS[loop] = Turns()
    return found


def now() -> float:
    """The time to pass as `turn(since=...)`: when a piece of work became ready."""
    return clock()


async def turn(since: float | None = None) -> None:
    """Wait until background work may run one step: after the previous piece's step, and
    after every request that arrived by then has started; at once if the work has been
    ready for `MAX_WAIT_S` (since `since`, a `now()` reading, else since this call)."""
    if not TURNS:
        return
    state = turns()
    ready = clock() if since is None else since
    async with state.lock:
        if clock() - ready >= MAX_WAIT_S:  # never with MAX_WAIT_S = math.inf
            state.aged += 1
            return
        await asyncio.sleep(POLL_S)
        for _ in range(AFTER_POLL):
            await asyncio.sleep(0)
        state.given += 1
