"""Handling an event leaves none of the core's objects in reference cycles.

Reference counting frees what an event used the moment it is handled; what sits in a cycle
waits for the garbage collector, and at a few hundred events a second those leftovers made its
young collections long enough to set the serving p99 (bench/README.md, eleventh session). The
middleware chain and the admission's retry were such cycles: a closure that calls itself.
"""

from __future__ import annotations

import gc

import pytest

from bot.core import Core, HandleResult, Next
from bot.model import Event, MessageEvent
from bot.port import Port
from tests.conformance.drivers.fake import FakeDriver

PRACTITIONER = "practitioner1@northbridge.example"
OURS = (Core, MessageEvent, FakeDriver)


async def test_events_through_a_middleware_leave_no_cycles_holding_the_event(
    loaded: Core, saved_garbage: list[object]
) -> None:
    seen: list[str] = []

    async def counted(event: Event, port: Port, nxt: Next) -> HandleResult:
        seen.append(type(event).__name__)  # as staffvoice/serve/metrics.py counts
        return await nxt()

    loaded.use(counted)
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")  # the first: the account is linked, settings read
    gc.collect()
    saved_garbage.clear()
    for i in range(5):
        await loaded.handle(MessageEvent(f"cycles-{i}", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                         text="whoami"), d.port)
    gc.collect()
    left = [type(o).__qualname__ for o in saved_garbage
            if isinstance(o, MessageEvent)
            or (type(o).__name__ == "cell" and isinstance(_contents(o), OURS))]
    assert seen.count("MessageEvent") == 6
    assert len(d.seen(PRACTITIONER)) >= 6  # each was answered
    assert left == []


def _contents(cell: object) -> object:
    try:
        return cell.cell_contents  # type: ignore[attr-defined]
    except ValueError:
        return None


async def test_an_enrolment_that_does_not_hold_ends_in_an_apology_not_an_endless_loop(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admission's retry, a loop since it stopped being a closure calling itself, enrols
    a newcomer once: if their person is still not found (erased as it was made, here), the
    event fails with the usual apology instead of enrolling again and again, never answered
    (the recursion it replaced at least ended at the interpreter's depth limit)."""
    from sqlalchemy import delete

    from bot.people import service as people
    from bot.people.tables import Person

    real = people.enrol
    made: list[str] = []

    async def erased_as_made(s: object, u: object) -> str:
        if len(made) >= 20:
            raise RuntimeError("enrolled 20 times for one event")  # the loop, cut short
        pid = await real(s, u)  # type: ignore[arg-type]
        made.append(pid)
        await s.execute(delete(Person).where(Person.id == pid))  # type: ignore[attr-defined]
        return pid

    monkeypatch.setattr(people, "enrol", erased_as_made)
    d = FakeDriver(core)
    await d.say("newcomer@northbridge.example", "whoami")
    assert len(made) == 1
    said = d.seen("newcomer@northbridge.example")
    assert said and "sorry" in said[-1].lower()
