"""A motivated intruder with SQL and the server key against the public pages' rate counter.

The families and young people pages count sends per network address under
`rate_key(server key, day, address)`. With the server key the intruder can hash any address
they guess (a school's, a library's, a family's home connection): each rate row then names its
address to them. What they must not get is the link from a rate row to an item.

Before: the rate row was written in the item's own transaction, so on PostgreSQL it carried
that item's `xmin`, which named the item each address sent last; on SQLite an address's first
item and its new rate row were one commit in the write-ahead log.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bot.core import Core
from bot.families.service import RATES, rate_key
from bot.feedback import counts, sealed
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.programme.core_sections import set_setting
from storage import sqlite_inline
from storage.base import Base
from tests.anonymity.test_feedback_counter import pairs_in_wal

CONCERN = "My mum hits me when she is angry and I am scared to go home."
TOKEN = "name=\"token\" value=\""
# Known visitors: the intruder guesses these addresses (documentation ranges, RFC 5737).
ADDRESSES = [f"203.0.113.{i}" for i in range(1, 13)]
# The rows written in an item's own transaction, none of them about its sender.
WITH_THE_ITEM = {"feedback_items", "family_answers", "family_contacts", "family_form_uses",
                 "feedback_alerts"}


@pytest.fixture
async def page(loaded: Core) -> AsyncIterator[TestClient]:
    """The public pages behind the council's proxy: each visitor's own address counts."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 20})
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_TRUSTED_PROXIES": "127.0.0.1"}
    app, _ = build_app(loaded, env, Health(loaded))
    async with TestClient(TestServer(app)) as client:
        yield client


async def send(client: TestClient, address: str, path: str = "/families", **fields: str) -> None:
    form = await (await client.get(path)).text()
    token = form.split(TOKEN, 1)[1].split('"', 1)[0]
    resp = await client.post(path, data={**fields, "token": token}, headers={
        "Origin": str(client.make_url("")).rstrip("/"), "Sec-Fetch-Site": "same-origin",
        "X-Forwarded-For": address})
    assert resp.status == 200 and "Thank you" in await resp.text()


async def _rate_owners(core: Core) -> dict[str, str]:
    """The intruder's first step: hash every guessed address with the server key (rate key ->
    address)."""
    async with core.db.session() as s:
        day: date = await fb.today(s, core.clock.now())
    return {rate_key(core.secret, day, a): a for a in ADDRESSES}


async def _sends_in_two_batches(client: TestClient, core: Core) -> None:
    """Visitors send, some more than once, one a disclosure, one asking to be contacted,
    interleaved across two flushes."""
    first = [0, 1, 2, 0, 3, 1, 4]
    for i, who in enumerate(first):
        await send(client, ADDRESSES[who], rating=str(1 + i % 5), working=f"First visit {i}.")
    await send(client, ADDRESSES[5], "/young-people", better=CONCERN)
    await counts.flush(core)
    await send(client, ADDRESSES[0], better="Nobody rang back.", contact="yes",
               name="A Parent", how="parent@example.org")
    await send(client, ADDRESSES[6], rating="2", working="Later thought.")
    await send(client, ADDRESSES[2], "/young-people", rating="5", working="My worker is kind.")
    await counts.flush(core)


async def test_an_items_xmin_names_no_address_even_with_the_server_key(
        page: TestClient, loaded: Core) -> None:
    """PostgreSQL: match each family item's `xmin` to the rate rows' (addresses known by
    hashing them with the server key), and to every other table's rows.

    Before: the rate row of each address had the `xmin` of the item it sent last."""
    if loaded.db.is_sqlite:
        pytest.skip("SQLite keeps no transaction ids; its write-ahead log is attacked below")
    await _sends_in_two_batches(page, loaded)
    owners = await _rate_owners(loaded)
    async with loaded.db.engine.connect() as conn:
        items = {r[0]: r[1] for r in await conn.execute(text(
            "SELECT id, xmin::text FROM feedback_items"))}
        [xmin] = (await conn.execute(text(
            "SELECT xmin::text FROM family_rate"))).scalars()  # the day's one row
        xmins = {t: set((await conn.execute(text(f"SELECT xmin::text FROM {t}"))).scalars())
                 for t in Base.metadata.tables}
    # With the server key the intruder opens the day's counts: every address, the counts right.
    [opened] = (await RATES.every(loaded)).values()
    rates = {k: (xmin, n) for k, n in opened.items()}
    assert {owners[k]: n for k, (_x, n) in rates.items()} == {
        ADDRESSES[0]: 3, ADDRESSES[1]: 2, ADDRESSES[2]: 2, ADDRESSES[3]: 1, ADDRESSES[4]: 1,
        ADDRESSES[5]: 1, ADDRESSES[6]: 1}
    assert len(items) == 11
    # The attack: each item, and the addresses whose rate row was committed with it.
    named = {item: [owners[k] for k, (x, _n) in rates.items() if x == xmin]
             for item, xmin in items.items()}
    assert all(who == [] for who in named.values()), named
    # Nothing else committed with an item is about its sender (the form's nonce names nobody).
    beside = {t for t, xs in xmins.items() if xs & set(items.values())}
    assert beside <= WITH_THE_ITEM, beside


async def test_the_write_ahead_log_pairs_no_item_with_its_addresss_rate_row(
        page: TestClient, loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: read the write-ahead log commit by commit (before any checkpoint, the worst
    case) and pair each item with the writes of the day's sealed rate row in the same commit
    (each write carries a new stamp: the intruder is given every one).

    Before: an address's first item and its new rate row were one commit."""
    if not loaded.db.is_sqlite:
        pytest.skip("PostgreSQL's transactions are attacked through xmin above")
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 10**9)  # the log keeps every commit
    stamps: list[str] = []

    def stamp() -> str:
        stamps.append(sealed.stamp())
        return stamps[-1]

    monkeypatch.setattr(counts, "stamp", stamp)
    await _sends_in_two_batches(page, loaded)
    owners = await _rate_owners(loaded)
    async with loaded.db.engine.connect() as conn:
        items = set((await conn.execute(select(FeedbackItem.id))).scalars())
    [opened] = (await RATES.every(loaded)).values()
    assert {owners[k] for k in opened} == set(ADDRESSES[:7])
    assert len(stamps) == 2  # one write of the day's row per flush
    named = pairs_in_wal(make_url(loaded.db.url).database or "", items, set(stamps),
                         dict.fromkeys(stamps, "a rate write"))
    assert all(who == [] for who in named.values()), named


async def test_the_rate_rows_stored_order_is_not_the_order_visitors_sent(
        page: TestClient, loaded: Core) -> None:
    """Twelve visitors send one form each in a known order, in one batch; the day's sealed
    rate row opened with the server key, its counts read in their stored order and named by
    hashing (before, rows per address in SQLite's cells, PostgreSQL's `ctid`)."""
    order = list(ADDRESSES)
    random.Random(11).shuffle(order)
    for i, address in enumerate(order):
        await send(page, address, rating="4", working=f"Visit {i + 1}.")
    await counts.flush(loaded)
    owners = await _rate_owners(loaded)
    [stored] = (await RATES.every(loaded)).values()
    seen = [owners[k] for k in stored]
    assert sorted(seen) == sorted(order)
    assert seen != order and seen != order[::-1]
