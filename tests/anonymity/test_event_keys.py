"""The holder of the server key, after a round closed, with the event de-duplication rows.

The core keeps a keyed hash of each event's id for a day or two, so a platform's redelivery is
not handled twice (`processed_events`, N9). A Slack tap's id is made of the workspace, the
user, the tap's `action_ts` and the button's action id, and a pulse card's buttons differ by
the answer they give (`pulse.a.<round>.<question>#<index>`). Before the fix the hash covered
that id alone: with the server key, an intruder who knows a person's Slack user id tries every
`action_ts` of the stored day (86,400 s x 10^6, for each of five buttons: some 4 x 10^11
HMAC-SHA256, hours on a few CPU cores, minutes on a GPU; seconds when they know the minute)
and reads, from the one that matches a stored row, what the person answered, after the round
closed and its secret was destroyed (DESIGN: "for closed rounds, even the holder of the server
key"). The test hands the intruder the exact `action_ts`, to stay fast; what the search costs
is said above.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from adapters.slack import events
from bot.core import Core
from bot.dispatch_tables import ProcessedEvent
from bot.pulse import service as pulse
from bot.pulse.tables import PulseRound
from bot.secrets import keyed_hash
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack
from tests.test_feedback_helpers import PRACTITIONER


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    yield driver
    await driver.close()


async def test_the_server_key_reads_no_answer_from_the_event_rows_of_a_closed_round(
        slack: SlackDriver, loaded: Core) -> None:
    """A practitioner taps 4 on question 1; the round closes. The intruder has the dump, the
    server key, the practitioner's Slack user id, the card (its buttons' action ids) and the
    tap's `action_ts`, but not Slack's `trigger_id` (random, and never stored). Before the fix
    exactly one button's event id hashed to a stored row: the one labelled 4."""
    sent: list[dict[str, Any]] = []
    post = slack.post_interaction

    async def recording(payload: dict[str, Any]) -> Any:
        sent.append(payload)
        return await post(payload)

    slack.post_interaction = recording  # type: ignore[method-assign]
    await loaded.tick()  # Monday 10:00: the round opens, question 1 in everyone's DM
    await slack.tap(PRACTITIONER, "4")
    assert "Saved your answer to question 1." in slack.seen(PRACTITIONER)[-1]
    # Slack's redelivery of the same tap (the same body, trigger_id included) is still seen
    # as one: no second event row, no second edit of the card.
    async with loaded.db.session() as s:
        rows = len((await s.execute(select(ProcessedEvent))).all())
    calls = len(slack.fake.calls)
    assert (await post(sent[-1]))[0] == 200
    async with loaded.db.session() as s:
        assert len((await s.execute(select(ProcessedEvent))).all()) == rows
    assert len(slack.fake.calls) == calls
    async with loaded.db.session() as s:
        rnd = (await s.execute(select(PulseRound))).scalar_one()
        await pulse.close_round(s, rnd, loaded.clock.now(), loaded.secret)
    async with loaded.db.session() as s:
        assert rnd.id not in {r.round_id for r in (await s.execute(select(PulseRound).where(
            PulseRound.state == "open"))).scalars()}
        stored = set((await s.execute(select(ProcessedEvent.event_id))).scalars())

    tap = sent[-1]
    pressed = tap["actions"][0]
    buttons = {e["text"]["text"]: e["action_id"]
               for b in tap["message"]["blocks"] if b.get("type") == "actions"
               for e in b["elements"] if e.get("type") == "button"
               and e["action_id"].startswith(pressed["action_id"].rpartition("#")[0] + "#")}
    assert set(buttons) >= {"1", "2", "3", "4", "5"}, buttons
    matched = [label for label, action in buttons.items()
               if keyed_hash(loaded.secret, "event", events.event_id(
                   tap["team"]["id"], tap["user"]["id"], pressed["action_ts"], action))
               in stored]
    assert matched == [], f"the event rows say the practitioner answered {matched}"
