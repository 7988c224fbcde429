"""An account's link, DM route and time zone are held by the process that learnt them and
written by its flusher (bot/people/held.py, docs/invariants.md N21): the process behaves as if
they were written, other processes see them after the flush, and two processes that linked
the same account store one row."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.model import MessageEvent, text_message
from bot.people import held
from bot.people import service as people
from bot.people.service import person_by_email
from bot.people.tables import Identity, Person
from bot.privacy import erasure
from tests.conformance.drivers.fake import FakeDriver

WHO = "practitioner7@northbridge.example"


async def _idents(core: Core) -> list[Identity]:
    async with core.db.session() as s:
        return list((await s.execute(select(Identity).where(
            Identity.user_id == f"U-{WHO}"))).scalars())


async def _other(loaded: Core) -> tuple[Core, FakeDriver]:
    other = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    await other.start()
    return other, FakeDriver(other)


async def test_the_process_that_linked_an_account_reaches_it_before_the_flush_others_after(
        loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    assert WHO in d.seen(WHO)[-1]
    assert await _idents(loaded) == []  # nothing written in the message's moment
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
    assert person is not None
    assert await loaded.dm(person.id, text_message("Your team's round opens today.")) is not None
    assert d.seen(WHO)[-1] == "Your team's round opens today."
    assert await _idents(loaded) == []  # reached through the held route, nothing looked up
    assert await held.flush(loaded) == 2  # the link and its route
    [ident] = await _idents(loaded)
    assert ident.dm is not None and ident.dm["conversation_id"] == d.conv(WHO).conversation_id
    assert ident.updated_at is None and ident.reachable
    other, d2 = await _other(loaded)  # a replica, after the flush
    assert await other.dm(person.id, text_message("A reminder from the other replica.")) is not None
    assert d2.seen(WHO)[-1] == "A reminder from the other replica."


async def test_two_processes_that_linked_the_same_account_store_one_row(loaded: Core) -> None:
    d = FakeDriver(loaded)
    other, d2 = await _other(loaded)
    await d.say(WHO, "whoami")
    await other.handle(MessageEvent("other-1", d2.user(WHO), d2.conv(WHO), text="whoami"),
                       d2.port)
    assert WHO in d.seen(WHO)[-1], d.seen(WHO)
    assert WHO in d2.seen(WHO)[-1], d2.seen(WHO)
    await held.flush(loaded)
    await held.flush(other)  # the row is there: left as it is, no error
    [ident] = await _idents(loaded)
    assert ident.reachable and ident.dm is not None
    assert held.held(loaded).links == {} and held.held(other).links == {}


async def test_a_person_erased_before_the_flush_is_not_written_back(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    async with loaded.db.session() as s:
        person = await person_by_email(s, WHO)
        assert person is not None
        await erasure.erase(s, person)
    await held.flush(loaded)
    assert await _idents(loaded) == []
    async with loaded.db.session() as s:
        assert (await s.execute(select(Person).where(Person.email == WHO))).first() is None


async def test_a_round_opened_before_the_flush_reaches_an_account_held_here(
        loaded: Core) -> None:
    """The scheduler's tick writes what its process holds before any round or broadcast reads
    who can be reached."""
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    assert await _idents(loaded) == []
    await loaded.tick()  # Monday 10:00: the weekly round opens
    [ident] = await _idents(loaded)
    assert ident.dm is not None and ident.updated_at is None
    assert any("question" in m.lower() for m in d.seen(WHO)[-2:]), d.seen(WHO)[-3:]


async def test_an_account_linked_but_not_yet_flushed_is_admitted_in_one_statement(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    # Until the flush, each request of a newly linked account was admitted through an ORM
    # session and a roles statement built per call (about 1 M instructions more than a stored
    # account's; bench/README.md, ninth session). Now one prepared statement, same roles.
    lead = "lead.assessment@northbridge.example"  # a team lead: a role found by the join
    d = FakeDriver(loaded)
    await d.say(lead, "whoami")
    first = d.seen(lead)[-1]
    assert lead in first and "team_lead" in first.replace(" ", "_").lower(), first
    slow: list[str] = []
    for name in ("person_to_link", "roles_of", "person_by_id"):
        real = getattr(people, name)
        monkeypatch.setattr(people, name, functools.partial(_counted, slow, name, real))
    await d.say(lead, "whoami")
    assert d.seen(lead)[-1] == first and slow == []
    async with loaded.db.session() as s:
        assert (await s.execute(select(Identity).where(
            Identity.user_id == f"U-{lead}"))).first() is None  # still held, not written


def _counted(calls: list[str], name: str, real: Any, *args: Any, **kwargs: Any) -> Any:
    calls.append(name)
    return real(*args, **kwargs)
