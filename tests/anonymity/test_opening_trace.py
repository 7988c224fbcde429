"""A motivated intruder and the trace left by opening the feedback form with a typed word.

A Slack DM message carries no trigger to open a modal with, so typing "feedback" gets a
message with an "Open the form" button, and the blank form is kept (sealed) under the
button's token in `slack_pending_forms`, any replica being able to open it. Before, that row
expired exactly a day after the second it was written: a database administrator read, to the
second, when each person typed "feedback", and on a quiet day, with the item's place among
the rows (N2), when the item came (a lone item is otherwise dated to its day: N22). Now every
form offered on a day expires at the same moment, so the row dates no offer finer than its day.

What remains is the platform's: the word the person typed, and the bot's button, sit in their
DM at that second (docs/invariants.md N20's residue); the Home tab's button, a shortcut or the
slash command open the form with nothing in the DM.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from adapters.slack.tables import SlackPendingForm
from tests.conformance.drivers.slack import SlackDriver
from tests.slack.conftest import slack  # noqa: F401 (the fixture)
from tests.test_feedback_helpers import OTHER, PRACTITIONER


async def test_a_form_offered_by_button_is_stored_without_the_second_it_was_offered(
        slack: SlackDriver) -> None:  # noqa: F811
    """Two people type "feedback" a moment apart: their rows expire at one time, a midnight."""
    await slack.say(PRACTITIONER, "feedback")
    await asyncio.sleep(0.05)
    await slack.say(OTHER, "feedback")
    async with slack.core.db.session() as s:
        rows = list((await s.execute(select(SlackPendingForm))).scalars())
    assert len(rows) == 2
    expiries = {r.expires_at for r in rows}
    assert len(expiries) == 1, expiries  # before: each the second of its offer plus a day
    [at] = expiries
    assert (at.hour, at.minute, at.second, at.microsecond) == (0, 0, 0, 0)
    # The form still opens from the button.
    await slack.tap(PRACTITIONER, "Open the form")
    assert slack.fake.open_view(slack.user(PRACTITIONER).id) is not None
