"""A motivated intruder with Slack's copy of people's DMs, on a day the bot was slow.

Slack waits 3 seconds for the answer to a form's submission. When the core takes longer (a
busy database, a slow disk), the adapter must answer without it. The person's DM is kept by
Slack by name and time (exports, the Discovery API, edit history: N19), so whatever the late
answer leaves there is read next to the person's name.

Before: the adapter closed the modal with an empty ack, and the screen the core then wanted
to show ("Before you send", for text that looks like a safeguarding concern) was offered in
the sender's DM as "Before you send: tap the button to open the form.", at that second; its
sealed copy, with the text typed, was kept for a day under the token in that button
(`slack_pending_forms`). The DM said who had just written something flagged as a possible
concern, and when: the leads' urgent alert a moment later, or the day's only urgent item,
was theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.core import Core
from bot.feedback import service as fb
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, dump, ref_for, release

CONCERN = "My colleague hits the children in the contact centre when nobody is looking."
IDEA = "Could the duty rota go out a week earlier?"


@pytest.fixture
async def slow_slack(loaded: Core, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackDriver]:
    """Slack, with a core that takes longer than the adapter's budget for an ack."""
    from adapters.slack import app as slack_app

    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    monkeypatch.setattr(slack_app, "SUBMIT_BUDGET_S", 0.05)

    async def slow(event: Any, port: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
        await asyncio.sleep(0.3)
        return await call_next()

    loaded.use(slow)
    yield driver
    await driver.close()


async def test_a_late_answer_to_a_feedback_form_leaves_nothing_in_the_senders_chat(
        slow_slack: SlackDriver, loaded: Core) -> None:
    """Two people open the feedback form; one writes a disclosure (and sends it anyway after
    "Before you send"), the other an idea; every answer is late. Their DMs stay alike (empty),
    nothing is kept under a button, and each still sees every screen in the modal."""
    d = slow_slack
    screens: dict[str, list[str]] = {}
    for who, text in ((PRACTITIONER, CONCERN), (OTHER, IDEA)):
        await d.shortcut(who, "feedback.open")
        values = {"text": text, "theme": "", "replies": "false"}
        assert await d.submit(who, values) is None
        form = d.form(who)
        titles = [form.title if form else "(closed)"]
        if form is not None and form.title == "Before you send":  # send it anyway
            assert await d.submit(who, values) is None
            form = d.form(who)
            titles.append(form.title if form else "(closed)")
        screens[who] = titles
    # The attack: read each sender's DM as Slack keeps it. Before: the discloser's held
    # "Before you send: tap the button to open the form.", the other's nothing.
    assert d.seen(PRACTITIONER) == d.seen(OTHER) == [], (d.seen(PRACTITIONER), d.seen(OTHER))
    tables = await dump(loaded.db)
    assert tables["slack_pending_forms"] == []
    # Each saw every screen in the modal, the thanks last, as when Slack is answered in time
    # (before: the modal closed at once, and no thanks was shown at all).
    assert screens == {PRACTITIONER: ["Before you send", "Feedback sent"], OTHER: ["Feedback sent"]}
    assert {r["text"] for r in tables["feedback_items"]} == {CONCERN, IDEA}


async def test_a_late_answer_in_a_thread_leaves_nothing_in_the_authors_chat(
        slow_slack: SlackDriver, loaded: Core) -> None:
    """N41 when the ack is late: two authors allow replies, the change team answers both;
    one answers back, the other reads and closes; every screen is late. Both DMs stay alike
    (the reply notice only), the confirmation replaces the "one moment" screen in the modal.
    Before intrude9's fix the confirmation was posted in the answering author's DM."""
    d = slow_slack
    for who, text in ((PRACTITIONER, IDEA), (OTHER, "The case form takes twice as long.")):
        await d.shortcut(who, "feedback.open")
        assert await d.submit(who, {"text": text, "theme": "", "replies": "true"}) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    for text in (IDEA, "The case form takes twice as long."):
        await d.say(CHANGE, f"feedback reply #{ref_for(listing, text[:30])}")
        assert await d.submit(CHANGE, {"text": "Which days are worst?"}) is None
    await fb.settle_notices()
    for who in (PRACTITIONER, OTHER):
        await d.tap(who, "Read the answer")
        assert d.form(who) is not None and d.form(who).form_id == "feedback.answer"  # type: ignore[union-attr]
    assert await d.submit(PRACTITIONER, {"text": "Mondays, always."}) is None
    answered = d.form(PRACTITIONER)
    assert answered is not None and answered.title == "Answer sent", answered
    assert await d.submit(OTHER, {"text": ""}) is None
    assert d.seen(PRACTITIONER) == d.seen(OTHER), (d.seen(PRACTITIONER), d.seen(OTHER))
    assert [m for m in d.seen(PRACTITIONER) if "change team answered" in m]
    tables = await dump(loaded.db)
    assert [r["text"] for r in tables["feedback_messages"] if r["sender"] == "author"] == [
        "Mondays, always."]


async def test_submit_pressed_twice_leaves_nothing_in_the_senders_chat(loaded: Core) -> None:
    """Attack: read the DM of someone whose Submit went twice (a double press, a client that
    sends again): Slack sends the same view (id and hash: one event) in two view_submissions.
    The second is a duplicate and is acked at once; the first is still checking the text.

    Before (found in review12): the adapter kept the follow-up screen of a submission by event
    id (adapters/slack/port.py `_in_ack`) and the duplicate's ack ended the wait, so the
    first's "Before you send" (the text looks like a safeguarding concern) was offered by a
    button in the DM, "Before you send: tap the button to open the form.", by name and time,
    and kept with the text under it (N20); a thanks was dropped and logged by form id."""
    from bot.feedback import feature

    d = SlackDriver(loaded, FakeSlack())
    await d.start()
    entered, go = asyncio.Event(), asyncio.Event()
    form = feature.feedback_form

    async def held_form(ctx: Any, **kw: Any) -> Any:
        if kw.get("warnings"):
            entered.set()
            await go.wait()  # the first submission waits here until the second is acked
        return await form(ctx, **kw)

    try:
        await d.shortcut(PRACTITIONER, "feedback.open")
        values = {"text": CONCERN, "theme": "", "replies": "false"}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(feature, "feedback_form", held_form)
            first = asyncio.ensure_future(d.submit(PRACTITIONER, values))
            await entered.wait()
            assert await d.submit(PRACTITIONER, values) is None  # the duplicate, acked
            go.set()
            assert await first is None
        assert d.seen(PRACTITIONER) == [], d.seen(PRACTITIONER)
        assert (await dump(loaded.db))["slack_pending_forms"] == []
    finally:
        await d.close()
