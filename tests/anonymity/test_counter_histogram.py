"""A motivated intruder with a database dump and no key asks which of a day's items share an
author (docs/invariants.md N40).

The daily feedback counters (bot/feedback/counts.py, N4) kept one row per person who sent
feedback that day, with how many they sent, under a key that names nobody without the server
key; the waiting senders' marks (bot/feedback/senders.py, N25) one row per person waiting for
the staff listing's next release. The items of the day are in the dump too (and, once
released, in the change team's listing). On a day with two items and one counter row that
said 2, both items had one author; on a day with two rows that said 1, two people wrote one
each. "Which items share an author" is what N8, N17, N25 and N43 keep from the change team:
one item's author known (from what it says), the other is theirs too. Now each counter keeps
ONE sealed row a day, and the marks one a listing, padded to a size class
(bot/feedback/sealed.py): the same rows of the same lengths whoever sent.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.core import Core
from bot.families.service import RATES, rate_key
from bot.feedback import counts, senders
from bot.feedback.tables import FeedbackDailyCount, FeedbackItem
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import OTHER, PRACTITIONER, give

# Where a day's counts and marks are kept (whatever their columns).
COUNTED = ("feedback_daily_counts", "feedback_release_senders", "family_rate")


def _shape(value: Any) -> Any:
    """What a value says without any key: a number as it is, a text or bytes by its length,
    a day or moment as such (the dump's own day is no secret)."""
    if isinstance(value, (date, datetime)):
        return "a date"
    if isinstance(value, (str, bytes, memoryview)):
        return ("length", len(value))
    return value


async def _counted(core: Core) -> dict[str, list[tuple[Any, ...]]]:
    """Every row where counts and marks are kept, each value by its shape, sorted."""
    async with core.db.engine.connect() as conn:
        return {t: sorted((tuple(_shape(v) for v in r) for r in await conn.execute(
            text(f"SELECT * FROM {t}"))), key=repr) for t in COUNTED}


async def _what_the_dump_says(core: Core) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
    """The day's items, and the rows of its counters and marks (no key needed to read any)."""
    async with core.db.session() as s:
        items = int((await s.execute(select(func.count()).select_from(FeedbackItem))).scalar_one())
    return items, await _counted(core)


async def test_the_daily_counters_do_not_say_whether_two_items_share_an_author(
        loaded: Core) -> None:
    """Monday: a practitioner sends two ideas, nobody else sends anything. Tuesday: two
    practitioners send one idea each. At the end of each day the intruder reads the dump:
    two items both days. Before, the counters said one person sent two on Monday (one row
    that says 2) and two people one each on Tuesday (two rows that say 1), and the marks one
    row, then two. Now both days read alike: one row each, of the same lengths."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    monday = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(monday)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled.") is None
    clock.set(monday.replace(hour=10, minute=30))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "The case recording form takes twice as long.") is None
    await counts.flush(loaded)
    clock.set(monday.replace(hour=18))  # type: ignore[attr-defined]
    one_author = await _what_the_dump_says(loaded)

    async with loaded.db.session() as s:  # the day's end, as the feedback tick does it
        for table in (FeedbackItem, FeedbackDailyCount):
            for row in (await s.execute(select(table))).scalars():
                await s.delete(row)
    tuesday = monday + timedelta(days=1)
    clock.set(tuesday)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled.") is None
    clock.set(tuesday.replace(hour=10, minute=30))  # type: ignore[attr-defined]
    assert await give(d, OTHER, "The case recording form takes twice as long.") is None
    await counts.flush(loaded)
    clock.set(tuesday.replace(hour=18))  # type: ignore[attr-defined]
    two_authors = await _what_the_dump_says(loaded)

    assert one_author[0] == two_authors[0] == 2
    assert one_author == two_authors, (one_author, two_authors)
    assert [len(one_author[1][t]) for t in COUNTED[:2]] == [1, 1]  # the day's, the listing's


async def _send(core: Core, person: str, address: str, day: date) -> None:
    """One staff send counted for `person` (and their mark) and one public send for
    `address`, as the forms count them (bot/feedback/service.py, bot/families/service.py)."""
    async with counts.holding(core) as hold, core.db.transaction() as conn:
        assert await counts.take(core, conn, hold, await counts.counter_key(
            conn, core.secret, person, day), day, 100)
        m = await senders.mark(core, conn, person)
        hold.then(lambda: senders.keep(core, m))
    async with RATES.holding(core) as hold, core.db.transaction() as conn:
        assert await RATES.take(core, conn, hold, rate_key(core.secret, day, address), day, 100)


async def _clear(core: Core) -> None:
    async with core.db.transaction() as conn:
        for t in COUNTED:
            await conn.execute(text(f"DELETE FROM {t}"))


@pytest.mark.parametrize("senders_", [
    ["p1", "p1"],  # one author, two items
    ["p1", "p2"],  # two authors, one each
    ["p1"],  # one sender
    [f"p{i}" for i in range(1, 41)],  # forty senders
    [f"p{i}" for i in range(1, 11)] * 4,  # ten senders, four each
])
async def test_the_counted_rows_are_alike_whoever_sent(loaded: Core, senders_: list[str]) -> None:
    """The dump of a day's counters and marks (staff and public pages) after one author's two
    sends, two authors' one each, one send, forty senders' one each, or ten senders' four each
    (the same addresses on the public pages): the same rows, of the same lengths, every time,
    compared with what one send leaves. Before: a row per sender (per address), with its
    count."""
    async with loaded.db.transaction() as conn:
        day = await counts.today(conn, loaded.clock.now())
    await _clear(loaded)
    await _send(loaded, "p0", "198.51.100.0", day)
    await counts.flush(loaded)
    one = await _counted(loaded)
    await _clear(loaded)
    for i, person in enumerate(senders_):
        await _send(loaded, person, f"198.51.100.{person[1:]}", day)
        if i % 7 == 6:
            await counts.flush(loaded)  # several flushes in the day
    await counts.flush(loaded)
    assert sum((await counts.STAFF.every(loaded))[day].values()) == len(senders_)
    assert await _counted(loaded) == one
    assert [len(one[t]) for t in COUNTED] == [1, 1, 1]
