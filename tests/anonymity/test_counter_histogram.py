"""A motivated intruder with a database dump and no key asks which of a day's items share an
author (docs/invariants.md N40, not fixed).

The daily feedback counters (bot/feedback/counts.py, N4) keep one row per person who sent
feedback that day, with how many they sent, under a key that names nobody without the server
key. The rows stay until the next day. The items of the day are in the dump too (and, once
released, in the change team's listing). On a day with two items and one counter row that
says 2, both items have one author; on a day with two rows that say 1, two people wrote one
each. "Which items share an author" is what N8, N17, N25 and N43 keep from the change team:
one item's author known (from what it says), the other is theirs too.
"""

from __future__ import annotations

from collections import Counter as Tally
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.feedback import counts
from bot.feedback.tables import FeedbackDailyCount, FeedbackItem
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import OTHER, PRACTITIONER, give


async def _what_the_dump_says(core: Core) -> tuple[int, Tally[int]]:
    """The day's items, and the counter rows' counts (no key needed to read either)."""
    async with core.db.session() as s:
        items = len(list((await s.execute(select(FeedbackItem.id))).scalars()))
        rows = Tally(int(c) for c in (await s.execute(select(FeedbackDailyCount.count))).scalars())
    return items, rows


@pytest.mark.xfail(strict=True, reason=(
    "N40, not fixed: the daily counters keep a row per sender per day with their count "
    "(bot/feedback/counts.py), so a dump without any key says how many people sent the day's "
    "items and how many each; hiding it needs as many rows whoever sent (a row per member of "
    "staff each day, or the counts kept out of the database), a design change"))
async def test_the_daily_counters_do_not_say_whether_two_items_share_an_author(
        loaded: Core) -> None:
    """Monday: a practitioner sends two ideas, nobody else sends anything. Tuesday: two
    practitioners send one idea each. At the end of each day the intruder reads the dump:
    two items both days; the counters say one person sent two on Monday (`{2: 1}`) and two
    people one each on Tuesday (`{1: 2}`). Alike, they would say nothing of who wrote what."""
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
