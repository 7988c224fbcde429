"""Stories: a broadcast DM waits for its recipient's working hours, in their own time zone.

The night worker on the emergency duty team gets a 14:00 broadcast when his shift starts at
17:00 while his day-shift colleagues get it at once; a broadcast sent on a Saturday, or over
the Christmas bank holidays, reaches day staff at the next working morning; channel posts are
never held; 'broadcast status' shows the held DMs as waiting, with the time they go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from adapters.fake.port import FakePort
from bot.broadcasts import service
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.model import plain_text
from bot.people.tables import Person

CHANGE = "changelead@northbridge.example"
NIGHT = "nightduty@northbridge.example"
DAY = "practitioner11@northbridge.example"  # front door, office hours
DIRECTOR = "director@northbridge.example"
TITLE = "Early win"


async def person(core: Core, email: str) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()


async def publish(core: Core, audience: str) -> str:
    return await service.publish_to_staff(core, await person(core, CHANGE), title=TITLE,
                                          text="Family network meetings now run in every team.",
                                          audience=audience)


def got(port: FakePort, email: str) -> bool:
    return any(TITLE in plain_text(p.message) for p in port.messages(f"D-U-{email}"))


async def sent_at(core: Core, bid: str, email: str) -> datetime | None:
    pid = await person(core, email)
    async with core.db.session() as s:
        return await s.scalar(select(Delivery.sent_at).where(
            Delivery.broadcast_id == bid, Delivery.person_id == pid))


async def test_the_night_worker_gets_a_14_00_broadcast_when_his_shift_starts(
    loaded: Core, clock: FakeClock
) -> None:
    port = FakePort()
    loaded.add_port(port)
    clock.set(datetime(2026, 11, 30, 14, 0, tzinfo=UTC))  # Monday, London is on UTC in winter
    bid = await publish(loaded, "teams: front-door")
    sender = Sender(loaded)
    await sender.drain()

    assert got(port, DAY) and not got(port, NIGHT)
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "sending" and st.waiting == 1
    text = service.status_message(st).plain
    assert "Waiting: 1 outside their working hours; next at Mon 2026-11-30 17:00 Europe/London" in text
    assert "Queued: 0" in text

    clock.set(datetime(2026, 11, 30, 16, 59, tzinfo=UTC))
    await sender.drain()
    assert not got(port, NIGHT), "not a minute early"

    clock.set(datetime(2026, 11, 30, 17, 0, 30, tzinfo=UTC))
    await sender.drain()
    assert got(port, NIGHT)
    assert await sent_at(loaded, bid, NIGHT) == datetime(2026, 11, 30, 17, 0, 30, tzinfo=UTC)
    assert await sent_at(loaded, bid, DAY) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.waiting == 0 and st.counts["sent"] == st.total
    assert any("has finished: delivered to" in plain_text(p.message)
               for p in port.messages(f"D-U-{CHANGE}")), "the report comes when the last one lands"


async def test_a_saturday_broadcast_reaches_day_staff_on_monday_morning(
    loaded: Core, clock: FakeClock
) -> None:
    port = FakePort()
    loaded.add_port(port)
    clock.set(datetime(2026, 12, 5, 11, 0, tzinfo=UTC))  # Saturday
    bid = await publish(loaded, "roles: leader; teams: front-door")
    sender = Sender(loaded)
    await sender.drain()
    assert not got(port, DIRECTOR) and not got(port, DAY)
    assert not got(port, NIGHT), "his shift starts at 17:00, weekends included"

    clock.set(datetime(2026, 12, 5, 17, 0, tzinfo=UTC))
    await sender.drain()
    assert got(port, NIGHT) and not got(port, DIRECTOR)

    clock.set(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))  # Monday 09:00
    await sender.drain()
    assert got(port, DIRECTOR) and got(port, DAY)
    assert await sent_at(loaded, bid, DIRECTOR) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def test_over_the_christmas_bank_holidays_a_broadcast_waits_for_the_29th(
    loaded: Core, clock: FakeClock
) -> None:
    port = FakePort()
    loaded.add_port(port)
    # Thursday 24 December 2026, after hours: Friday 25th and the Boxing Day substitute on
    # Monday 28th are bank holidays in England, with a weekend between.
    clock.set(datetime(2026, 12, 24, 18, 0, tzinfo=UTC))
    bid = await publish(loaded, "roles: leader")
    sender = Sender(loaded)
    await sender.drain()
    st = await service.status(loaded, bid)
    assert st.waiting == 1 and st.next_at == "Tue 2026-12-29 09:00 Europe/London"
    for day in (25, 26, 27, 28):
        clock.set(datetime(2026, 12, day, 10, 0, tzinfo=UTC))
        await sender.drain()
        assert not got(port, DIRECTOR), f"nothing on the {day}th"
    clock.set(datetime(2026, 12, 29, 9, 0, tzinfo=UTC))
    await sender.drain()
    assert got(port, DIRECTOR)


async def test_a_dm_pushed_past_the_end_of_the_day_waits_for_the_next_morning(
    loaded: Core, clock: FakeClock
) -> None:
    port = FakePort()
    loaded.add_port(port)
    clock.set(datetime(2026, 11, 30, 16, 59, tzinfo=UTC))
    bid = await publish(loaded, "roles: leader")  # queued inside working hours...
    clock.set(datetime(2026, 11, 30, 17, 30, tzinfo=UTC))  # ...but the sender only gets to it now
    sender = Sender(loaded)
    await sender.drain()
    assert not got(port, DIRECTOR) and sender.stats.deferred == 1
    st = await service.status(loaded, bid)
    assert st.next_at == "Tue 2026-12-01 09:00 Europe/London"
    async with loaded.db.session() as s:
        row = (await s.execute(select(Delivery).where(Delivery.broadcast_id == bid))).scalar_one()
    assert row.state == "queued" and row.attempts == 0, "a deferral is not a failed attempt"


async def test_channel_posts_are_not_held_for_working_hours(loaded: Core, clock: FakeClock) -> None:
    port = FakePort()
    loaded.add_port(port)
    clock.set(datetime(2026, 12, 5, 23, 0, tzinfo=UTC))  # Saturday night
    bid = await publish(loaded, "channels: fake:W1/C-updates")
    await Sender(loaded).drain()
    assert any(TITLE in plain_text(p.message) for p in port.messages("C-updates"))
    assert (await service.status(loaded, bid)).broadcast.state == "done"


async def test_a_person_in_another_time_zone_gets_it_in_their_own_working_hours(
    loaded: Core, clock: FakeClock
) -> None:
    port = FakePort()
    loaded.add_port(port)
    async with loaded.db.session() as s:
        director = (await s.execute(select(Person).where(Person.email == DIRECTOR))).scalar_one()
        director.tz = "America/New_York"  # seconded abroad: 09:00 there is 14:00 UTC
    clock.set(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    bid = await publish(loaded, "roles: leader")
    await Sender(loaded).drain()
    assert not got(port, DIRECTOR)
    clock.set(datetime(2026, 11, 30, 14, 0, tzinfo=UTC) + timedelta(seconds=1))
    await Sender(loaded).drain()
    assert got(port, DIRECTOR)
    assert (await service.status(loaded, bid)).broadcast.state == "done"
