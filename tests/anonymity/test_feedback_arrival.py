"""A motivated intruder in the change team, watching feedback arrive.

Feedback items carry their day, never a time (N2), and the list shuffles each day's items.
But the change team can list feedback as often as it likes: an item that is not there at
10:00 and is there at 10:10 was sent between the two, whatever the row says. The intruder
knows who was at their desk, or free, in those ten minutes (the rota, a meeting that ended,
Slack's "active" dot), and the item's author is among them; a detail in its text does the
rest. The safeguarding leads' alerts arrive at the second an urgent item is sent (N20's
residue), but the change team reads every item, urgent or not, and so does the dashboard.

The rule asked for here, whatever the design that meets it: two items sent the same day, ten
or so minutes apart, are never listed one without the other, so listing again and again
narrows neither author to the people free at that moment.
"""

from __future__ import annotations

from datetime import timedelta

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."


async def test_listing_again_and_again_does_not_date_an_item(loaded: Core) -> None:
    """Attack: list at 10:00, 10:10 and 10:45 on the day two people send, at 10:05 and
    10:40, and once the next day: the listing that first shows an item says when it came."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    start = clock.now().replace(hour=10, minute=0)
    listings: list[str] = []

    async def listing_at(minutes: int) -> None:
        clock.set(start + timedelta(minutes=minutes))  # type: ignore[attr-defined]
        await d.say(CHANGE, "feedback list all")
        listings.append(d.seen(CHANGE)[-1])

    await listing_at(0)
    clock.set(start + timedelta(minutes=5))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    await listing_at(10)
    clock.set(start + timedelta(minutes=40))  # type: ignore[attr-defined]
    assert await give(d, OTHER, SECOND) is None
    await listing_at(45)
    await listing_at(24 * 60)
    shown = [(FIRST in x, SECOND in x) for x in listings]
    assert (True, True) in shown  # the change team does get to read them
    assert all(a == b for a, b in shown), shown  # before: (True, False) at 10:10
