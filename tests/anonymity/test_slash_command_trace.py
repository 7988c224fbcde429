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
    read the same. The notice is not lost: it comes with the next thing they say."""
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
