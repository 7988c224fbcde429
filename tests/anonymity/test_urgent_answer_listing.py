"""A motivated intruder in the change team: an urgent *answer* shown at once is dated (N37's
sibling). An ordinary author's answer waits for the next release (N22, test_feedback_arrival);
an urgent item waits too for everyone but the leads (N37). An author's answer that looks like a
safeguarding concern was still readable to the whole change team at once, its item back on the
list as new and marked urgent: listing every few minutes, the team dates the author's tap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core import Core
from bot.feedback import counts
from bot.feedback import service as fb
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for
from tests.web.server import Server
from tests.web.test_signin import _client, _oidc

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
CONCERN = "I saw a child being slapped by her mother in the waiting room."


async def replied_at_noon(d: FakeDriver, core: Core) -> tuple[datetime, str]:
    """The story's start: at 9:00 one practitioner sends FIRST (replies allowed) and another
    SECOND; at 12:10 the change team lists them and replies to FIRST. Its day at 9:00 and the
    item's ref."""
    day = core.clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    core.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, replies=True) is None
    assert await give(d, OTHER, SECOND) is None
    await counts.flush(core)
    core.clock.set(day.replace(hour=12, minute=10))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    ref = ref_for(d.seen(CHANGE)[-1], FIRST)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Which days are cancelled most?"}) is None
    return day, ref


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


LEAD_REPLY = "Thank you for telling us. Please also call the front door today."
LATER_REPLY = "We have asked the area manager about the cancellations."


async def test_an_urgent_answer_changes_nothing_the_change_team_reads_before_its_release(
        server: Server, loaded: Core) -> None:
    """Attack, the next steps of a careful intruder: the author answers with a disclosure at
    13:15. The change team looks every quarter of an hour, in chat (`feedback list all`,
    `feedback list urgent`, `feedback show`), on the dashboard (the list and its counts per
    theme and status) and in the audit trail, for anything that moved: the answer, the item
    marked urgent or back to new, a lead's reply or status change, the lead's look at the
    item. The team itself replies and sets the status at 13:58, as it may. Nothing else moves
    before 17:00; at 17:05 the thread reads reply, reply, answer, the lead's reply (the team's
    13:58 reply before the 13:15 answer: the order dates nothing), the item urgent and new.
    The leads read the answer, urgent, at once. Before: the 13:30 look showed the answer, the
    item urgent and new."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day, ref = await replied_at_noon(d, loaded)
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:

        async def views(hour: int, minute: int) -> dict[str, str]:
            clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]
            seen = {}
            for what in ("feedback list all", "feedback list urgent", f"feedback show #{ref}",
                         "audit"):
                await d.say(CHANGE, what)
                seen[what] = d.seen(CHANGE)[-1]
            assert (await _oidc(http, server)).status == 303
            page = await http.get(f"{server.url}/app/feedback?status=all")
            assert page.status == 200
            seen["page"] = await page.text()
            async with loaded.db.session() as s:
                seen["counts"] = repr(sorted((await fb.theme_counts(s)).items(), key=repr))
            return seen

        before = await views(13, 0)
        clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
        await d.tap(PRACTITIONER, "Read the answer")
        errors = await d.submit(PRACTITIONER, {"text": CONCERN})
        if errors is None and d.form(PRACTITIONER) is not None:  # "Before you send"
            errors = await d.submit(PRACTITIONER, {"text": CONCERN})
        assert errors is None
        # The leads, at once: the urgent queue holds the item, urgent, and its answer.
        clock.set(day.replace(hour=13, minute=16))  # type: ignore[attr-defined]
        await d.say(LEADS[0], "feedback list urgent")
        queue = d.seen(LEADS[0])[-1]
        assert FIRST in queue and "URGENT" in queue and "the author answered" in queue, queue
        await d.say(LEADS[0], f"feedback show #{ref}")
        assert CONCERN in d.seen(LEADS[0])[-1] and "URGENT" in d.seen(LEADS[0])[-1]
        await d.say(LEADS[0], f"feedback status #{ref} in_progress")
        assert "Nothing was changed" in d.seen(LEADS[0])[-1]
        await d.say(LEADS[1], f"feedback reply #{ref}")
        assert await d.submit(LEADS[1], {"text": LEAD_REPLY}) is None
        async with loaded.db.session() as s:  # the dashboard's urgent queue, at once
            assert [(u.item.text, u.concerns) for u in await fb.urgent_queue(s)] == [
                (FIRST, ["child_risk"])]
        for hour, minute in ((13, 30), (13, 45), (14, 0), (16, 55)):
            if (hour, minute) == (14, 0):
                clock.set(day.replace(hour=13, minute=58))  # type: ignore[attr-defined]
                await d.say(CHANGE, f"feedback reply #{ref}")
                assert await d.submit(CHANGE, {"text": LATER_REPLY}) is None
                # The team's own reply and status change go at once, as ever, and say nothing.
                await d.say(CHANGE, f"feedback status #{ref} in_progress")
                assert "is now in_progress" in d.seen(CHANGE)[-1]
                before = await views(13, 59)
                assert LATER_REPLY in before[f"feedback show #{ref}"]
            now = await views(hour, minute)
            for what, seen in now.items():
                for secret in (CONCERN, LEAD_REPLY, "URGENT", "the author answered",
                               "waiting for its release"):
                    assert secret not in seen, (hour, minute, what, secret)
            assert now["counts"] == before["counts"], (hour, minute)
            assert now[f"feedback show #{ref}"] == before[f"feedback show #{ref}"]
            # The leads' looks at the item are recorded as looks at their queue ("13:16 lead
            # ... view.feedback_item #ref" would say something came of it then), which the
            # change team's `audit` leaves out (tests/anonymity/test_urgent_audit.py).
            leads_lines = [line for line in now["audit"].splitlines()
                           if any(lead in line for lead in LEADS)]
            assert not leads_lines, leads_lines
        after = await views(17, 5)
    shown = after[f"feedback show #{ref}"]
    assert "URGENT" in shown and ", new" in shown  # back to new with the answer
    order = [shown.index(t) for t in ("Which days", LATER_REPLY, CONCERN, LEAD_REPLY)]
    assert order == sorted(order), shown  # reply, reply, answer, the lead's reply
    assert FIRST in after["feedback list urgent"]
    assert after["counts"] != before["counts"]  # new again, from 17:00
