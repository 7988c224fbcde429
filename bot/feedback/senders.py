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
transaction of their own that lays every row down again, shuffled: no row
about the sender is written with the item. A release that makes the listing readable deletes
every row of it, in its own transaction; a mark whose generation is no longer the listing's
(its thing went with a release meanwhile, or was held back with it) is dropped at the flush,
and a row written late with an old generation is never counted. The release flushes its own
process's marks first; another replica's, held up to a flush interval, count only from its
next flush, so a sender in the last seconds before a moment may be missed and the release
waits (the safe side).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.feedback.tables import FeedbackRelease, FeedbackReleaseSender
from bot.secrets import derive, keyed_hash
from storage.db import upsert
from storage.perkey import PerKey
from storage.prepared import Prepared

if TYPE_CHECKING:
    from bot.core import Core

LABEL = "staffvoice feedback release senders v1"
LOCK = 0x5F5F_7376_0F11  # PostgreSQL advisory lock: replicas' flushes take turns (its own: test_design_invariants)
STAFF = "staff"  # the listing whose senders are people (the public pages know no people)
NEVER = datetime(2000, 1, 1, tzinfo=UTC)
_shuffle = random.SystemRandom().shuffle

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


async def _write(core: Core, batch: set[Mark]) -> int:
    T = FeedbackReleaseSender
    async with core.db.transaction() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK})
        gens = {listing: await generation(conn, listing) for listing, _g, _k in batch}
        rows = [{"key": k, "listing": ls, "gen": g} for ls, g, k in batch if g == gens[ls]]
        if not rows:
            return 0
        # Every mark is laid down again, all in one shuffled order, so each row gets this
        # flush's xmin and no row's place says when its person was first marked. Rewritten
        # in place (an UPDATE), the rows stayed in the order people first sent since the
        # release (PostgreSQL `ctid`, SQLite's cells): with the server key, and the items'
        # own order (N2), that named each item's sender.
        kept = {}
        for r in (await conn.execute(select(T.key, T.listing, T.gen))).all():
            if r.listing not in gens:
                gens[r.listing] = await generation(conn, r.listing)
            if r.gen == gens[r.listing]:  # a row of a generation past goes (never counted)
                kept[r.key] = {"key": r.key, "listing": r.listing, "gen": r.gen}
        added = [r for r in rows if r["key"] not in kept]
        every = [*kept.values(), *added]
        _shuffle(every)
        await conn.execute(delete(T))
        await conn.execute(upsert(conn.dialect.name, T).on_conflict_do_nothing(
            index_elements=["key"]), every)
    return len(rows)


async def waiting(conn: AsyncConnection, listing: str) -> int:
    """How many people wait in `listing` (its current generation's marks written so far)."""
    T = FeedbackReleaseSender
    gen = await generation(conn, listing)
    return int((await conn.execute(select(func.count()).select_from(T).where(
        T.listing == listing, T.gen == gen))).scalar() or 0)


async def released(conn: AsyncConnection, listing: str, at: datetime) -> None:
    """`listing` became readable at the moment `at`, in the caller's (the release's)
    transaction: a new generation, and every mark of it deleted."""
    await conn.execute(upsert(conn.dialect.name, FeedbackRelease).values(
        name=listing, moment=at).on_conflict_do_update(index_elements=["name"],
                                                       set_={"moment": at}))
    await conn.execute(delete(FeedbackReleaseSender).where(
        FeedbackReleaseSender.listing == listing))
