"""Slack's message limits in a broadcast: a broadcast is one message (it is edited in place for
its Celebrate count), so one that would not fit one Slack message is refused in its form.

Slack counts the text of a message's blocks as sent, escaped: `&`, `<` and `>` go as `&amp;`,
`&lt;` and `&gt;`, so 3,000 characters can be 15,000 (tests/fakes/slack_api.py, MAX_BLOCKS_TEXT).
"""

from __future__ import annotations

from sqlalchemy import select

from bot.broadcasts.tables import Broadcast
from tests.conformance.drivers.slack import SlackDriver
from tests.conformance.test_broadcasts import GOOD

CHANGE = "changelead@northbridge.example"
# Under the 3,000-character limit of a broadcast on Slack, over Slack's limit once escaped (a
# paste of markup, say): every character is sent as four or five.
ESCAPED = ("<<>>&&" * 500)[:2990]


async def test_a_broadcast_too_big_for_one_slack_message_is_refused_in_the_form(
    slack: SlackDriver,
) -> None:
    await slack.say(CHANGE, "broadcast")
    errors = await slack.submit(CHANGE, {**GOOD, "text": ESCAPED})
    assert errors is not None and "Slack" in errors.get("text", ""), errors
    assert slack.form(CHANGE) is not None  # still in the modal, to shorten
    async with slack.core.db.session() as s:
        assert (await s.execute(select(Broadcast))).first() is None
    # Shortened to fit: accepted, and the preview is one message.
    assert await slack.submit(CHANGE, {**GOOD, "text": ESCAPED[:1800]}) is None
    assert "Preview: only you can see this" in slack.seen(CHANGE)[-1]
