"""Who waits for a release, counted as people: a release's "at least two" means two people.

A release other than the day's last waits until at least two things wait in a listing
(bot/feedback/release.py, docs/invariants.md N22), so that a lone sender's item is dated to
its day, not to the morning. Counting things let one person make the two: a practitioner
who sent two items (or an item and an answer in a thread) before noon saw both go at 12:00,
a batch with one author, dated to the morning; on a morning only they were free, or beside
the platform's own record of who submitted a form that morning, named (N25). So the staff
listing also needs two *people* among what waits.

The store must still not know authors (N4, A12). Each waiting sender is kept as a keyed hash
of the person under a key derived from the server key, the listing and its **generation**
(the release moment at which the listing last released): a value that says "someone waits",
the same for their second item as for their first, and meaningless in the next generation.
Like the daily counters (bot/feedback/counts.py), the marks are held in memory per process,
counted only once the item's transaction commits, and written by the feedback flusher in a
transaction of their own: no row about the sender is written with the item. A listing's marks
are ONE row (bot/feedback/sealed.py): sealed under the server key, padded to a size class, so
a dump without the key does not say how many people wait (N40). A release that makes the
listing readable deletes that row, in its own transaction; a mark whose generation is no longer the listing's
(its thing went with a release meanwhile, or was held back with it) is dropped at the flush,
and a row written late with an old generation is never counted. The release flushes its own
process's marks first; another replica's, held up to a flush interval, count only from its
next flush, so a sender in the last seconds before a moment may be missed and the release
waits (the safe side).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.feedback.sealed import open_counts, seal, stamp
from bot.feedback.tables import FeedbackRelease, FeedbackReleaseSender
from bot.secrets import Unsealable, derive, keyed_hash
from storage.db import overwrite_deleted, upsert
from storage.perkey import PerKey
from storage.prepared import Prepared

if TYPE_CHECKING:
    from bot.core import Core

LABEL = "staffvoice feedback release senders v1"
LOCK = 0x5F5F_7376_0F11  # PostgreSQL advisory lock: replicas' flushes take turns (its own: test_design_invariants)
STAFF = "staff"  # the listing whose senders are people (the public pages know no people)
NEVER = datetime(2000, 1, 1, tzinfo=UTC)
log = logging.getLogger("staffvoice.feedback")

Mark = tuple[str, datetime, str]  # (listing, generation, keyed hash of the sender)


@dataclass
class _Held:
    due: set[Mark] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_held: PerKey[Core, _Held] = PerKey(_Held)


# Every staff form reads it (`mark`, in the item's transaction): on the DB-API cursor
# (storage/prepared.py), where `conn.execute` built an execution context and a result per form.
_GENERATION = Prepared(select(FeedbackRelease.moment).where(
    FeedbackRelease.name == bindparam("listing")))


async def generation(conn: AsyncConnection, listing: str) -> datetime:
    """The release moment at which `listing` last became readable (a time of the schedule)."""
    row = await _GENERATION.first(conn, {"listing": listing})
    at = row[0] if row is not None else None
    return at if at is not None else NEVER


async def mark(core: Core, conn: AsyncConnection, person_id: str,
               listing: str = STAFF) -> Mark:
    """The mark of `person_id` waiting in `listing`, read in the transaction that stores what
    they sent (a read: it writes nothing). Keep it with `keep` once that transaction commits."""
    gen = await generation(conn, listing)
    key = keyed_hash(derive(core.secret, LABEL), listing, gen.isoformat(), person_id)
    return (listing, gen, key)


def keep(core: Core, m: Mark) -> None:
    """Hold a mark for the flusher (its thing is committed)."""
    _held(core).due.add(m)


def unwritten(core: Core) -> int:
    return len(_held(core).due)


async def flush(core: Core) -> int:
    """Write this process's held marks in one transaction that lays every row down again; how
    many were written. Marks of a generation past are dropped (their release came first)."""
    held = _held(core)
    async with held.lock:
        if not held.due:
            return 0
        batch, held.due = held.due, set()
        try:
            return await _write(core, batch)
        except BaseException:
            held.due |= batch
            raise


def _aad(listing: str, gen: datetime) -> str:
    return f"feedback_release_senders|{listing}|{gen.isoformat()}"


def _open(core: Core, listing: str, gen: datetime, sealed: bytes | None) -> set[str]:
    """The marks sealed in a listing's row; none, and an error logged, if they cannot be
    opened (another server key, damaged): the release then waits, the safe side."""
    if sealed is None:
        return set()
    try:
        return set(open_counts(core.secret, _aad(listing, gen), bytes(sealed)))
    except Unsealable as e:
        log.error("feedback_release_senders: the marks of %s cannot be opened (%s): is "
                  "STAFFVOICE_SECRET_KEY the one they were written with? Counted as none",
                  listing, e)
        return set()


_ROW = select(FeedbackReleaseSender.gen, FeedbackReleaseSender.sealed).where(
    FeedbackReleaseSender.listing == bindparam("listing"))
# gen = gen: SQLite's write lock taken before the read (two writers never merge the same row).
_CLAIM = update(FeedbackReleaseSender).where(
    FeedbackReleaseSender.listing == bindparam("l")).values(gen=FeedbackReleaseSender.gen)


async def _write(core: Core, batch: set[Mark]) -> int:
    T = FeedbackReleaseSender
    async with core.db.transaction() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK})
        written = 0
        for listing in sorted({ls for ls, _g, _k in batch}):
            gen = await generation(conn, listing)
            new = {k for ls, g, k in batch if ls == listing and g == gen}
            if not new:
                continue  # every mark of a generation past: its release came first
            if dialect == "sqlite":
                await conn.execute(_CLAIM, {"l": listing})
            row = (await conn.execute(_ROW, {"listing": listing})).first()
            # The listing's one row: every mark of its generation, sorted, padded to a size
            # class and sealed afresh (bot/feedback/sealed.py), so neither the number of rows
            # nor their order nor the row's length says how many wait or who came first (N40;
            # before, a row per person). A row of a generation past is dropped (never counted).
            marks = _open(core, listing, gen, row.sealed) if row is not None and row.gen == gen \
                else set()
            marks |= new
            stmt = upsert(dialect, T)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["listing"], set_={
                "gen": stmt.excluded.gen, "stamp": stmt.excluded.stamp,
                "sealed": stmt.excluded.sealed}), {
                "listing": listing, "gen": gen, "stamp": stamp(),
                "sealed": seal(core.secret, _aad(listing, gen), dict.fromkeys(marks, 1))})
            written += len(new)
    return written


async def waiting(core: Core, conn: AsyncConnection, listing: str) -> int:
    """How many people wait in `listing` (its current generation's marks written so far)."""
    gen = await generation(conn, listing)
    row = (await conn.execute(_ROW, {"listing": listing})).first()
    if row is None or row.gen != gen:
        return 0
    return len(_open(core, listing, gen, row.sealed))


async def released(conn: AsyncConnection, listing: str, at: datetime) -> None:
    """`listing` became readable at the moment `at`, in the caller's (the release's)
    transaction: a new generation, and every mark of it deleted."""
    await conn.execute(upsert(conn.dialect.name, FeedbackRelease).values(
        name=listing, moment=at).on_conflict_do_update(index_elements=["name"],
                                                       set_={"moment": at}))
    await overwrite_deleted(conn)  # the sealed marks leave no copy in free pages
    await conn.execute(delete(FeedbackReleaseSender).where(
        FeedbackReleaseSender.listing == listing))
