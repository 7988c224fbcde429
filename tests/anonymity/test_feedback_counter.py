"""A motivated intruder with SQL and the server key against the daily feedback counter.

The intruder can open the day's key (it is sealed under the server key), so they can compute
every person's counter key for the day: each counter row names its person to them. What they
must not get is the link from a counter row to an item. Items sent with a reply route carry a
route sealed under the server key by design; these attacks are about the others.

Before (commit 028fa66): an item and its sender's counter row were written in one
transaction, so on PostgreSQL they shared an `xmin`, which named the sender of each person's
latest item, and on SQLite they were one commit in the write-ahead log; and each counter row was laid down when its person first sent that day, so the
stored order of the rows (SQLite's cells, PostgreSQL's `ctid`) was the order people first sent.
Since N40 the day's counters are one row, sealed under the server key (bot/feedback/sealed.py):
the intruder with that key opens it, and these attacks read what it holds.
"""

from __future__ import annotations

import random
import sqlite3

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bot.core import Core
from bot.feedback import counts, sealed
from bot.feedback.counts import DAY_KEY_LABEL
from bot.feedback.tables import FeedbackDayKey, FeedbackHandle, FeedbackItem
from bot.people.tables import Person
from bot.secrets import derive, keyed_hash, open_bytes
from storage import sqlite_inline
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import give

PRACTITIONERS = [f"practitioner{i}@northbridge.example" for i in range(1, 13)]


async def _counter_owners(core: Core) -> dict[str, str]:
    """The intruder's first step: open the day's key with the server key and compute every
    person's counter key for the day (counter key -> email)."""
    async with core.db.session() as s:
        [(day, sealed)] = (await s.execute(select(FeedbackDayKey.day, FeedbackDayKey.sealed))).all()
        people = list((await s.execute(select(Person))).scalars())
    opened = open_bytes(derive(core.secret, DAY_KEY_LABEL), day.isoformat(), sealed)
    return {keyed_hash(opened, "feedback-daily", p.id): p.email for p in people if p.email}


async def test_an_items_xmin_names_no_sender_even_with_the_server_key(loaded: Core) -> None:
    """PostgreSQL: match each item's `xmin` to the counter rows' (owners known via the key).

    Several people send, some more than once, with and without reply routes, interleaved,
    across two flushes. Before: the sender of each person's latest item had the same `xmin`."""
    if loaded.db.is_sqlite:
        pytest.skip("SQLite keeps no transaction ids; the stored order is attacked below")
    d = FakeDriver(loaded)
    sends = [(PRACTITIONERS[0], False), (PRACTITIONERS[1], True), (PRACTITIONERS[2], False),
             (PRACTITIONERS[0], True), (PRACTITIONERS[3], False), (PRACTITIONERS[1], False),
             (PRACTITIONERS[4], False)]
    for i, (email, replies) in enumerate(sends):
        assert await give(d, email, f"Idea number {'abcdefg'[i]} about the tools.",
                          replies=replies) is None
    await counts.flush(loaded)
    for i, (email, replies) in enumerate([(PRACTITIONERS[5], False), (PRACTITIONERS[0], False),
                                          (PRACTITIONERS[2], True)]):
        assert await give(d, email, f"Later thought {'xyz'[i]} on supervision.",
                          replies=replies) is None
    await counts.flush(loaded)

    owners = await _counter_owners(loaded)
    async with loaded.db.engine.connect() as conn:
        items = {r[0]: r[1] for r in await conn.execute(text(
            "SELECT id, xmin::text FROM feedback_items"))}
        [xmin] = (await conn.execute(text(
            "SELECT xmin::text FROM feedback_daily_counts"))).scalars()  # the day's one row
        routed = set((await conn.execute(select(FeedbackHandle.item_id))).scalars())
    # With the server key the intruder opens the day's counts (bot/feedback/sealed.py): every
    # counter's owner, and the counts are right.
    [opened] = (await counts.STAFF.every(loaded)).values()
    counters = {k: (xmin, n) for k, n in opened.items()}
    assert {owners[k]: n for k, (_x, n) in counters.items()} == {
        PRACTITIONERS[0]: 3, PRACTITIONERS[1]: 2, PRACTITIONERS[2]: 2, PRACTITIONERS[3]: 1,
        PRACTITIONERS[4]: 1, PRACTITIONERS[5]: 1}
    assert len(items) == 10 and len(routed) == 3
    # The attack: an item without a route, and the counter rows committed with it.
    named = {item: [owners[k] for k, (x, _n) in counters.items() if x == xmin]
             for item, xmin in items.items() if item not in routed}
    assert all(who == [] for who in named.values()), named
    assert xmin not in set(items.values())


async def test_the_write_ahead_log_pairs_no_item_with_its_senders_counter(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: read the write-ahead log commit by commit (before any checkpoint, the worst
    case) and pair each item with the counter writes in the same commit (each write of the
    day's sealed row carries a new stamp: the intruder is given every one).

    Before: a person's first item of the day and their new counter row were one commit, so
    this named the sender of every person's first item."""
    if not loaded.db.is_sqlite:
        pytest.skip("PostgreSQL's transactions are attacked through xmin above")
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 10**9)  # the log keeps every commit
    stamps: list[str] = []

    def stamp() -> str:
        stamps.append(sealed.stamp())
        return stamps[-1]

    monkeypatch.setattr(counts, "stamp", stamp)
    d = FakeDriver(loaded)
    sends = [(PRACTITIONERS[0], False), (PRACTITIONERS[1], True), (PRACTITIONERS[2], False),
             (PRACTITIONERS[0], False), (PRACTITIONERS[3], False)]
    for i, (email, replies) in enumerate(sends):
        assert await give(d, email, f"Idea number {'abcde'[i]} about the tools.",
                          replies=replies) is None
    await counts.flush(loaded)
    assert await give(d, PRACTITIONERS[4], "A later thought on supervision.") is None
    await counts.flush(loaded)
    async with loaded.db.engine.connect() as conn:
        items = set((await conn.execute(select(FeedbackItem.id))).scalars())
    assert len(stamps) == 2  # one write of the day's row per flush
    named = pairs_in_wal(make_url(loaded.db.url).database or "", items, set(stamps),
                         dict.fromkeys(stamps, "a counter write"))
    assert all(who == [] for who in named.values()), named


async def test_the_counters_stored_order_is_not_the_order_people_sent(loaded: Core) -> None:
    """Open the day's sealed counts with the server key and read the counters in the order
    they are stored in it, and name each with the key.

    Twelve people send one item each in a known order, in one batch. Before: the rows were
    stored in exactly that order (SQLite's cells, PostgreSQL's `ctid`), so with the items' own
    order (the same, on SQLite's pages and in PostgreSQL's `xmin`) each item had its sender;
    now they are sorted by key in the day's one row."""
    d = FakeDriver(loaded)
    order = list(PRACTITIONERS)
    random.Random(7).shuffle(order)
    for i, email in enumerate(order):
        assert await give(d, email, f"Thought {i + 1} about the new practice model.") is None
    await counts.flush(loaded)
    owners = await _counter_owners(loaded)
    [stored] = (await counts.STAFF.every(loaded)).values()  # in its stored order
    seen = [owners[k] for k in stored]
    assert sorted(seen) == sorted(order)
    assert seen != order and seen != order[::-1]


def pairs_in_wal(path: str, items: set[str], keys: set[str],
                 owners: dict[str, str]) -> dict[str, list[str]]:
    """Each item, with the owners of the keyed rows that first appear in the same commit of
    the database's write-ahead log (which must hold every commit of both)."""
    named: dict[str, list[str]] = {}
    seen_keys: set[str] = set()
    for pages in _wal_commits(path + "-wal"):
        new_keys = {k for k in keys - seen_keys if k.encode() in pages}
        for item in items - named.keys():
            if item.encode() in pages:
                named[item] = sorted(owners[k] for k in new_keys)
        seen_keys |= new_keys
    assert named.keys() == items and seen_keys == keys  # the log holds every commit of both
    return named


def _sqlite_stored_order(path: str, table: str) -> list[str]:
    """The first column of each row of a one-page WITHOUT ROWID table, in the order its cells
    were laid down (SQLite fills a page's cell area from the end towards the front)."""
    with sqlite3.connect(path) as conn:
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    data = open(path, "rb").read()
    size = int.from_bytes(data[16:18], "big")
    size = 65536 if size == 1 else size
    page = data[(root - 1) * size: root * size]
    assert page[0] == 0x0A, "the table outgrew one leaf page"
    cells = int.from_bytes(page[3:5], "big")
    offsets = [int.from_bytes(page[8 + 2 * i: 10 + 2 * i], "big") for i in range(cells)]
    return [_first_text(page, at) for at in sorted(offsets, reverse=True)]


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        b = buf[at + i]
        if i == 8:
            return (value << 8) | b, at + 9
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, at + i + 1
    raise AssertionError("unreachable")


def _first_text(page: bytes, at: int) -> str:
    """The first column (a text) of the record in the cell at `at` of an index leaf page."""
    _payload, at = _varint(page, at)
    header, body = _varint(page, at)
    serial, _ = _varint(page, body)
    assert serial >= 13 and serial % 2 == 1, "the first column is not a text"
    start = at + header
    return page[start: start + (serial - 13) // 2].decode()



def _wal_commits(path: str) -> list[bytes]:
    """The pages each transaction wrote, in commit order, from a SQLite write-ahead log
    (frames whose salt matches the log's header; a commit ends at a frame that gives the
    database's size)."""
    data = open(path, "rb").read()
    size = int.from_bytes(data[8:12], "big")
    salt = data[16:24]
    commits: list[bytes] = []
    pages: list[bytes] = []
    at = 32
    while at + 24 + size <= len(data) and data[at + 8: at + 16] == salt:
        pages.append(data[at + 24: at + 24 + size])
        if int.from_bytes(data[at + 4: at + 8], "big"):
            commits.append(b"".join(pages))
            pages = []
        at += 24 + size
    return commits
