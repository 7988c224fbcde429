"""An author's second urgent answer committed while the day's last release runs (N37).

The release turns an item urgent for everyone when its author's urgent answer goes out, and
clears `lead_concerns` (what only the leads read) unless another urgent answer still waits. It
read "does another wait?" and then wrote: on PostgreSQL (READ COMMITTED) an answer committed
between the two was not seen, and the flag was cleared while that answer waited. The leads
then lost what marks the waiting answer: a lead could change the item's status at once (the
change team sees the status move with no answer to show: the answer is dated, N37), and
acknowledging its alert set the item to "read". Built here with two sessions: the release
stops just before its write, the answer is sent meanwhile, then the release goes on. SQLite
has one writer (the release holds the write lock from its claim), so the answer waits there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.core import Core
from bot.feedback import release
from bot.feedback.tables import FeedbackItem, FeedbackMessage
from storage import sqlite_inline
from tests.anonymity.story import answer_urgently, at
from tests.anonymity.test_urgent_answer_listing import CONCERN, FIRST, replied_at_noon
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import LEADS, PRACTITIONER

AGAIN = "Today I saw the same child being slapped again, by her father this time."


class _Busy:
    """sqlite_inline's retry policy, noting that a statement found the write lock held."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.waited = False

    def begin(self) -> Any:
        self.waited = True
        return self.real.begin()


async def _sent_or_waiting(core: Core, sent: asyncio.Task[Any], busy: _Busy) -> None:
    """Return once `sent` has finished, or is waiting for a lock the release holds."""
    async with core.db.engine.connect() as probe:
        for _ in range(2000):
            if sent.done() or busy.waited:
                return
            if not core.db.is_sqlite:
                waiting = (await probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"))).scalar()
                await probe.commit()
                if waiting:
                    return
            await asyncio.sleep(0.005)
    raise AssertionError("the answer neither finished nor waited for the release")


async def test_an_urgent_answer_sent_while_the_release_runs_keeps_its_leads_flag(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The change team replies at 12:10; the author answers with a disclosure at 13:15 and,
    at 17:00 while the day's last release is running, answers again with another. The first
    answer goes out at 17:00; the second waits for the next day's release, so the item must
    still be marked for its leads: a lead's status change is refused. Before the fix the
    release cleared the mark (it had looked for a waiting urgent answer before the second
    was committed) and the lead's `feedback status` went through."""
    d = FakeDriver(loaded)
    day, ref = await replied_at_noon(d, loaded)
    at(loaded, day, 13, 15)
    await answer_urgently(d, PRACTITIONER, CONCERN)
    at(loaded, day, 16, 59)
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": AGAIN}) is None
    assert d.form(PRACTITIONER) is not None  # "Before you send": the author sends at 17:00

    async def send_again() -> None:
        assert await d.submit(PRACTITIONER, {"text": AGAIN}) is None

    busy = _Busy(sqlite_inline.BUSY)
    monkeypatch.setattr(sqlite_inline, "BUSY", busy)
    real: Callable[..., Awaitable[Any]] = AsyncConnection.execute
    sent: list[asyncio.Task[None]] = []

    async def execute(self: AsyncConnection, statement: Any, *args: Any, **kw: Any) -> Any:
        if not sent and str(statement).startswith("UPDATE feedback_items SET urgent"):
            # The release has read what waits and is about to write: the answer goes now.
            sent.append(asyncio.create_task(send_again()))
            await _sent_or_waiting(loaded, sent[0], busy)
        return await real(self, statement, *args, **kw)

    monkeypatch.setattr(AsyncConnection, "execute", execute)
    at(loaded, day, 17, 0)
    assert await release.release_due(loaded) == 1
    assert sent, "the release turned no item urgent"
    await sent[0]
    monkeypatch.setattr(AsyncConnection, "execute", real)

    async with loaded.db.session() as s:
        item = (await s.execute(select(FeedbackItem).where(
            FeedbackItem.text == FIRST))).scalar_one()
        waiting = (await s.execute(select(FeedbackMessage.text, FeedbackMessage.concerns).where(
            FeedbackMessage.item_id == item.id, FeedbackMessage.released.is_(False)))).all()
    assert [w.text for w in waiting] == [AGAIN]  # the second answer waits for tomorrow
    assert item.urgent  # the first went out at 17:00: urgent for everyone
    assert item.lead_concerns == waiting[0].concerns == ["child_risk"], item.lead_concerns
    at(loaded, day, 17, 5)
    await d.say(LEADS[0], f"feedback status #{ref} in_progress")
    assert "Nothing was changed" in d.seen(LEADS[0])[-1], d.seen(LEADS[0])[-1]
