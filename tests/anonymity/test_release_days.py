"""A motivated intruder in the change team: an item's day splits its release's interval (N29).

Feedback carries its day, never a time (N2), and waits for a release (N22): an item sent
after the day's last release (17:00) goes with the next day's first (12:00). But it kept the
day it was sent on. Tuesday's noon release shows the items sent on Tuesday morning dated
Tuesday, and the one sent on Monday evening dated Monday: sent after Monday's 17:00 release
(else it would have gone then), so between 17:00 and midnight, when only the emergency duty
worker was working. The rule asked for: an item's (and an author's answer's) day is the day
of the release it waits for, so the day never says more than the release does.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from bot.core import Core
from bot.feedback import counts
from bot.feedback.tables import FeedbackItem
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give, ref_for

EVENING = "Out of hours there is nobody to call for advice."
MORNING = ("Supervision keeps being cancelled in my team.",
           "The new case recording form takes twice as long.")
THIRD = "practitioner3@northbridge.example"


async def test_an_item_sent_after_the_last_release_is_dated_like_the_release_it_goes_with(
        loaded: Core) -> None:
    """Monday 20:00, the evening worker sends; Tuesday 10:00, two others. Tuesday's noon
    listing must show all three under one day; before the fix the evening item read Monday
    and the others Tuesday."""
    d = FakeDriver(loaded)
    monday = loaded.clock.now().replace(hour=20, minute=0, second=0, microsecond=0)
    await _look(d, loaded, monday.replace(hour=17, minute=1))  # Monday's last release, on time
    loaded.clock.set(monday)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, EVENING) is None
    tuesday = monday + timedelta(hours=14)
    loaded.clock.set(tuesday)  # type: ignore[attr-defined]
    assert await give(d, OTHER, MORNING[0]) is None
    assert await give(d, THIRD, MORNING[1]) is None
    await counts.flush(loaded)
    listing = await _look(d, loaded, tuesday.replace(hour=12, minute=1))
    days = set()
    for text in (EVENING, *MORNING):
        await d.say(CHANGE, f"feedback show #{ref_for(listing, text)}")
        found = re.search(r"\((\d+ \w+ \d{4}),", d.seen(CHANGE)[-1])
        assert found is not None
        days.add(found.group(1))
    assert len(days) == 1, days  # before: {Monday, Tuesday}
    async with loaded.db.session() as s:
        assert len(set((await s.execute(select(FeedbackItem.day))).scalars())) == 1


async def _look(d: FakeDriver, core: Core, when: object) -> str:
    core.clock.set(when)  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    return d.seen(CHANGE)[-1]


async def test_a_contact_request_expires_by_its_items_day_not_the_day_it_was_sent(
        loaded: Core) -> None:
    """Attack (review9): two parents ask to be contacted, one on Monday at 20:00, one on
    Tuesday at 10:00; both items read Tuesday (N29). Thirty days on, the change team types
    `families contact` for each: before the fix the evening one had "no contact request" a
    day before the other (its retention ran from the day it was sent), so of two items of one
    day the one whose contact went first was sent the evening before."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.families import service
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health
    from tests.test_families import post, token_of

    d = FakeDriver(loaded)
    monday = loaded.clock.now().replace(hour=20, minute=0, second=0, microsecond=0)
    await _look(d, loaded, monday.replace(hour=17, minute=1))  # Monday's last release, on time
    app, _ = build_app(loaded, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(loaded))
    async with TestClient(TestServer(app)) as client:
        for when, name in ((monday, "A Parent"), (monday + timedelta(hours=14), "B Parent")):
            loaded.clock.set(when)  # type: ignore[attr-defined]
            status, _page = await post(client, better=f"Nobody rang {name} back", contact="yes",
                                       name=name, how="parent@example.org",
                                       token=await token_of(client))
            assert status == 200
    tuesday = monday + timedelta(hours=14)
    await counts.flush(loaded)
    await _look(d, loaded, tuesday.replace(hour=12, minute=1))
    await d.say(CHANGE, "feedback list families all")
    listing = d.seen(CHANGE)[-1]
    refs = [ref_for(listing, f"Nobody rang {n} back") for n in ("A Parent", "B Parent")]
    async with loaded.db.session() as s:
        assert len(set((await s.execute(select(FeedbackItem.day))).scalars())) == 1
    # The families housekeeping tick, each day from a month on: the two go on the same day.
    for days in range(28, 33):
        await service.tick(loaded, tuesday + timedelta(days=days))
        seen = []
        for ref in refs:
            await d.say(CHANGE, f"families contact #{ref}")
            seen.append("no contact request" in d.seen(CHANGE)[-1])
        assert seen[0] == seen[1], (days, seen)  # before: the evening one went a day earlier
