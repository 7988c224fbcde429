"""A motivated intruder in the change team: an urgent *answer* shown at once is dated (N37's
sibling). An ordinary author's answer waits for the next release (N22, test_feedback_arrival);
an urgent item waits too for everyone but the leads (N37). An author's answer that looks like a
safeguarding concern was still readable to the whole change team at once, its item back on the
list as new and marked urgent: listing every few minutes, the team dates the author's tap.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
CONCERN = "I saw a child being slapped by her mother in the waiting room."


async def test_an_urgent_answer_is_not_shown_to_the_change_team_before_a_release(
        loaded: Core) -> None:
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, replies=True) is None
    assert await give(d, OTHER, SECOND) is None
    clock.set(day.replace(hour=12, minute=10))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    ref = ref_for(listing, FIRST)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Which days are cancelled most?"}) is None
    clock.set(day.replace(hour=13, minute=0))  # type: ignore[attr-defined]
    await d.say(CHANGE, f"feedback show #{ref}")
    before = d.seen(CHANGE)[-1]
    clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
    await d.tap(PRACTITIONER, "Read the answer")
    errors = await d.submit(PRACTITIONER, {"text": CONCERN})
    if errors is None and d.form(PRACTITIONER) is not None:  # "Before you send"
        errors = await d.submit(PRACTITIONER, {"text": CONCERN})
    assert errors is None
    assert any(m.startswith("URGENT") for m in d.seen(LEADS[0])), d.seen(LEADS[0])[-2:]
    await d.say(LEADS[0], f"feedback show #{ref}")
    assert CONCERN in d.seen(LEADS[0])[-1]  # and reads it at once
    clock.set(day.replace(hour=13, minute=30))  # type: ignore[attr-defined]
    await d.say(CHANGE, f"feedback show #{ref}")
    after = d.seen(CHANGE)[-1]
    assert CONCERN not in before
    assert CONCERN not in after, "the 13:30 look shows the 13:15 answer: the tap is dated"


IDEA = "Group supervision keeps getting cancelled at short notice."
OTHER_IDEA = "The duty rota is published too late to plan visits."


async def test_an_evening_urgent_item_is_not_dated_to_the_evening_for_the_change_team(
        loaded: Core) -> None:
    """Attack: the day's last release is at 17:00. An item listed at the next day's noon
    release under the day before was sent after 17:00 the day before: an evening sender. An
    ordinary item sent then is shown under its release's day (N29); an urgent one should be
    too, for everyone but the leads."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=19, minute=30, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN) is None
    nxt = day + timedelta(days=1)
    clock.set(nxt.replace(hour=9))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, IDEA) is None
    assert await give(d, OTHER, OTHER_IDEA) is None
    clock.set(nxt.replace(hour=12, minute=5))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    assert CONCERN in listing and IDEA in listing
    # Before: under "Monday 30 November 2026", the day before the release that showed it.
    assert f"{day:%A %d %B %Y}" not in listing, listing


async def test_the_audit_trail_does_not_show_the_change_team_an_urgent_ref_before_release(
        loaded: Core) -> None:
    """Attack: a lead reads the alerted item at 10:44 (`feedback show #ref`); the change team
    types `audit` at 10:45 and sees "10:44 ... view.feedback_item #ref": an item exists that
    their lists do not show, and at noon the listing's #ref says it was sent before 10:44."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=43, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN) is None
    await d.say(LEADS[0], "feedback list urgent")
    ref = ref_for(d.seen(LEADS[0])[-1], CONCERN)
    clock.set(day.replace(minute=44))  # type: ignore[attr-defined]
    await d.say(LEADS[0], f"feedback show #{ref}")
    assert CONCERN in d.seen(LEADS[0])[-1]  # the lead reads it at once
    clock.set(day.replace(minute=45))  # type: ignore[attr-defined]
    await d.say(CHANGE, f"feedback show #{ref}")
    assert "There is no feedback" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "audit")
    trail = d.seen(CHANGE)[-1]
    assert "Audit trail" in trail
    assert ref not in trail, trail
