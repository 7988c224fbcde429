"""A motivated intruder with Slack's copy of people's DMs, against the slash command that opens
the feedback form.

docs/invariants.md N20 tells councils that the Home tab's button, a shortcut or the slash
command open the feedback form "with nothing in the DM", and a launch message should say so:
a typed "feedback" stays in the chat by name and time, these do not. The intruder (a
compliance administrator, N19) reads every message of every DM with the bot, with its time.

Before: a person's first slash command was their first contact, and the privacy notice was
posted in their DM at that second (bot/privacy/feature.py `first_contact`), before the form
opened: the DM said that this person used the command then, which on a quiet day (or beside
the leads' urgent alert a few seconds later) named who sent the item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack
from tests.test_feedback_helpers import OTHER, PRACTITIONER

CONCERN = "My colleague hits the children in the contact centre when nobody is looking."


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    yield driver
    await driver.close()


async def test_a_first_slash_command_that_opens_the_form_leaves_nothing_in_the_dm(
        slack: SlackDriver) -> None:
    """Two people the bot never heard from. One types `/voice feedback` (their first contact),
    sends a disclosure anyway after "Before you send"; the other does nothing. Their DMs must
    read the same. The notice is not lost: the form showed it (see the next test)."""
    d = slack
    status, _ = await d.command(PRACTITIONER, "feedback")
    assert status == 200
    assert d.adapter is not None
    await d.adapter.drain()
    values = {"text": CONCERN, "theme": "", "replies": "false"}
    assert d.form(PRACTITIONER) is not None, d.seen(PRACTITIONER)
    assert await d.submit(PRACTITIONER, values) is None
    assert await d.submit(PRACTITIONER, values) is None  # Send anyway
    form = d.form(PRACTITIONER)
    assert form is not None and form.title == "Feedback sent"
    assert d.seen(PRACTITIONER) == d.seen(OTHER) == [], d.seen(PRACTITIONER)
    await d.say(PRACTITIONER, "help")  # later, in their own time: told then
    assert any("privacy" in m.lower() for m in d.seen(PRACTITIONER))


async def test_a_person_who_only_uses_the_slash_command_is_shown_the_privacy_notice_in_the_form(
        slack: SlackDriver) -> None:
    """Someone whose only contact with the bot is `/voice feedback` (never a typed message)
    is shown the privacy notice before they write anything (UK GDPR Art. 13;
    docs/data-protection.md "Privacy notice"): in the form the command opens, which leaves
    nothing in the DM; once, as the notice in chat is once per platform account.

    Before: the notice waited for a typed message that never came: they sent feedback (and
    could send it every day) without ever being told how their information is used."""
    d = slack
    assert d.adapter is not None
    status, _ = await d.command(PRACTITIONER, "feedback")
    assert status == 200
    await d.adapter.drain()
    form = d.form(PRACTITIONER)
    assert form is not None and form.title == "Anonymous feedback"
    shown = " ".join(getattr(b, "text", "") for b in form.intro)
    assert "how staffvoice uses your information" in shown, shown[:300]
    assert "data controller" in shown  # the notice's own words, not a pointer to it
    assert d.seen(PRACTITIONER) == d.seen(OTHER) == []
    values = {"text": "The new rota works well for our team.", "theme": "", "replies": "false"}
    assert await d.submit(PRACTITIONER, values) is None
    status, _ = await d.command(PRACTITIONER, "feedback")  # the next day, again
    await d.adapter.drain()
    again = d.form(PRACTITIONER)
    assert again is not None and again.title == "Anonymous feedback"
    assert "how staffvoice uses your information" not in " ".join(
        getattr(b, "text", "") for b in again.intro)
    assert d.seen(PRACTITIONER) == d.seen(OTHER) == []


async def test_words_typed_after_the_slash_command_leave_nothing_in_the_dm(
        slack: SlackDriver) -> None:
    """`/voice feedback my manager shouts at the team` (words typed after the command, which
    are never kept): the person is told so in the form the command opens, not in the DM.

    Before: "I haven't kept what you typed" was posted in their DM at that second, by name
    and time, beside a colleague's DM that held nothing: the trace the slash command is
    recommended for avoiding (N20)."""
    d = slack
    assert d.adapter is not None
    for email in (PRACTITIONER, OTHER):
        await d.say(email, "help")  # both met before (the privacy notice went then)
    before = d.seen(PRACTITIONER), d.seen(OTHER)
    status, _ = await d.command(PRACTITIONER, "feedback my manager shouts at the team")
    assert status == 200
    await d.adapter.drain()
    form = d.form(PRACTITIONER)
    assert form is not None and form.title == "Anonymous feedback"
    shown = " ".join(getattr(b, "text", "") for b in form.intro)
    assert "I haven't kept what you typed" in shown, shown[:300]
    assert "manager shouts" not in shown and form.inputs[0].initial == ""
    assert (d.seen(PRACTITIONER), d.seen(OTHER)) == before, d.seen(PRACTITIONER)[-1:]


async def test_a_person_who_only_uses_the_shortcut_is_shown_the_privacy_notice_in_the_form(
        slack: SlackDriver) -> None:
    """The feedback shortcut (or the Home tab's button) as someone's only contact: no typed
    message, so no greeting ever ran. The form it opens shows the privacy notice, once; the
    DM stays empty.

    Before: they were never shown the notice (a button or shortcut greets nobody)."""
    d = slack
    assert d.adapter is not None
    await d.shortcut(PRACTITIONER, "feedback.open")
    await d.adapter.drain()
    form = d.form(PRACTITIONER)
    assert form is not None and form.title == "Anonymous feedback"
    assert "how staffvoice uses your information" in " ".join(
        getattr(b, "text", "") for b in form.intro)
    values = {"text": "The new rota works well for our team.", "theme": "", "replies": "false"}
    assert await d.submit(PRACTITIONER, values) is None
    await d.shortcut(PRACTITIONER, "feedback.open")
    await d.adapter.drain()
    again = d.form(PRACTITIONER)
    assert again is not None and "how staffvoice uses your information" not in " ".join(
        getattr(b, "text", "") for b in again.intro)
    assert d.seen(PRACTITIONER) == d.seen(OTHER) == []
