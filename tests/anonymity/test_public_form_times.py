"""A motivated intruder with a database dump against the times of the public pages' items.

A family's or young person's item is dated by its day only. The intruder knows when someone
sent one: a worker sat beside a young person at the children's centre kiosk at 10:07, a
parent said they filled in the form after the 15:40 school run, or the council's reverse
proxy logged the POST to /families, with the caller's address, at that second. If any row
written with the item dates it more precisely, the intruder pairs it with that knowledge and
learns which item was theirs.

Before: the row that marks the form's token used (`family_form_uses`), written in the
item's transaction, held `expires_at` = the second it was sent + 4 h 10 min. On PostgreSQL it
shares the item's `xmin`; on SQLite (and on PostgreSQL alike) sorting those rows by time and
the items by where they were stored pairs them too, and with a single item on a day nothing
is needed at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from bot.core import Core
from bot.families import service as families
from bot.families.tables import FamilyFormUse
from storage.base import Base
from tests.anonymity.test_family_rate import page, send

__all__ = ["page"]  # the public pages behind the council's proxy (a fixture)

# What the intruder knows: who sat at the kiosk when, on Monday (the fake clock's day).
KIOSK = (10, 7)  # a young person, with their worker
AFTER_SCHOOL = (15, 42)  # a parent, from home


def _at(core: Core, hm: tuple[int, int]) -> None:
    core.clock.set(core.clock.now().replace(hour=hm[0], minute=hm[1], second=13, microsecond=0))  # type: ignore[attr-defined]


async def _two_visitors(client: TestClient, core: Core) -> None:
    _at(core, KIOSK)
    await send(client, "203.0.113.7", "/young-people", rating="2",
               better="Nobody listens to me at my reviews.")
    _at(core, AFTER_SCHOOL)
    await send(client, "198.51.100.20", rating="4", working="The new worker rings back.")


def _times(values: list[object]) -> set[datetime]:
    return {v for v in values if isinstance(v, datetime)}


async def test_no_row_stored_with_a_public_item_says_when_it_was_sent(
        page: TestClient, loaded: Core) -> None:
    """Two visitors send on the same day, at times the intruder knows; every time stored
    beside the items (in `family_form_uses`, and on PostgreSQL in any row sharing an item's
    `xmin`) is the same for both, so none tells the 10:07 item from the 15:42 one."""
    await _two_visitors(page, loaded)
    async with loaded.db.session() as s:
        uses = list((await s.execute(select(FamilyFormUse))).scalars())
    assert len(uses) == 2  # both tokens are marked used: a replay is still refused
    stored = {u.expires_at for u in uses}
    assert len(stored) == 1, sorted(stored)  # before: 14:17:13 and 19:52:13, to the second
    if loaded.db.is_sqlite:
        return
    # PostgreSQL: every row committed with each item, in every table, and the times in them.
    async with loaded.db.engine.connect() as conn:
        items = dict((await conn.execute(text(
            "SELECT xmin::text, text FROM feedback_items"))).all())
        beside: dict[str, set[datetime]] = {x: set() for x in items}
        for t in Base.metadata.tables:
            for row in (await conn.execute(text(f"SELECT xmin::text AS x, * FROM {t}"))).all():
                if row[0] in beside:
                    beside[row[0]] |= _times(list(row[1:]))
    assert len(items) == 2
    kiosk, home = (beside[x] for x, t in sorted(items.items(), key=lambda kv: "reviews" not in kv[1]))
    assert kiosk == home, (kiosk, home)


async def test_a_used_form_is_still_refused_and_its_mark_goes_after_the_day(
        page: TestClient, loaded: Core) -> None:
    """The coarser mark still outlives the token: a form sent just before midnight cannot be
    sent again, and the marks are gone the day after."""
    loaded.clock.set(loaded.clock.now().replace(hour=23, minute=58))  # type: ignore[attr-defined]
    token = families.issue_token(loaded.secret, "families", loaded.clock.now())
    sub = families.Submission("families", 3, "Late thought.", "")
    first = await families.submit(loaded, sub, token=token, address="192.0.2.1")
    assert first.status == "stored"
    loaded.clock.advance(timedelta(hours=3, minutes=59))  # type: ignore[attr-defined]
    await families.tick(loaded, loaded.clock.now())
    again = await families.submit(loaded, sub, token=token, address="192.0.2.1")
    assert again.status == "replayed"
    await families.tick(loaded, loaded.clock.now() + timedelta(days=1))
    async with loaded.db.session() as s:
        assert list((await s.execute(select(FamilyFormUse))).scalars()) == []
