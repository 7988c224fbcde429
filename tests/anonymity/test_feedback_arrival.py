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

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from bot.audit.tables import AuditEntry
from bot.core import Core
from bot.feedback import release
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.programme.loader import ProgrammeError, validate
from bot.scheduling.jobs import next_due, run_due
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give, ref_for
from tests.test_feedback_helpers import release as release_helper

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


async def _listing(d: FakeDriver, clock: object, when: datetime, what: str = "all") -> str:
    clock.set(when)  # type: ignore[attr-defined]
    await d.say(CHANGE, f"feedback list {what}")
    return d.seen(CHANGE)[-1]


async def _reply_to(d: FakeDriver, listing: str, text: str, reply: str) -> None:
    await d.say(CHANGE, f"feedback reply #{ref_for(listing, text)}")
    assert await d.submit(CHANGE, {"text": reply}) is None


async def test_an_authors_answer_waits_for_the_next_release(loaded: Core) -> None:
    """Attack: the change team replies at 12:10, then shows the item at 13:00 and 13:30; the
    author answers at 13:15. An answer (and "the author answered", the item back to new)
    that shows up between two looks says when the author tapped, and so who was free then.

    Before: the 13:30 look showed the answer and the item as new again; the 13:00 look not."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, replies=True) is None
    assert await give(d, OTHER, SECOND) is None
    listing = await _listing(d, clock, day.replace(hour=12, minute=10))
    assert FIRST in listing and SECOND in listing  # both released at 12:00
    await _reply_to(d, listing, FIRST, "Which days are cancelled most?")
    ref = ref_for(listing, FIRST)
    looks = []
    for hour, minute in ((13, 0), (13, 30), (17, 5)):
        if (hour, minute) == (13, 30):
            clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
            await d.tap(PRACTITIONER, "Read the answer")
            assert await d.submit(PRACTITIONER, {"text": "the first week of each month."}) is None
        clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]
        await d.say(CHANGE, f"feedback show #{ref}")
        shown = d.seen(CHANGE)[-1]
        await d.say(CHANGE, "feedback list all")
        listed = d.seen(CHANGE)[-1]
        looks.append(("the first week of each month." in shown, f"#{ref} · no theme · new" in listed,
                      "the author answered" in listed))
    # 13:00 and 13:30 alike (the item read after the reply); at 17:00, the day's last
    # release, the answer and the item back on the list as new.
    assert looks == [(False, False, False), (False, False, False), (True, True, True)], looks


async def test_a_lone_item_waits_for_the_days_last_release(loaded: Core) -> None:
    """At 12:00 one item waits: it is held (released alone, it would be dated to the morning),
    and the day's last release, at 17:00, shows it; no count on the dashboard shows it before.
    Two items waiting at 12:00 go together then."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=5)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, theme="supervision") is None

    async def counted() -> int:
        async with loaded.db.session() as s:
            return sum((await fb.theme_counts(s)).values())

    held = await _listing(d, clock, day.replace(hour=12, minute=5))
    assert FIRST not in held and "New feedback appears at 12:00 and 17:00" in held
    assert await counted() == 0
    assert FIRST not in await _listing(d, clock, day.replace(hour=16, minute=59))
    assert FIRST in await _listing(d, clock, day.replace(hour=17, minute=0))
    assert await counted() == 1
    # The next day: two items in the morning go at noon.
    nxt = day + timedelta(days=1)
    clock.set(nxt)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Duty weeks leave no time for visits.") is None
    assert await give(d, OTHER, "Admin tasks eat our afternoons.") is None
    assert "Duty weeks" not in await _listing(d, clock, nxt.replace(hour=11, minute=59))
    noon = await _listing(d, clock, nxt.replace(hour=12, minute=0))
    assert "Duty weeks" in noon and "Admin tasks" in noon


async def test_an_item_sent_after_the_last_release_waits_for_the_next_days_first(
        loaded: Core) -> None:
    """Sent at 17:30 and 18:00, after the day's last release: not listed that evening nor the
    next morning; listed together at the next day's first release."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=17, minute=30)
    await _listing(d, clock, day.replace(hour=17, minute=0))  # the 17:00 release, on time
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    clock.set(day.replace(hour=18, minute=0))  # type: ignore[attr-defined]
    assert await give(d, OTHER, SECOND) is None
    nxt = day + timedelta(days=1)
    for when in (day.replace(hour=23), nxt.replace(hour=9), nxt.replace(hour=11, minute=59)):
        listing = await _listing(d, clock, when)
        assert FIRST not in listing and SECOND not in listing, when
    listing = await _listing(d, clock, nxt.replace(hour=12, minute=1))
    assert FIRST in listing and SECOND in listing


async def test_a_midday_release_found_late_is_skipped(loaded: Core) -> None:
    """Nothing ran at 12:00 (the bot was down) and the first listing comes at 14:31, past
    halfway to 17:00: releasing then would cut a short interval before the next release, so
    the items wait for 17:00. Found at 14:29 it still releases."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, OTHER, SECOND) is None
    assert FIRST not in await _listing(d, clock, day.replace(hour=14, minute=31))
    assert FIRST in await _listing(d, clock, day.replace(hour=17, minute=1))
    nxt = day + timedelta(days=1)
    clock.set(nxt)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Duty weeks leave no time for visits.") is None
    assert await give(d, OTHER, "Admin tasks eat our afternoons.") is None
    assert "Duty weeks" in await _listing(d, clock, nxt.replace(hour=14, minute=29))


async def test_the_scheduler_releases_at_the_moment_whether_or_not_something_waits(
        loaded: Core) -> None:
    """The release ticker's next moment is the same whether or not anything waits (waking
    only while something waited dated a lone item: tests/anonymity/test_release_wakeups.py);
    a scheduler tick at 12:00 releases both items in one go, with nobody listing."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=0)
    clock.set(day)  # type: ignore[attr-defined]
    ticker = loaded.router.tickers[release.JOB]
    assert await next_due(loaded, ticker, day) == day.replace(hour=12)
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, OTHER, SECOND) is None
    assert await next_due(loaded, ticker, day) == day.replace(hour=12)
    await run_due(loaded, day.replace(hour=12))
    async with loaded.db.session() as s:
        assert {i.released for i in (await s.execute(select(FeedbackItem))).scalars()} == {True}
    assert await next_due(loaded, ticker, day.replace(hour=12)) == day.replace(hour=17)


async def test_a_listing_leaves_no_count_of_its_items_in_the_audit_trail(loaded: Core) -> None:
    """Each listing is recorded (who, which listing, the minute), never how many items it
    showed: counts kept to the minute would date each release, and each item before."""
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, OTHER, SECOND) is None
    await release_helper(loaded)
    await d.say(CHANGE, "feedback list")
    await d.say(CHANGE, "feedback list urgent")
    await d.say(CHANGE, f"feedback show #{ref_for(d.seen(CHANGE)[-2], FIRST)}")
    async with loaded.db.session() as s:
        entries = list((await s.execute(select(AuditEntry).where(AuditEntry.action.in_(
            ["view.feedback", "view.urgent_queue", "view.feedback_item"])))).scalars())
    assert sorted(e.action for e in entries) == [
        "view.feedback", "view.feedback_item", "view.urgent_queue"]
    assert all(not e.detail for e in entries), [e.detail for e in entries]


def test_release_times_are_checked_when_the_programme_is_loaded(loaded: Core) -> None:
    """Quoted HH:MM times load; 12:00 unquoted (a YAML number) and 25:00 are refused clearly."""
    text = EXAMPLE.read_text()
    old = 'release_times: ["12:00", "17:00"]'
    assert old in text
    validate(text.replace(old, 'release_times: ["09:30", "16:00"]'), loaded.router)
    with pytest.raises(ProgrammeError) as bad:
        validate(text.replace(old, "release_times: [12:00, \"25:00\"]"), loaded.router)
    problems = "\n".join(bad.value.problems)
    assert 'release_times[0]: should be in quotes, like "12:00"' in problems
    assert "release_times[1]: should be a time of day like 12:00" in problems
    assert release.describe(("17:00", "09:30", "12:00")) == "09:30, 12:00 and 17:00"


async def test_two_processes_at_one_release_moment_release_once_and_together(
        loaded: Core) -> None:
    """Two serving processes (own engines) reach 12:00 at once: one applies the release and
    the other finds it applied; every waiting item is released, in one transaction (on
    PostgreSQL all released rows share one `xmin`)."""
    import asyncio

    from sqlalchemy import text as sa_text

    from tests.test_feedback_counts import process

    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=0)
    clock.set(day)  # type: ignore[attr-defined]
    for who, text in ((PRACTITIONER, FIRST), (OTHER, SECOND),
                      ("practitioner3@northbridge.example", "Lunch breaks keep disappearing.")):
        assert await give(d, who, text) is None
    noon = day.replace(hour=12)
    from bot.feedback import counts
    await counts.flush(loaded)  # the sending process's flusher, within its interval (N25)
    async with process(loaded) as one, process(loaded) as two:
        done = await asyncio.gather(release.release_due(one, noon),
                                    release.release_due(two, noon))
        assert sorted(done) == [0, 1]
        assert await release.release_due(loaded, noon) == 0
    async with loaded.db.session() as s:
        rows = list((await s.execute(select(FeedbackItem))).scalars())
        assert len(rows) == 3 and all(r.released for r in rows)
        if not loaded.db.is_sqlite:
            xmins = set((await s.execute(sa_text("SELECT xmin::text FROM feedback_items"))).scalars())
            assert len(xmins) == 1, xmins
