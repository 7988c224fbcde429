"""A feature hears of each of its ledger rows once: the `settled` hook of a registered kind runs
for the rows an outcome really changed, never for a stale outcome (a row already finished, or
taken over by another sender after its lease ran out)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import ledger
from bot.broadcasts.ledger import Kind, Settled
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.model import Message
from bot.people.tables import Person

KIND = "test-settled"
LEASE = timedelta(minutes=2)


class Feature:
    """A feature with its own ledger rows that keeps what it is told."""

    def __init__(self) -> None:
        self.told: list[Settled] = []

    async def message(self, core: object, subject: str) -> Message | None:
        return None

    async def settled(self, s: AsyncSession, items: list[Settled]) -> None:
        self.told.extend(items)

    async def wanted(self, s: AsyncSession, subject: str, person_ids: set[str]) -> set[str]:
        return person_ids


@pytest.fixture
async def feature(loaded: Core, monkeypatch: pytest.MonkeyPatch) -> Feature:
    f = Feature()
    monkeypatch.setitem(ledger.KINDS, KIND, Kind(f.message, f.settled, f.wanted))
    async with loaded.db.session() as s:
        await s.execute(update(Person).values(work_pattern=None))  # nobody waits for a shift
        ids = sorted((await s.execute(select(Person.id).limit(2))).scalars())
        await ledger.enqueue_people(s, KIND, "round-1", ids, set(), loaded.clock.now())
    return f


def _sent(row: ledger.Claimed, at: datetime) -> tuple[str, datetime | None, dict[str, Any]]:
    return row.id, row.lease_until, {"state": "sent", "sent_at": at, "message_ref": {"ts": row.id}}


def _told(rows: list[ledger.Claimed], at: datetime) -> dict[str, tuple[str, Settled]]:
    return {r.id: (KIND, Settled("round-1", r.person_id, "sent", {"ts": r.id}, at))
            for r in rows}


async def test_a_finish_recorded_twice_tells_the_feature_once(
        loaded: Core, clock: FakeClock, feature: Feature) -> None:
    now = clock.now()
    rows = await ledger.claim(loaded.db, "sender-a", now, 10, LEASE)
    assert len(rows) == 2 and all(r.kind == KIND for r in rows)
    outcomes = [_sent(r, now) for r in rows]
    await ledger.finish_many(loaded.db, "sender-a", outcomes, _told(rows, now))
    assert sorted(i.person_id or "" for i in feature.told) == sorted(r.person_id or "" for r in rows)
    # The same outcomes again (a retried flush): the rows are finished, nothing changes.
    await ledger.finish_many(loaded.db, "sender-a", outcomes, _told(rows, now))
    assert len(feature.told) == 2
    async with loaded.db.session() as s:
        states = (await s.execute(select(Delivery.state).where(Delivery.kind == KIND))).scalars()
        assert sorted(states) == ["sent", "sent"]


async def test_a_late_outcome_from_a_sender_whose_lease_ran_out_tells_the_feature_nothing(
        loaded: Core, clock: FakeClock, feature: Feature) -> None:
    first = await ledger.claim(loaded.db, "sender-a", clock.now(), 1, LEASE)
    clock.advance(LEASE + timedelta(seconds=1))  # sender A stalls past its lease
    assert await ledger.release_stale(loaded.db, clock.now()) == 1
    clock.advance(timedelta(minutes=1))
    second = await ledger.claim(loaded.db, "sender-b", clock.now(), 10, LEASE)
    again = [r for r in second if r.id == first[0].id]
    assert again, "sender B took the row over"
    late = clock.now()
    await ledger.finish_many(loaded.db, "sender-a", [_sent(first[0], late)],
                             _told(first, late))
    assert feature.told == []  # A's outcome is stale: the row is B's now
    await ledger.finish_many(loaded.db, "sender-b", [_sent(again[0], late)],
                             _told(again, late))
    assert len(feature.told) == 1 and feature.told[0].person_id == first[0].person_id
