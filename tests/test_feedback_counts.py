"""The daily feedback limit, counted in memory and written in batches (bot/feedback/counts.py).

An item's transaction writes no row about its sender; the count is held by the process that
took the send and written by its flusher. These stories check the limit still holds (one
process, two processes on one database, across a flush, two sends at once), that "Before you
send" counts sends not yet written, and what a crash or the end of the day does to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.config import Settings, SettingsError
from bot.core import Core, build_router
from bot.errors import FormInvalid
from bot.feedback import counts
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackDailyCount, FeedbackItem
from bot.people.tables import Person
from storage.db import Database
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give

LIMIT = "You have sent 5 pieces of feedback today, which is the daily limit."


async def told_limit(d: FakeDriver, email: str = PRACTITIONER) -> bool:
    """The form just opened is refused with the daily limit when sent: in the form, never
    the chat (N39)."""
    errors = await d.submit(email, {"text": "One more idea.", "theme": "", "replies": "false"})
    d.port.forms.pop(f"U-{email}", None)
    return errors is not None and LIMIT in errors["text"] and not any(
        LIMIT in m for m in d.seen(email))


async def written(core: Core) -> dict[str, int]:
    """The counts as stored, opened with the server key: key -> count."""
    return {k: n for day in (await counts.STAFF.every(core)).values() for k, n in day.items()}


async def stored_items(core: Core) -> int:
    async with core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(FeedbackItem))).scalar_one())


async def person_id(core: Core, email: str) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()


@asynccontextmanager
async def process(core: Core, db_class: type[Database] = Database) -> AsyncIterator[Core]:
    """A serving process on the test's database: its own engine and its own counts, and no
    flusher running (the test flushes, so nothing depends on timing)."""
    db = db_class(core.db.url)
    other = Core(db, settings=core.settings, clock=core.clock)
    await other.start()
    try:
        yield other
    finally:
        await db.dispose()


class Driver(FakeDriver):
    """A chat driver for one process: its event ids are its own (two drivers' ids would
    otherwise be taken for one platform's retries)."""

    def __init__(self, core: Core, process: str) -> None:
        super().__init__(core)
        self.process = process

    def _id(self) -> str:
        return f"{self.process}-{super()._id()}"


async def test_before_you_send_counts_sends_not_yet_written(loaded: Core) -> None:
    """A practitioner sends five in quick succession: nothing about them is written, yet the
    form is refused with the limit's words; the flush then writes one row counting five."""
    async with process(loaded) as one:
        await _five_then_refused(one)


async def _five_then_refused(loaded: Core) -> None:
    d = FakeDriver(loaded)
    for i in range(3):
        assert await give(d, PRACTITIONER, f"Idea number {'abc'[i]} about the tools.") is None
    assert await written(loaded) == {}  # the items' transactions wrote no counter
    assert await fb.sent_today(loaded, await person_id(loaded, PRACTITIONER)) == 3
    for i in range(2):
        assert await give(d, PRACTITIONER, f"Idea number {'de'[i]} about the tools.") is None
    await d.say(PRACTITIONER, "feedback")
    assert await told_limit(d)
    assert await written(loaded) == {} and await stored_items(loaded) == 5
    assert await counts.flush(loaded) == 5
    assert list((await written(loaded)).values()) == [5]
    assert await fb.sent_today(loaded, await person_id(loaded, PRACTITIONER)) == 5
    await d.say(PRACTITIONER, "feedback")  # still refused once written
    assert await told_limit(d)
    assert await give(d, OTHER, "Someone else can still send one.") is None


async def test_the_limit_holds_across_a_flush_and_a_second_process(loaded: Core) -> None:
    """Three sent through one process and written; the same person's next sends go to another
    process: it allows two more, refuses a form opened before the fifth in the form itself,
    stores nothing for it, and the first process refuses too once the second has written."""
    async with process(loaded) as first, process(loaded) as second:
        d = Driver(first, "first")
        for i in range(3):
            assert await give(d, PRACTITIONER, f"First batch idea {i + 1}.") is None
        assert await written(loaded) == {}
        await counts.flush(first)
        d2 = Driver(second, "second")
        assert await give(d2, PRACTITIONER, "Second process idea 1.") is None
        await d2.say(PRACTITIONER, "feedback")
        early = d2.form(PRACTITIONER)
        assert early is not None
        assert await give(d2, PRACTITIONER, "Second process idea 2.") is None
        d2.port.forms[f"U-{PRACTITIONER}"] = early  # the form opened before the fifth was sent
        errors = await d2.submit(PRACTITIONER, {"text": "A sixth idea.", "theme": "",
                                                "replies": "false"})
        assert errors is not None and LIMIT in errors["text"]
        await d2.say(PRACTITIONER, "feedback")
        assert await told_limit(d2)
        assert await stored_items(loaded) == 5
        assert list((await written(loaded)).values()) == [3]  # the second's two are held
        await counts.flush(second)
        assert list((await written(loaded)).values()) == [5]
        await d.say(PRACTITIONER, "feedback")  # the first process reads them once written
        assert await told_limit(d)


async def test_two_sends_at_once_at_the_limit_store_one(loaded: Core) -> None:
    """Four sent; two forms sent at the same moment: one is stored, the other refused."""
    async with process(loaded) as one:
        await _two_at_once(one)


async def _two_at_once(loaded: Core) -> None:
    pid = await person_id(loaded, PRACTITIONER)
    for i in range(4):
        await fb.store(loaded, pid, text=f"Idea {i}", theme_id=None, replies=False, concerns=())
    outcomes = await asyncio.gather(
        *(fb.store(loaded, pid, text=f"At once {i}", theme_id=None, replies=False, concerns=())
          for i in range(2)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, FormInvalid)]
    assert len(refused) == 1 and LIMIT in refused[0].errors["text"], outcomes
    assert await stored_items(loaded) == 5 and await written(loaded) == {}
    assert await fb.sent_today(loaded, pid) == 5
    await counts.flush(loaded)
    assert list((await written(loaded)).values()) == [5]


async def test_a_send_whose_transaction_fails_is_not_counted(loaded: Core) -> None:
    """The item's transaction (the caller's) fails after store(): no item, no count."""
    async with process(loaded) as one:
        pid = await person_id(one, PRACTITIONER)
        with pytest.raises(RuntimeError):
            async with counts.holding(one) as hold, one.db.transaction() as conn:
                await fb.store(one, pid, text="An idea.", theme_id=None, replies=False,
                               concerns=(), conn=conn, hold=hold)
                raise RuntimeError("the rest of the caller's transaction failed")
        assert await stored_items(one) == 0
        assert await fb.sent_today(one, pid) == 0 and counts.unwritten(one) == 0


async def test_a_crash_before_the_flush_loses_no_item(loaded: Core) -> None:
    """A process takes two items (one urgent) and dies before writing their counts: the
    items are stored and reach the change team and the leads; only the count is lost, so
    after a restart the sender may send that many more today (documented)."""
    async with process(loaded) as doomed:
        d = Driver(doomed, "doomed")
        assert await give(d, PRACTITIONER, "The new assessment template takes too long.") is None
        assert await give(d, PRACTITIONER, "A child told me they are being hurt at home.") is None
        assert counts.unwritten(doomed) == 2
        # killed here: no flush
    assert await stored_items(loaded) == 2 and await written(loaded) == {}
    async with loaded.db.session() as s:
        urgent = [i for i in await fb.list_items(s, urgent_only=True, lead=True)]
    assert len(urgent) == 1
    async with process(loaded) as restarted:
        d = Driver(restarted, "restarted")
        for i in range(5):
            assert await give(d, PRACTITIONER, f"After the restart, idea {i + 1}.") is None
        await counts.flush(restarted)
    assert list((await written(loaded)).values()) == [5]


async def test_counts_of_a_day_gone_are_dropped_and_the_new_day_starts_at_zero(loaded: Core) -> None:
    """Two sent late in the day and not yet written when the day ends: the daily tick forgets
    the day's counters and key, and the flush drops the two rather than write a past day."""
    async with process(loaded) as one:
        await _day_gone(one)


async def _day_gone(loaded: Core) -> None:
    d = FakeDriver(loaded)
    for i in range(2):
        assert await give(d, PRACTITIONER, f"Late idea {i + 1}.") is None
    assert await written(loaded) == {}
    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    await loaded.tick()
    assert await counts.flush(loaded) == 0
    assert await written(loaded) == {} and counts.unwritten(loaded) == 0
    for i in range(5):
        assert await give(d, PRACTITIONER, f"New day idea {i + 1}.") is None
    await counts.flush(loaded)
    assert list((await written(loaded)).values()) == [5]


async def test_every_process_runs_the_flusher_and_it_writes_at_shutdown(loaded: Core) -> None:
    """`serve` runs every router worker in each replica: the flusher is one. Stopped, it
    writes what it holds before it returns (a clean shutdown loses no count)."""
    assert build_router().workers["feedback-counts"] is counts.worker
    async with process(loaded) as replica:
        stop = asyncio.Event()
        task = asyncio.create_task(counts.worker(replica, stop, every=3600))
        d = FakeDriver(replica)
        assert await give(d, OTHER, "Court deadlines clash with network meetings.") is None
        assert await written(loaded) == {}
        stop.set()
        await task
        assert list((await written(loaded)).values()) == [1]


class PausedAfterCommit(Database):
    """A database whose next transaction, once committed, waits for the test: the moment a
    flush's counts are in the database and still held in memory."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pause_next = False
        self.committed = asyncio.Event()
        self.resume = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        paused, self.pause_next = self.pause_next, False
        async with super().transaction() as conn:
            yield conn
        if paused:
            self.committed.set()
            await self.resume.wait()


async def test_a_count_read_as_a_flush_commits_counts_each_send_once(loaded: Core) -> None:
    """Three sent and being written: a count read just after the flush's COMMIT (before the
    process has let go of the three) waits for it and counts three, not six."""
    async with process(loaded, PausedAfterCommit) as one:
        db = one.db
        assert isinstance(db, PausedAfterCommit)
        pid = await person_id(one, PRACTITIONER)
        for i in range(3):
            await fb.store(one, pid, text=f"Idea {i}", theme_id=None, replies=False, concerns=())
        async with db.transaction() as conn:
            day = await fb.today(conn, one.clock.now())
            key = await counts.counter_key(conn, one.secret, pid, day)
        db.pause_next = True
        flushing = asyncio.create_task(counts.flush(one))
        await db.committed.wait()
        async with db.engine.connect() as conn:
            reading = asyncio.create_task(counts.count(one, conn, key, day))
            await asyncio.sleep(0)  # the read starts inside the window
            db.resume.set()
            assert await reading == 3
        assert await flushing == 3
        assert await fb.sent_today(one, pid) == 3


def test_the_flush_interval_is_a_setting_with_a_clear_error() -> None:
    assert Settings.from_env({}).feedback_flush_s == 5
    assert Settings.from_env({"STAFFVOICE_FEEDBACK_FLUSH_INTERVAL": "0.5"}).feedback_flush_s == 0.5
    for bad, says in (("soon", "must be a number, not 'soon'"), ("0", "between 0.01 and 3600")):
        with pytest.raises(SettingsError) as e:
            Settings.from_env({"STAFFVOICE_FEEDBACK_FLUSH_INTERVAL": bad})
        assert "STAFFVOICE_FEEDBACK_FLUSH_INTERVAL" in str(e.value) and says in str(e.value)


async def test_two_processes_flushing_at_once_lose_none_of_each_others_counts(
        loaded: Core) -> None:
    """The day's counts are one sealed row that each flush opens, adds to and seals again:
    two processes flushing at the same moment take turns (PostgreSQL's advisory lock, SQLite's
    write lock), so neither overwrites what the other added."""
    async with process(loaded) as first, process(loaded) as second:
        d1, d2 = Driver(first, "first"), Driver(second, "second")
        for round_ in range(2):
            assert await give(d1, PRACTITIONER, f"First process idea {round_ + 1}.") is None
            assert await give(d2, PRACTITIONER, f"Second process idea {round_ + 1}.") is None
            assert await give(d2, OTHER, f"Another idea {round_ + 1}.") is None
            assert sorted(await asyncio.gather(counts.flush(first), counts.flush(second))) \
                == [1, 2]
        assert sorted((await written(loaded)).values()) == [2, 4]
        await d1.say(PRACTITIONER, "feedback")
        assert not await told_limit(d1)  # four of five
        await d1.say(PRACTITIONER, "feedback")
        assert await told_limit(d1)  # the fifth, held by the first process, then the limit


class Threaded(Database):
    """A process whose SQLite calls run on a worker thread (aiosqlite): two such processes'
    flushes interleave at every statement, as two processes on one file do. On the inline
    driver a flush never yields to the other, so the turn-taking went untested on SQLite
    (found in review, review24: without the write lock taken before the read, `[1, 2]` for
    `[3, 3]` and one person waiting for two). PostgreSQL: the engine as it is."""

    def __init__(self, url: str) -> None:
        super().__init__(url.replace("sqlite+svinline:", "sqlite+aiosqlite:"))


async def test_two_processes_flushing_statement_by_statement_lose_nothing(loaded: Core) -> None:
    """Two processes, each with a person's sends and release mark, flush together three times:
    the day's counts read 3 and 3, and two people wait for the midday release."""
    from bot.feedback import senders

    async with process(loaded, Threaded) as first, process(loaded, Threaded) as second:
        d1, d2 = Driver(first, "first"), Driver(second, "second")
        for round_ in range(3):
            assert await give(d1, PRACTITIONER, f"First process idea {round_ + 1}.") is None
            assert await give(d2, OTHER, f"Second process idea {round_ + 1}.") is None
            if round_ == 0:  # the marks on their own first: each flush writes one
                assert await asyncio.gather(senders.flush(first), senders.flush(second)) \
                    == [1, 1]
                async with loaded.db.transaction() as conn:
                    assert await senders.waiting(loaded, conn, senders.STAFF) == 2
            assert await asyncio.gather(counts.flush(first), counts.flush(second)) == [1, 1]
        assert sorted((await written(loaded)).values()) == [3, 3]
        async with loaded.db.transaction() as conn:
            assert await senders.waiting(loaded, conn, senders.STAFF) == 2


async def test_a_counter_row_that_cannot_be_opened_is_logged_and_loses_no_item(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    """The day's sealed counts damaged (or written under another STAFFVOICE_SECRET_KEY): the
    next form is not refused and its item is stored; the operator's log says why in so many
    words, at the flush, never at a form's second; the day's counts restart from the next
    flush (the limit counts from zero)."""
    d = FakeDriver(loaded)
    for i in range(4):
        assert await give(d, PRACTITIONER, f"Idea number {'abcd'[i]} about the tools.") is None
    await counts.flush(loaded)
    assert list((await written(loaded)).values()) == [4]
    async with loaded.db.transaction() as conn:
        [(day, sealed_)] = (await conn.execute(select(
            FeedbackDailyCount.day, FeedbackDailyCount.sealed))).all()
        damaged = bytes(sealed_[:-1]) + bytes([sealed_[-1] ^ 1])
        await conn.execute(update(FeedbackDailyCount).values(sealed=damaged, stamp="damaged"))
    with caplog.at_level(logging.ERROR, logger="staffvoice.feedback"):
        assert await give(d, PRACTITIONER, "A fifth idea, sent anyway.") is None
        assert await give(d, PRACTITIONER, "A sixth, the counts restarted.") is None
        assert not caplog.records  # no line at a form's second (it would date the item)
        assert await counts.flush(loaded) == 2
    assert await stored_items(loaded) == 6
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert said and all("feedback_daily_counts: the counts of" in m and "cannot be opened"
                        in m and "STAFFVOICE_SECRET_KEY" in m for m in said), said
    assert list((await written(loaded)).values()) == [2]  # a fresh row, sealed again
    assert day in await counts.STAFF.every(loaded)


async def test_waiting_marks_that_cannot_be_opened_hold_the_midday_release(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    """The staff listing's sealed marks damaged: the noon release counts nobody waiting and
    waits for the day's last (the safe side), logging why; nothing is lost."""
    from bot.feedback import senders
    from bot.feedback.tables import FeedbackReleaseSender

    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=10, minute=0, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled.") is None
    assert await give(d, OTHER, "The case recording form takes twice as long.") is None
    await counts.flush(loaded)
    async with loaded.db.transaction() as conn:
        assert await senders.waiting(loaded, conn, senders.STAFF) == 2
        await conn.execute(update(FeedbackReleaseSender).values(sealed=b"\0" * 40))
    with caplog.at_level(logging.ERROR, logger="staffvoice.feedback"):
        loaded.clock.set(day.replace(hour=12, minute=1))  # type: ignore[attr-defined]
        await d.say(CHANGE, "feedback list all")
    assert "Supervision" not in d.seen(CHANGE)[-1]
    assert any("marks of staff cannot be opened" in r.getMessage() for r in caplog.records)
    loaded.clock.set(day.replace(hour=17, minute=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    assert "Supervision" in d.seen(CHANGE)[-1] and "case recording" in d.seen(CHANGE)[-1]


async def test_the_sealed_rows_gone_leave_no_copy_in_the_sqlite_file(loaded: Core) -> None:
    """On a SQLite built as SQLite ships it (`secure_delete` off; Debian's build turns it on),
    neither the counters row of a day gone, nor the public pages' rate row, nor the marks row
    a release deleted is left in the file's free pages once checkpointed: opened with the
    server key, each says whose count, or who waited, which N4 and N25 admit only of the WAL
    until a checkpoint (found in review, review24: the three were still there; the rate row,
    keyed by address under a key that outlives the day, for as long as its pages stayed free).
    A guard: a counters row outgrown (601 counters, the next size class) leaves no copy."""
    if not loaded.db.is_sqlite:
        pytest.skip("file scan is for SQLite; PostgreSQL keeps dead tuples until VACUUM")
    from pathlib import Path

    from sqlalchemy import event

    from bot.families import service as families
    from bot.families.tables import FamilyRate
    from bot.feedback.tables import FeedbackReleaseSender
    from tests.test_feedback_helpers import release

    def plain_build(dbapi_conn: object, _record: object) -> None:
        dbapi_conn.cursor().execute("PRAGMA secure_delete=0")  # type: ignore[attr-defined]

    await loaded.db.engine.dispose()
    event.listen(loaded.db.engine.sync_engine, "connect", plain_build)
    d = FakeDriver(loaded)

    async def row(table: type) -> bytes:
        async with loaded.db.transaction() as conn:
            return bytes((await conn.execute(select(table.sealed))).scalar_one())

    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled.") is None
    await counts.flush(loaded)
    outgrown = await row(FeedbackDailyCount)
    async with loaded.db.transaction() as conn:
        day = await fb.today(conn, loaded.clock.now())
    staff = counts.STAFF.counts(loaded)
    for i in range(600):  # 601 counters: the row's next size class
        staff.due[(day, f"{i:064x}")] = 1
    families.RATES.counts(loaded).due[(day, "ab" * 32)] = 1
    await counts.flush(loaded)
    marks, rates, last = (await row(FeedbackReleaseSender), await row(FamilyRate),
                          await row(FeedbackDailyCount))
    assert len(last) > len(outgrown)
    # Each step on new connections: a pragma set on a pooled one stays set on it.
    await release(loaded)
    await loaded.db.engine.dispose()
    tomorrow = loaded.clock.now() + timedelta(days=1)
    await fb.tick(loaded, tomorrow)
    await loaded.db.engine.dispose()
    await families.tick(loaded, tomorrow)
    async with loaded.db.transaction() as conn:
        for table in (FeedbackDailyCount, FamilyRate, FeedbackReleaseSender):
            assert (await conn.execute(select(func.count()).select_from(table))).scalar() == 0
    path = Path(loaded.db.url.split("///", 1)[1])
    async with loaded.db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    left = [name for name, sealed in (("outgrown counters", outgrown), ("marks", marks),
                                      ("rates", rates), ("counters", last))
            if sealed[12:40] in raw or sealed[-28:] in raw]
    assert left == []
