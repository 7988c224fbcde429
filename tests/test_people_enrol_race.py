"""Stories: someone the programme does not list writes to the bot for the first time, and
self-enrolment is on. Their platform gives no email (a Teams guest-less tenant, a Slack app
without the email scope), so nothing but their account says who they are. Two replicas meet
their first two messages at the same moment: one person is created, not two (the second an
orphan no account leads to, counted in every audience and report)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text

from bot.core import Core
from bot.model import ConversationRef, MessageEvent, UserRef
from bot.people import held
from bot.people.tables import Identity, Person, PersonRole
from storage.db import Database
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.fake import FakeDriver
from tests.test_dispatcher import self_enrol

NAME = "Robin Newcomer"  # fictional


async def people_named(core: Core) -> list[str]:
    async with core.db.session() as s:
        return list((await s.execute(select(Person.id).where(Person.display_name == NAME)))
                    .scalars())


async def test_two_replicas_meeting_a_newcomer_without_email_create_one_person(
    loaded: Core,
) -> None:
    await self_enrol(loaded)
    replicas = [Core(Database(loaded.db.url), settings=loaded.settings, clock=loaded.clock)
                for _ in range(2)]
    drivers = [FakeDriver(c) for c in replicas]
    try:
        for c in replicas:
            await c.start()
        newcomer = UserRef("fake", drivers[0].port.workspace, "U-NO-EMAIL", display_name=NAME)
        events = [MessageEvent(f"first-{i}", newcomer, ConversationRef(
            "fake", d.port.workspace, d.port.dm_id(newcomer.user_id)), text="whoami")
            for i, d in enumerate(drivers)]
        results = await asyncio.gather(*(c.handle(e, d.port) for c, e, d in
                                         zip(replicas, events, drivers, strict=True)))
        for c in replicas:
            await held.flush(c)
    finally:
        for c in replicas:
            await c.db.dispose()

    assert all(r.handled and r.error is None for r in results)
    for d in drivers:  # each replica answered the message it met
        seen = [plain for plain in replies(
            [m for m in d.channel(d.port.dm_id(newcomer.user_id))])]
        assert len(seen) == 1 and NAME in seen[0] and "went wrong" not in seen[0]
    pids = await people_named(loaded)
    assert len(pids) == 1, "one newcomer, one person"
    async with loaded.db.session() as s:
        links = (await s.execute(select(Identity.person_id).where(
            Identity.user_id == "U-NO-EMAIL"))).scalars().all()
        roles = await s.scalar(select(func.count()).select_from(PersonRole).where(
            PersonRole.person_id.in_(pids)))
    assert links == pids and roles == 1
    if loaded.db.engine.dialect.name == "postgresql":
        # The link written with the person is rewritten by the flush, as every person row is
        # (N21): no row keeps the enrolment's transaction.
        async with loaded.db.engine.connect() as conn:
            xmins = set((await conn.execute(text(
                "SELECT xmin::text FROM identities UNION SELECT xmin::text FROM people")
            )).scalars())
        assert len(xmins) == 1
