"""A motivated intruder in the change team, and the families page's spam queue (N22).

A release other than the day's last waits until at least two things wait in the same listing,
so a lone item is dated to its day, not to the morning. The public form has a hidden field
(a honeypot): what fills it in goes to the spam queue, a listing of its own ("feedback list
families spam"), which nobody reads as feedback. If the spam queue's rows counted towards the
"two", one bot's post (or the intruder's own, with the hidden field filled in from the
browser's developer tools) would release a lone parent's item at noon, alone in the families
listing: dated to the morning, and with who came to the front desk that morning, named.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_families import client, post, token_of  # noqa: F401 (the client fixture)
from tests.test_feedback_helpers import CHANGE

LONE = "The family group meeting was moved three times this month."


async def _families(d: FakeDriver, what: str = "") -> str:
    await d.say(CHANGE, f"feedback list families {what}".strip())
    return d.seen(CHANGE)[-1]


async def test_spam_does_not_release_a_lone_public_item_at_noon(
        client: TestClient, loaded: Core) -> None:  # noqa: F811
    """A parent sends at 10:05; a bot fills in the hidden field at 10:30. At 12:00 the
    families listing must not show the parent's item (it waits for 17:00, as a lone item
    does); before the fix it showed it at noon, alone."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=5, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    status, _ = await post(client, rating="3", better=LONE, token=await token_of(client))
    assert status == 200
    clock.set(day.replace(minute=30))  # type: ignore[attr-defined]
    status, _ = await post(client, working="buy cheap things", website="http://spam.example",
                           token=await token_of(client))
    assert status == 200
    clock.set(day.replace(hour=12, minute=1))  # type: ignore[attr-defined]
    noon = await _families(d)
    assert LONE not in noon  # before: the lone item, released at noon by the spam beside it
    assert "buy cheap things" not in await _families(d, "spam")  # a lone spam row waits too
    clock.set(day.replace(hour=17, minute=1))  # type: ignore[attr-defined]
    assert LONE in await _families(d)
    assert "buy cheap things" in await _families(d, "spam")


async def test_two_spam_rows_release_no_lone_item_and_two_items_go_at_noon(
        client: TestClient, loaded: Core) -> None:  # noqa: F811
    """Two spam rows wait beside one real item: the item still waits for 17:00. The next
    day two real items go at noon, and the spam that waited with them does not hold them."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    await post(client, rating="2", better=LONE, token=await token_of(client))
    for n in range(2):
        await post(client, working=f"spam {n}", website="http://spam.example",
                   token=await token_of(client))
    clock.set(day.replace(hour=12, minute=1))  # type: ignore[attr-defined]
    assert LONE not in await _families(d)
    clock.set(day.replace(hour=17, minute=1))  # type: ignore[attr-defined]
    assert LONE in await _families(d)
    nxt = day + timedelta(days=1)
    clock.set(nxt)  # type: ignore[attr-defined]
    await post(client, rating="4", better="The new leaflet is clear.", token=await token_of(client))
    await post(client, rating="5", better="Our worker calls back the same day.",
               token=await token_of(client))
    await post(client, working="spam again", website="http://spam.example",
               token=await token_of(client))
    clock.set(nxt.replace(hour=12, minute=1))  # type: ignore[attr-defined]
    noon = await _families(d)
    assert "The new leaflet" in noon and "calls back" in noon
