"""The daily feedback counters: held in memory, written in batches, never next to an item.

Two counters (`Counter`) work alike: staff feedback's per person (`STAFF`, keyed under the
day's own key) and the public families pages' per network address (bot/families/service.py,
`RATES`). An item is stored in a transaction that writes no row about its sender
(docs/invariants.md, N4). The sender's count for the day is held here, per process, and
written by the flusher every few seconds, each counter in a transaction of its own that opens
the day's one sealed row (every key's count, bot/feedback/sealed.py), adds every pending count
and seals it again, padded to its size class, with a new nonce: the row carries that batch's
`xmin` and never an item's, and a dump without the server key shows one row of one length a
day, whoever sent and however many each (N40; before, a row per sender with their count).

The limit is checked against the committed count (a read, which changes no row; the opened
row is kept per process until its stamp changes) plus this process's counts not yet written.
Replicas each hold and write their own, taking turns (an advisory lock on PostgreSQL, SQLite's
write lock), so neither loses the other's counts; across replicas the limit can be passed by
what the others accepted since their last flush (one interval's sends); counts not yet written
when a process dies are lost (its items are not). A row that cannot be opened (another server
key, damaged) is logged as an error and counted as empty: the day's limits restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, bindparam, case, null, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import flusher
from bot.feedback import senders
from bot.feedback.sealed import open_counts, seal, stamp
from bot.feedback.tables import FeedbackDailyCount, FeedbackDayKey
from bot.programme.core_sections import programme_zone
from bot.secrets import Unsealable, derive, keyed_hash, open_bytes, seal_bytes
from storage.base import Base
from storage.db import connection_of, upsert
from storage.prepared import Prepared

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.feedback")

# PostgreSQL advisory lock (any fixed 64-bit number distinct from storage.db's): replicas
# flush one at a time, so each flush opens the day's row with the others' counts in it.
FLUSH_LOCK = 0x5F5F_7376_0F0C
DAY_KEY_LABEL = "staffvoice feedback day key v1"

Slot = tuple[date, str]  # (day, counter key)


async def today(s: AsyncSession | AsyncConnection, now: datetime) -> date:
    """The programme's calendar day: feedback is dated no more precisely than this."""
    return now.astimezone(await programme_zone(s)).date()


# -- the day's key ----------------------------------------------------------------------------

# The opened key of the day last read from a committed row, per database: every submission
# needs it, and a day's key never changes once made. Dropped when the day's key is destroyed.
_DAY_KEYS: WeakKeyDictionary[Engine, tuple[date, bytes]] = WeakKeyDictionary()
_DAY_KEY = select(FeedbackDayKey.sealed).where(FeedbackDayKey.day == bindparam("day"))


async def counter_key(s: AsyncSession | AsyncConnection, secret: bytes, person_id: str,
                      day: date) -> str:
    """The person's counter for `day`, under the day's own secret (made on first use)."""
    conn = await connection_of(s)
    hit = _DAY_KEYS.get(conn.sync_engine)
    if hit is not None and hit[0] == day:
        return keyed_hash(hit[1], "feedback-daily", person_id)
    box = derive(secret, DAY_KEY_LABEL)
    sealed = (await conn.execute(_DAY_KEY, {"day": day})).scalar()
    committed = sealed is not None  # made by another transaction (ours may yet roll back)
    if sealed is None:
        await conn.execute(upsert(conn.dialect.name, FeedbackDayKey).values(
            day=day, sealed=seal_bytes(box, day.isoformat(), os.urandom(32)))
            .on_conflict_do_nothing(index_elements=["day"]))
        sealed = (await conn.execute(_DAY_KEY, {"day": day})).scalar()
        assert sealed is not None
    opened = open_bytes(box, day.isoformat(), sealed)
    if committed:
        _DAY_KEYS[conn.sync_engine] = (day, opened)
    return keyed_hash(opened, "feedback-daily", person_id)


def forget_day_keys(engine: Engine, before: date) -> None:
    """Drop the opened key of a day before `before` (its sealed row is being destroyed)."""
    hit = _DAY_KEYS.get(engine)
    if hit is not None and hit[0] < before:
        del _DAY_KEYS[engine]


# -- counts held in memory, written in batches --------------------------------------------------


@dataclass
class _Counts:
    """One process's counts not yet written (per Core: a test's two Cores are two processes)."""

    due: dict[Slot, int] = field(default_factory=dict)  # sent, not yet written
    flushing: dict[Slot, int] = field(default_factory=dict)  # being written now
    held: dict[Slot, int] = field(default_factory=dict)  # items whose transaction is open
    committing: bool = False  # a flush's COMMIT is under way (it may or may not be visible)
    flushes: int = 0  # flushes ended (committed or not)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one flush at a time
    # The committed counts of a day last opened, under the row's stamp: a form does not open
    # the sealed row again until another flush has changed it.
    opened: dict[date, tuple[str, dict[str, int]]] = field(default_factory=dict)

    def pending(self, slot: Slot) -> int:
        return self.due.get(slot, 0) + self.flushing.get(slot, 0) + self.held.get(slot, 0)


def _add(to: dict[Slot, int], slot: Slot, n: int) -> None:
    left = to.get(slot, 0) + n
    if left:
        to[slot] = left
    else:
        to.pop(slot, None)


class Hold:
    """Sends counted while their item's transaction is open: kept if the block ends well,
    taken back if it raises (`Counter.holding`)."""

    def __init__(self, counts: _Counts) -> None:
        self._counts = counts
        self._slots: list[Slot] = []
        self._then: list[Callable[[], None]] = []

    def then(self, kept: Callable[[], None]) -> None:
        """Call `kept` if the block ends well (a release mark, bot/feedback/senders.py)."""
        self._then.append(kept)

    def take(self, day: date, key: str) -> None:
        """Count one send now (call with no await between the check and this)."""
        _add(self._counts.held, (day, key), 1)
        self._slots.append((day, key))

    def _end(self, *, kept: bool) -> None:
        for slot in self._slots:
            _add(self._counts.held, slot, -1)
            if kept:
                _add(self._counts.due, slot, 1)
        self._slots.clear()
        then, self._then = self._then, []
        if kept:
            for f in then:
                f()


_ADVISORY = text("SELECT pg_advisory_xact_lock(:k)")


class Counter:
    """One table's daily counters, held per process and written by the flusher (`flush`).

    The caller makes the keys (a keyed hash naming whom the count is about) and checks its
    own limit against `count`; every counter made is written by every process's flusher. The
    table keeps ONE row per day: every key's count of the day, sealed and padded to a size
    class (bot/feedback/sealed.py, N40), so a dump without the server key does not say how
    many sent that day, nor how many each."""

    def __init__(self, table: type[Base], lock: int) -> None:
        self.table = table  # its columns: day (the primary key), stamp, sealed
        self.lock = lock  # the PostgreSQL advisory lock its replicas take turns on
        self.name: str = table.__tablename__
        self._of: WeakKeyDictionary[Core, _Counts] = WeakKeyDictionary()
        self._c = c = table.__table__.c
        # The stamp, and the sealed counts only if they are not the ones this process holds
        # opened already (every form reads it: storage/prepared.py).
        self._read_run = Prepared(select(c["stamp"], case(
            (c["stamp"] == bindparam("have"), null()), else_=c["sealed"])).where(
                c["day"] == bindparam("day")))
        self._read_sealed = select(c["sealed"]).where(c["day"] == bindparam("day"))
        # stamp = stamp: SQLite's write lock taken before the read, so two writers cannot both
        # read the same counts and one overwrite the other's (PostgreSQL: the advisory lock).
        self._claim = update(table).where(c["day"] == bindparam("d")).values(stamp=c["stamp"])
        COUNTERS.append(self)

    def counts(self, core: Core) -> _Counts:
        counts = self._of.get(core)
        if counts is None:
            counts = self._of[core] = _Counts()
            counts.settled.set()
        return counts

    def _aad(self, day: date) -> str:
        return f"{self.name}|{day.isoformat()}"

    def _open(self, core: Core, day: date, sealed: bytes | None, *, tell: bool = True
              ) -> dict[str, int]:
        """The day's counts in `sealed`; none if they cannot be opened (another server key, or
        damaged), the day's limits restarting rather than a form fail or an item be lost; the
        error is logged by the flusher (`tell`), never on a form's read: a line at the second
        a form was sent would date its item (tests/anonymity/test_log_times.py)."""
        if sealed is None:
            return {}
        try:
            return open_counts(core.secret, self._aad(day), bytes(sealed))
        except Unsealable as e:
            if tell:
                log.error("%s: the counts of %s cannot be opened (%s): is STAFFVOICE_SECRET_KEY "
                      "the one they were written with? Counted as none; the day's limits "
                          "restart from here", self.name, day.isoformat(), e)
            return {}

    async def stored(self, core: Core, conn: AsyncConnection, day: date) -> dict[str, int]:
        """Every key's committed count on `day` (with the server key: what the row holds)."""
        counts = self.counts(core)
        have = counts.opened.get(day)
        row = await self._read_run.first(conn, {"day": day, "have": have[0] if have else ""})
        if row is None:
            return {}
        if row[1] is None and have is not None:
            return have[1]  # unchanged since this process opened it
        opened = self._open(core, day, row[1], tell=False)  # the flusher tells
        for d in [d for d in counts.opened if d < day]:
            del counts.opened[d]  # a day past: its row is gone or going
        counts.opened[day] = (str(row[0]), opened)
        return opened

    async def every(self, core: Core) -> dict[date, dict[str, int]]:
        """Every stored day's counts, opened with the server key (what the rows hold, for
        whoever has that key: the tests' intruder, an operator)."""
        async with core.db.transaction() as conn:
            rows = (await conn.execute(select(self._c["day"], self._c["sealed"]))).all()
        return {d: self._open(core, d, sealed) for d, sealed in rows}

    async def count(self, core: Core, conn: AsyncConnection, key: str, day: date) -> int:
        """Sends counted for `key` on `day`: the committed count plus this process's pending
        ones.

        The read is taken again if one of this process's flushes committed meanwhile (its
        counts would otherwise be missed, or counted twice)."""
        counts = self.counts(core)
        while True:
            if counts.committing:
                await counts.settled.wait()
                continue
            before = counts.flushes
            stored = await self.stored(core, conn, day)
            if counts.committing or counts.flushes != before:
                continue
            return stored.get(key, 0) + counts.pending((day, key))

    async def take(self, core: Core, conn: AsyncConnection, hold: Hold, key: str, day: date,
                   limit: int) -> bool:
        """Count one send for `key` in `hold` if fewer than `limit` are counted on `day`;
        False, counting nothing, at the limit. No await between the count and the taking, so
        two sends at once cannot both pass."""
        if await self.count(core, conn, key, day) >= limit:
            return False
        hold.take(day, key)
        return True

    @asynccontextmanager
    async def holding(self, core: Core) -> AsyncIterator[Hold]:
        """A hold for sends counted inside the block; wrap the item's transaction in it, so a
        send counts only once its item is committed."""
        hold = Hold(self.counts(core))
        try:
            yield hold
        except BaseException:
            hold._end(kept=False)
            raise
        hold._end(kept=True)

    def unwritten(self, core: Core) -> int:
        """How many sends this process holds that are not written yet."""
        counts = self.counts(core)
        return sum(counts.due.values()) + sum(counts.flushing.values())

    async def flush(self, core: Core) -> int:
        """Write this process's pending counts in one transaction; returns how many sends.

        Counts of a day already past are dropped (the day's rows are gone or going)."""
        counts = self.counts(core)
        async with counts.lock:
            if not counts.due:
                return 0
            batch, counts.due = counts.due, {}
            counts.flushing = batch
            try:
                return await self._write(core, counts, batch)
            except BaseException:
                for slot, n in batch.items():
                    _add(counts.due, slot, n)
                raise
            finally:
                counts.flushing = {}
                counts.committing = False
                counts.flushes += 1
                counts.settled.set()

    async def _write(self, core: Core, counts: _Counts, batch: dict[Slot, int]) -> int:
        async with core.db.transaction() as conn:
            day = await today(conn, core.clock.now())
            rows = [(d, k, n) for (d, k), n in batch.items() if d >= day]
            if not rows:
                return 0
            dialect = conn.dialect.name
            if dialect == "postgresql":
                await conn.execute(_ADVISORY, {"k": self.lock})
            for d in sorted({d for d, _k, _n in rows}):
                if dialect == "sqlite":
                    await conn.execute(self._claim, {"d": d})
                sealed = (await conn.execute(self._read_sealed, {"day": d})).scalar()
                merged = self._open(core, d, sealed)
                for rd, k, n in rows:
                    if rd == d:
                        merged[k] = merged.get(k, 0) + n
                # The whole day sealed afresh (a new nonce), of its size class's length.
                stmt = upsert(dialect, self.table)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=["day"],
                    set_={"stamp": stmt.excluded["stamp"], "sealed": stmt.excluded["sealed"]}),
                    {"day": d, "stamp": stamp(), "sealed": seal(core.secret, self._aad(d), merged)})
            counts.committing = True  # the COMMIT follows at once; readers wait for its outcome
            counts.settled.clear()
        return sum(n for _d, _k, n in rows)


COUNTERS: list[Counter] = []  # every counter made: the flusher writes them all

# The staff feedback counters (their keys: `counter_key`). The module's functions below
# stand for this counter's, as the feedback service and its tests call them.
STAFF = Counter(FeedbackDailyCount, FLUSH_LOCK)
count = STAFF.count
take = STAFF.take
holding = STAFF.holding
unwritten = STAFF.unwritten


# -- the flusher ------------------------------------------------------------------------------


async def flush(core: Core) -> int:
    """Write this process's pending counts of every counter, each in a transaction of its
    own; returns how many sends. One counter failing does not stop the others (the first
    error is raised after)."""
    written = 0
    failed: Exception | None = None
    for counter in COUNTERS:
        try:
            written += await counter.flush(core)
        except Exception as e:
            failed = failed or e
    try:  # the release marks (bot/feedback/senders.py): not sends, so not in the total
        await senders.flush(core)
    except Exception as e:
        failed = failed or e
    if failed is not None:
        raise failed
    return written


# A router worker (every `serve` replica runs one), and `flushing` for the console and tests.
worker = flusher.worker_for(flush, log, "feedback counts")
flushing = flusher.running(worker, "feedback-counts")
