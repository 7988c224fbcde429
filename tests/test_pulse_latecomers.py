"""People who join, install or move while a round is open: invited once, counted where asked."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core import Core
from bot.people.tables import Person
from bot.pulse.tables import PulseCell, PulseParticipation
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import MONDAY_10

JOINER = "agency.worker@northbridge.example"
P1 = "practitioner1@northbridge.example"
P9 = "practitioner9@northbridge.example"
CHANGE = "changelead@northbridge.example"


async def test_a_joiner_is_asked_once_in_an_existing_cell(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.tick()
    async with loaded.db.session() as s:
        cells_at_opening = {(p.cell_team, p.cell_role) for p in (await s.execute(
            select(PulseParticipation))).scalars()}
        s.add(Person(email=JOINER, display_name="Agency Social Worker", team_id="assessment"))
    assert d.seen(JOINER) == []
    loaded.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await loaded.tick()
    assert len(d.seen(JOINER)) == 1 and "question 1 of 7" in d.seen(JOINER)[0]
    await loaded.tick()
    assert len(d.seen(JOINER)) == 1  # once
    async with loaded.db.session() as s:
        mine = (await s.execute(select(PulseParticipation).join(
            Person, Person.id == PulseParticipation.person_id).where(Person.email == JOINER))
        ).scalar_one()
    assert (mine.cell_team, mine.cell_role) in cells_at_opening  # no new, smaller cell
    await d.tap(JOINER, "4")
    assert "question 2 of 7" in d.seen(JOINER)[-1]


async def test_someone_unreachable_at_opening_is_asked_after_first_contact(loaded: Core) -> None:
    d = FakeDriver(loaded)
    d.port.blocked.add(d.user(P9).user_id)  # not installed / blocked when the round opens
    await loaded.tick()
    assert d.seen(P9) == []
    d.port.blocked.discard(d.user(P9).user_id)
    await d.say(P9, "help")  # first contact: the app can reach them now
    loaded.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await loaded.tick()
    assert any("question 1 of 7" in m for m in d.seen(P9))


async def test_a_mover_is_counted_in_the_team_they_were_asked_in(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.tick()
    async with loaded.db.session() as s:
        person = (await s.execute(select(Person).where(Person.email == P1))).scalar_one()
        asked_in = (await s.get(PulseParticipation, (
            (await s.execute(select(PulseParticipation.round_id))).scalars().first(), person.id)))
        assert asked_in is not None
        cell = (asked_in.cell_team, asked_in.cell_role)
        person.team_id = "family-support"  # moves team mid-round
    for label in ("1", "1", "1", "1", "1", "0", "Skip"):
        await d.tap(P1, label)
    loaded.clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await loaded.tick()  # closes
    async with loaded.db.session() as s:
        cells = {(c.team_id, c.role): c.respondents for c in (await s.execute(
            select(PulseCell))).scalars()}
    assert cells[cell] == 1 and sum(cells.values()) == 1
