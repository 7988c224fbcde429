"""Stories: scheduled prompts meet a platform that refuses them for good (Slack answers
msg_too_long or invalid_blocks to every post, as it would to a survey question over Block
Kit's limits). Each person's pulse reminder, and a milestone owner's check-in, is tried once
and recorded; one refusal does not stop the prompts after it, and nothing is tried again on
every tick. And a tapped card Slack will not edit still leaves the answer saved, and says so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from adapters.slack.port import SlackPort
from bot.clock import FakeClock
from bot.core import Core
from bot.milestones.tables import MilestoneCheckin
from bot.pulse.tables import PulseParticipation, PulsePending
from tests.conformance.drivers.slack import make as make_slack
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixture import slack_on
from tests.test_scheduler_grace import FNM, INVITE, MON, start_at, utc

REMINDER = "gentle reminder"
P1 = "practitioner1@northbridge.example"


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    async with slack_on(loaded) as pair:
        yield pair


def posts(fake: FakeSlack, what: str) -> list[str]:
    """The channels of every chat.postMessage whose text carries `what`, refused or not."""
    return [str(c.args.get("channel")) for c in fake.called("chat.postMessage")
            if what in str(c.args.get("text", "")) + json.dumps(c.args.get("blocks"))]


async def reminded(core: Core) -> int:
    async with core.db.session() as s:
        return len((await s.execute(select(PulseParticipation.person_id).where(
            PulseParticipation.reminded.is_(True)))).all())


async def test_reminders_slack_refuses_are_tried_once_each_and_do_not_stop_the_round(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    await start_at(loaded, clock, MON)  # the weekly round opens; invitations go
    invited = posts(fake, INVITE)
    assert len(invited) >= 10
    fake.failures["chat.postMessage"] = ["msg_too_long"] * 500
    await start_at(loaded, clock, utc(2, 10))  # Wednesday 10:00: the reminders
    await start_at(loaded, clock, utc(2, 10, 1))
    await start_at(loaded, clock, utc(2, 10, 2))
    tried = posts(fake, REMINDER)
    assert len(tried) == len(set(tried)), "nobody's reminder is tried again on every tick"
    assert len(tried) >= 10 and set(tried) <= set(invited)
    assert await reminded(loaded) == len(tried), "each refused reminder is recorded as tried"



async def test_a_milestone_check_in_slack_refuses_is_tried_once_not_on_every_tick(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    await start_at(loaded, clock, MON)
    fake.failures["chat.postMessage"] = ["msg_too_long"] * 500
    for minute in range(3):  # Monday 7 December 10:00: the weekly check-in is due
        await start_at(loaded, clock, utc(7, 10, minute))
    tried = posts(fake, f"Check-in: {FNM}")
    assert len(tried) == 1, "tried once, not once a tick"
    async with loaded.db.session() as s:
        states = list((await s.execute(select(MilestoneCheckin.state).where(
            MilestoneCheckin.milestone_id == "family-network-meetings"))).scalars())
    assert "sent" in states and "due" not in states


@pytest.mark.parametrize("refusal", ["message_not_found", "cant_update_message"])
async def test_an_answer_whose_card_slack_will_not_edit_is_saved_and_says_so(
    loaded: Core, refusal: str
) -> None:
    """chat.update refuses to edit the tapped question card: the answer is stored, and the
    practitioner gets the next question as a new message, never "nothing was saved"."""
    d = await make_slack(loaded)
    try:
        await loaded.tick()  # Monday 10:00: the round opens, question 1 in each DM
        d.fake.failures["chat.update"] = [refusal]
        await d.tap(P1, "4")
        assert d.adapter is not None
        await d.adapter.drain()
        seen = d.seen(P1)
        assert not any("nothing was saved" in t for t in seen), seen
        assert "Saved your answer to question 1." in seen[-1] and "question 2 of 7" in seen[-1]
        async with loaded.db.session() as s:
            assert (await s.execute(select(func.count()).select_from(PulsePending))
                    ).scalar_one() == 1
    finally:
        await d.close()
