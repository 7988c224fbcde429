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
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only

from bot.core import Core
from bot.feedback import release
from bot.feedback.tables import FeedbackItem, FeedbackMessage
from storage import sqlite_inline
from tests.anonymity.story import answer_urgently, at
from tests.anonymity.test_urgent_answer_listing import CONCERN, FIRST, replied_at_noon
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import LEADS, PRACTITIONER
from tests.test_milestones_shown import statements
from tests.web.test_signin import _client, _oidc

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


async def test_an_urgent_answer_sent_while_a_lead_acknowledges_its_item_is_kept(
        loaded: Core, server: Any) -> None:
    """The author's first disclosure went out at 17:00 (the item urgent and new for everyone,
    no urgent answer waiting). At 17:05 a lead presses Acknowledge on the dashboard just as the
    author sends a second disclosure. The acknowledgement marks the lead's alert and then sets
    the new item to read; the answer locks the item and then alerts the leads again. Before
    the fix, on PostgreSQL, each held the row the other wanted (the alert, the item): a
    deadlock, and the answer (the transaction PostgreSQL gave up) was lost, the author told
    something went wrong. Now the acknowledgement locks the item first, as the answer does."""
    d = FakeDriver(loaded)
    day, ref = await replied_at_noon(d, loaded)
    at(loaded, day, 13, 15)
    await answer_urgently(d, PRACTITIONER, CONCERN)
    at(loaded, day, 17, 0)
    assert await release.release_due(loaded) == 1
    async with loaded.db.session() as s:
        item = (await s.execute(select(FeedbackItem).where(
            FeedbackItem.text == FIRST))).scalar_one()
    assert item.urgent and item.status == "new" and item.lead_concerns is None
    at(loaded, day, 17, 5)
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": AGAIN}) is None
    assert d.form(PRACTITIONER) is not None  # "Before you send"

    async def send_again() -> Any:
        return await d.submit(PRACTITIONER, {"text": AGAIN})

    busy = _Busy(sqlite_inline.BUSY)
    sent: list[asyncio.Task[Any]] = []

    def hold(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not sent and statement.startswith("UPDATE feedback_items SET status"):
            # The acknowledgement has marked the alert and is about to set the item read:
            # the author's answer goes now (in this greenlet: the event is synchronous).
            sent.append(asyncio.get_running_loop().create_task(send_again()))
            await_only(_sent_or_waiting(loaded, sent[0], busy))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite_inline, "BUSY", busy)
        event.listen(loaded.db.engine.sync_engine, "before_cursor_execute", hold)
        try:
            server.oidc.sign_in_as(LEADS[0])
            async with _client(server) as http:
                assert (await _oidc(http, server)).status == 303
                page = await (await http.get(f"{server.url}/app/safeguarding")).text()
                token = page.split('name="csrf" value="')[1].split('"')[0]
                done = await http.post(f"{server.url}/app/safeguarding/acknowledge",
                                       data={"item": item.id, "csrf": token},
                                       allow_redirects=False)
            assert sent, "the acknowledgement set no status"
            errors = await sent[0]
        finally:
            event.remove(loaded.db.engine.sync_engine, "before_cursor_execute", hold)
    assert done.status == 303, (done.status, await done.text())
    assert errors is None and d.form(PRACTITIONER) is not None, d.seen(PRACTITIONER)[-1:]
    assert "sent anonymously" in str(d.form(PRACTITIONER)), d.form(PRACTITIONER)
    async with loaded.db.session() as s:
        item = (await s.execute(select(FeedbackItem).where(
            FeedbackItem.text == FIRST))).scalar_one()
        waiting = (await s.execute(select(FeedbackMessage.text).where(
            FeedbackMessage.item_id == item.id, FeedbackMessage.released.is_(False)))).all()
    assert [w.text for w in waiting] == [AGAIN]  # the second disclosure is kept, waiting
    assert item.lead_concerns == ["child_risk"]
    assert item.status == "read"  # acknowledged before the answer came


async def test_an_urgent_answer_reads_its_item_once_the_locked_read(loaded: Core) -> None:
    """The lock that keeps the release from clearing the leads' flag is the answer's one read
    of its item: before, the locked row was dropped at once (the session holds what it loaded
    only while something refers to it) and read again after the answer was stored, a
    statement more for every urgent answer."""
    d = FakeDriver(loaded)
    day, _ref = await replied_at_noon(d, loaded)
    at(loaded, day, 13, 15)
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": CONCERN}) is None  # "Before you send"
    with statements(loaded.db) as sent:
        assert await d.submit(PRACTITIONER, {"text": CONCERN}) is None
    reads = [" ".join(q.split()) for q in sent if " ".join(q.split()).startswith(
        "SELECT feedback_items.id,") and "WHERE feedback_items.id = " in " ".join(q.split())]
    assert len(reads) == 1, reads
    if not loaded.db.is_sqlite:
        assert reads[0].endswith("FOR NO KEY UPDATE"), reads
