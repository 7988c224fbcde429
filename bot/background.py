"""Background work takes its turn behind requests: one piece at a time, after the loop has
looked for new requests and started them.

With the default SQLite driver (`sqlite+svinline`) a database call does not yield, so one
event's handling after its ack (Slack), or one scheduled job, runs as a single step of 5-10 ms
of CPU. Started as soon as they were ready, several such steps ran back to back while a newly
arrived request, whose answer is due at once (Slack's ack, a Teams turn), waited behind all
of them (bench/README.md, "twelfth session: scheduling"). Work that answers nobody's request
now waits for `turn()` before each heavy step: the turns are given one at a time, in the
order asked, and each only once the loop has polled its sockets and run the first steps of
the requests that arrived meanwhile. Nothing is dropped or reordered among background work;
it only goes behind requests that came in before its turn.
"""

from __future__ import annotations

import asyncio
import weakref

# A timer, however short, expires only after the loop's next poll for I/O, which queues the
# callbacks of the requests that arrived; those run first and start their handlers (a plain
# `sleep(0)` resumes before that poll: tests/test_background_turns.py shows both). Then
# AFTER_POLL more steps of the loop: a handler that hands its work to a task of its own (a
# Slack form's submission, SlackAdapter.on_submit) has that task run first too
# (tests/slack/test_background_order.py).
POLL_S = 1e-6
AFTER_POLL = 1

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


async def turn() -> None:
    """Wait until background work may run one step: after the previous piece's step, and
    after every request that arrived by then has started."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    async with lock:
        await asyncio.sleep(POLL_S)
        for _ in range(AFTER_POLL):
            await asyncio.sleep(0)
