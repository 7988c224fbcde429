"""A motivated intruder in the change team: an urgent item's day says it was sent that evening
(N37 with N29).

An ordinary item sent after the day's last release (17:00) waits for the next day's first and
is dated by that release's day (N29). An urgent item waits for the same release for everyone
but its safeguarding leads (N37), but it kept the day it was sent: listed at Tuesday's noon
under Monday, it was sent on Monday after 17:00. Its leads were told the day it was sent by
their alert, so the item keeps two days: the leads read the day sent, everyone else the
release's day. The next steps of the same intruder: the things that expire by an item's day
(a reply route, a family's contact request) must not go a day before the others of its day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bot.core import Core
from bot.feedback import counts
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.programme import loader
from bot.scheduling.jobs import run_due
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for

CONCERN = "I saw a child being slapped by her mother in the waiting room."
IDEA = "Group supervision keeps getting cancelled at short notice."
OTHER_IDEA = "The duty rota is published too late to plan visits."


def _monday(core: Core) -> datetime:
    return core.clock.now().replace(hour=17, minute=1, second=0, microsecond=0)


async def _look(d: FakeDriver, core: Core, when: datetime, what: str = "feedback list all") -> str:
    core.clock.set(when)  # type: ignore[attr-defined]
    await d.say(CHANGE, what)
    return d.seen(CHANGE)[-1]


async def test_an_evening_urgent_item_reads_the_day_sent_to_its_leads_alone(
        loaded: Core) -> None:
    """Monday 19:30 a disclosure; Tuesday 9:00 two ideas. The leads' alert, chat's urgent
    queue, `feedback show` and the dashboard's queue say Monday, at once and after the
    release; the change team reads Tuesday, like the two ideas, in every view (listing,
    `feedback list urgent`, `feedback show`). Before: Monday for everyone."""
    d = FakeDriver(loaded)
    monday = _monday(loaded)
    await _look(d, loaded, monday)  # Monday's last release, on time
    loaded.clock.set(monday.replace(hour=19, minute=30))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN) is None
    alert = [m for m in d.seen(LEADS[0]) if m.startswith("URGENT")]
    assert len(alert) == 1 and "2026-11-30" in alert[0], alert
    tuesday = monday + timedelta(days=1)
    loaded.clock.set(tuesday.replace(hour=9))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, IDEA) is None
    assert await give(d, OTHER, OTHER_IDEA) is None
    await counts.flush(loaded)

    async def leads_views() -> None:
        await d.say(LEADS[0], "feedback list urgent")
        queue = d.seen(LEADS[0])[-1]
        assert "Monday 30 November 2026" in queue and "Tuesday" not in queue, queue
        await d.say(LEADS[0], f"feedback show #{ref_for(queue, CONCERN)}")
        assert "(30 Nov 2026," in d.seen(LEADS[0])[-1]
        async with loaded.db.session() as s:
            assert [u.day.isoformat() for u in await fb.urgent_queue(s)] == ["2026-11-30"]

    loaded.clock.set(tuesday.replace(hour=9, minute=5))  # type: ignore[attr-defined]
    await leads_views()
    listing = await _look(d, loaded, tuesday.replace(hour=12, minute=5))
    assert CONCERN in listing and IDEA in listing and OTHER_IDEA in listing
    assert "Monday" not in listing and "Tuesday 01 December 2026" in listing, listing
    urgent = await _look(d, loaded, tuesday.replace(hour=12, minute=6), "feedback list urgent")
    assert CONCERN in urgent and "Monday" not in urgent, urgent
    await d.say(CHANGE, f"feedback show #{ref_for(listing, CONCERN)}")
    assert "(01 Dec 2026," in d.seen(CHANGE)[-1]
    await leads_views()  # released, the leads still read the day they were told
    async with loaded.db.session() as s:
        days = {(i.text, i.day.isoformat(), i.lead_day and i.lead_day.isoformat())
                for i in (await s.execute(select(FeedbackItem))).scalars()}
    assert days == {(CONCERN, "2026-12-01", "2026-11-30"), (IDEA, "2026-12-01", None),
                    (OTHER_IDEA, "2026-12-01", None)}


async def test_an_evening_urgent_answer_reads_the_day_sent_to_its_leads_alone(
        loaded: Core) -> None:
    """The author answers the change team with a disclosure on Monday at 19:30: the leads'
    thread dates it Monday, at once; the change team's at Tuesday's noon release, Tuesday."""
    d = FakeDriver(loaded)
    monday = _monday(loaded)
    loaded.clock.set(monday.replace(hour=9))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, IDEA, replies=True) is None
    ref = ref_for(await _look(d, loaded, monday), IDEA)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Which days are cancelled most?"}) is None
    loaded.clock.set(monday.replace(hour=19, minute=30))  # type: ignore[attr-defined]
    await d.tap(PRACTITIONER, "Read the answer")
    errors = await d.submit(PRACTITIONER, {"text": CONCERN})
    if errors is None and d.form(PRACTITIONER) is not None:  # "Before you send"
        errors = await d.submit(PRACTITIONER, {"text": CONCERN})
    assert errors is None
    await d.say(LEADS[0], f"feedback show #{ref}")
    assert f"Author (30 Nov): {CONCERN}" in d.seen(LEADS[0])[-1]
    tuesday = monday + timedelta(days=1)
    loaded.clock.set(tuesday.replace(hour=9))  # type: ignore[attr-defined]
    assert await give(d, OTHER, OTHER_IDEA) is None
    await counts.flush(loaded)
    await _look(d, loaded, tuesday.replace(hour=17, minute=1))
    await d.say(CHANGE, f"feedback show #{ref}")
    shown = d.seen(CHANGE)[-1]
    assert f"Author (01 Dec): {CONCERN}" in shown and "URGENT" in shown, shown
    await d.say(LEADS[0], f"feedback show #{ref}")
    assert f"Author (30 Nov): {CONCERN}" in d.seen(LEADS[0])[-1]


async def test_an_evening_urgent_items_reply_route_goes_with_its_days_others(
        loaded: Core) -> None:
    """Routes expire by their item's day (`reply_routes_days` after it). A disclosure sent on
    Monday at 19:30 and an idea on Tuesday at 9:00, both with replies, both read Tuesday: from
    a month on, "replies possible" goes from both on the same day. Before, the disclosure's
    went a day earlier: of two items of one day, sent the evening before."""
    await loader.load(loaded.db, EXAMPLE.read_text() + "\nretention:\n  reply_routes_days: 30\n",
                      loaded.router)
    d = FakeDriver(loaded)
    monday = _monday(loaded)
    await _look(d, loaded, monday)
    loaded.clock.set(monday.replace(hour=19, minute=30))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN, replies=True) is None
    tuesday = monday + timedelta(days=1)
    loaded.clock.set(tuesday.replace(hour=9))  # type: ignore[attr-defined]
    assert await give(d, OTHER, IDEA, replies=True) is None
    await counts.flush(loaded)
    listing = await _look(d, loaded, tuesday.replace(hour=17, minute=1))
    refs = [ref_for(listing, t) for t in (CONCERN, IDEA)]
    gone = []
    for days in range(29, 34):
        loaded.clock.set(tuesday.replace(hour=3) + timedelta(days=days))  # type: ignore[attr-defined]
        await run_due(loaded, loaded.clock.now())
        seen = []
        for ref in refs:
            await d.say(CHANGE, f"feedback show #{ref}")
            seen.append("Replies possible" in d.seen(CHANGE)[-1])
        assert seen[0] == seen[1], (days, seen)  # before: the disclosure's went a day earlier
        gone.append(seen[0])
    assert gone[0] and not gone[-1]


async def test_an_evening_urgent_public_item_is_dated_and_its_contact_kept_like_its_days_others(
        loaded: Core) -> None:
    """A parent describes harm to a child on Monday at 20:00, another suggests something on
    Tuesday at 10:00, both asking to be contacted: `feedback list families` at Tuesday's noon
    shows both under Tuesday (before: the urgent one under Monday), and from a month on
    `families contact` says both were deleted on the same day."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.families import service
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health
    from tests.test_families import post, token_of

    d = FakeDriver(loaded)
    monday = _monday(loaded).replace(hour=20, minute=0)
    await _look(d, loaded, monday.replace(hour=17, minute=1))
    app, _ = build_app(loaded, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(loaded))
    texts = (CONCERN, "Nobody rang us back after the meeting")
    async with TestClient(TestServer(app)) as client:
        for when, text, name in ((monday, texts[0], "A Parent"),
                                 (monday + timedelta(hours=14), texts[1], "B Parent")):
            loaded.clock.set(when)  # type: ignore[attr-defined]
            status, _page = await post(client, better=text, contact="yes", name=name,
                                       how="parent@example.org", token=await token_of(client))
            assert status == 200
    assert any(m.startswith("URGENT") for m in d.seen(LEADS[0]))
    tuesday = monday + timedelta(hours=14)
    await counts.flush(loaded)
    await _look(d, loaded, tuesday.replace(hour=12, minute=1))
    await d.say(CHANGE, "feedback list families all")
    listing = d.seen(CHANGE)[-1]
    assert texts[0] in listing and texts[1] in listing
    assert "Monday" not in listing, listing
    refs = [ref_for(listing, t) for t in texts]
    for days in range(28, 33):
        await service.tick(loaded, tuesday + timedelta(days=days))
        seen = []
        for ref in refs:
            await d.say(CHANGE, f"families contact #{ref}")
            seen.append("no contact request" in d.seen(CHANGE)[-1])
        assert seen[0] == seen[1], (days, seen)
