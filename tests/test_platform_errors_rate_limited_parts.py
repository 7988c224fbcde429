"""Stories: a DM too long for one Slack message goes as several, in order (SlackPort._post),
and Slack answers 429 once the first part is in the chat. A 429 says "nothing was posted,
try again": `Core.dm` waits it out and tries the send again (N56, `DM_RATE`), and the
safeguarding alerts try again at the next tick (N45). Said of a message whose first part
had landed, that posted the first part twice.

The real fake Slack Web API (tests/fakes/slack_api.py), driven through the adapter's port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from adapters.slack.port import SlackPort
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackAlert
from bot.model import ConversationRef, Image, Message, Text
from bot.people import service as people
from bot.people.tables import Identity, Person
from bot.port import TransientError
from bot.reports.chart import Trend, TrendPoint, describe, render_png
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixture import slack_on

PRACTITIONER = "practitioner1@northbridge.example"
LEADS = ["safeguarding.lead@northbridge.example", "lado@northbridge.example"]
CHANGE = "changelead@northbridge.example"
SECTIONS = 5  # 2,400 characters each: 12,000 in all, two Slack messages (BLOCKS_TEXT 10,000)


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    async with slack_on(loaded) as pair:
        yield pair


def _long() -> Message:
    blocks = tuple(Text(f"SECTION-{n} " + "Notes from the team's review of the rota. " * 57)
                   for n in range(1, SECTIONS + 1))
    return Message(blocks, fallback="The review of the rota")


async def _on_slack(core: Core, fake: FakeSlack, email: str) -> tuple[str, str]:
    """The person's id, and their Slack DM (stored as their route)."""
    u = fake.user_by_email(email)
    assert u is not None
    dm = people.conversation_to_json(ConversationRef("slack", fake.team, fake.dm_of(u.id)))
    async with core.db.session() as s:
        pid = (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()
        s.add(Identity(platform="slack", workspace=fake.team, user_id=u.id, person_id=pid, dm=dm))
    return pid, fake.dm_of(u.id)


def _seen(fake: FakeSlack, channel: str) -> dict[str, int]:
    """How many times each section is in the DM."""
    posts = [json.dumps(p.blocks) for p in fake.messages if p.channel == channel]
    return {f"SECTION-{n}": sum(f"SECTION-{n} " in p for p in posts)
            for n in range(1, SECTIONS + 1)}


async def test_a_429_after_the_first_part_landed_does_not_post_it_again(
        loaded: Core, slack: tuple[FakeSlack, SlackPort]) -> None:
    """Before: the 429s on the second part (more than the adapter waits out inline) came out
    of the send as RateLimited, `Core.dm` waited and sent the whole message again: the
    person's DM held the first part twice."""
    fake, _port = slack
    pid, dm = await _on_slack(loaded, fake, PRACTITIONER)
    fake.retry_after = 1
    fake.throttle_after["chat.postMessage"] = 1  # the first part goes
    fake.throttle["chat.postMessage"] = 4  # then four 429s in a row
    ref = await loaded.dm(pid, _long())
    assert ref is not None
    assert _seen(fake, dm) == {f"SECTION-{n}": 1 for n in range(1, SECTIONS + 1)}
    assert len([p for p in fake.messages if p.channel == dm]) == 2


async def test_a_lasting_429_after_the_first_part_is_not_said_as_nothing_posted(
        loaded: Core, slack: tuple[FakeSlack, SlackPort]) -> None:
    """Slack refuses the second part for longer than anyone waits: the send fails as one
    whose outcome is in doubt (TransientError: a keyed sender asks Slack before sending
    again), never as RateLimited (nothing posted: sent again whole). The first part, in the
    chat, is there once."""
    fake, _port = slack
    pid, dm = await _on_slack(loaded, fake, PRACTITIONER)
    fake.retry_after = 30  # longer than anyone waits for
    fake.throttle_after["chat.postMessage"] = 1
    fake.throttle["chat.postMessage"] = 1
    with pytest.raises(TransientError):
        await loaded.dm(pid, _long())
    seen = _seen(fake, dm)
    assert seen["SECTION-1"] == 1


async def test_an_alert_whose_last_part_slack_kept_refusing_arrives_whole_at_the_next_tick(
        loaded: Core, slack: tuple[FakeSlack, SlackPort]) -> None:
    """A safeguarding alert in two Slack messages (a long disclosure; the author's answers
    in their own words make one as long, N50); Slack takes the first part, then refuses
    the next for longer than the adapter waits. The alert waits (in doubt: keyed, N45), and
    the next tick asks Slack for its key: found only once the whole alert landed (the key
    rides on the last part), so the rest is sent. Before this change's key placement the
    key rode on the first part: found, the alert passed for sent, and the lead never got the
    rest of it."""
    fake, _port = slack
    dms = {lead: (await _on_slack(loaded, fake, lead))[1] for lead in LEADS}
    async with loaded.db.session() as s:
        change = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    text = " ".join(f"SECTION-{n} " + "He said his stepdad hits him when he is late home. " * 46
                    for n in range(1, SECTIONS + 1))
    await fb.store(loaded, change, text=text, theme_id=None, replies=False,
                   concerns=["child_risk"])
    fake.retry_after = 1
    fake.throttle_after["chat.postMessage"] = 1  # the first lead's first part goes
    fake.throttle["chat.postMessage"] = 12  # then more 429s than the adapter waits out
    await fb.deliver_alerts(loaded)
    await fb.deliver_alerts(loaded)  # the next tick
    for lead, dm in dms.items():
        seen = _seen(fake, dm)
        assert all(seen.values()), (lead, seen)  # every part of the alert reached each lead
        assert seen["SECTION-5"] == 1, (lead, seen)
    async with loaded.db.session() as s:
        assert {a.status for a in (await s.execute(select(FeedbackAlert))).scalars()} == {"sent"}


async def test_a_429_after_the_chart_was_shared_does_not_share_it_again(
        loaded: Core, slack: tuple[FakeSlack, SlackPort]) -> None:
    """A results card with its chart: the chart goes first (a file message), then the card.
    Before: the card's 429s (more than the adapter waits out inline) came out as
    RateLimited, `Core.dm` waited and sent it all again: the chart twice in the DM."""
    fake, _port = slack
    pid, dm = await _on_slack(loaded, fake, PRACTITIONER)
    trend = Trend("I feel listened to - Assessment Team", "favourable %", 0, 100,
                  (TrendPoint("Round 1", 40.0, 0.5), TrendPoint("Round 3", 62.5, 0.8)))
    card = Message((Text("Results: Assessment Team", heading=True),
                    Image(alt=describe(trend), png=render_png(trend), title=trend.title)),
                   fallback="Results: Assessment Team")
    fake.retry_after = 1
    fake.throttle["chat.postMessage"] = 4  # the chart's upload is another method
    assert await loaded.dm(pid, card) is not None
    posts = [p for p in fake.messages if p.channel == dm]
    assert [bool(p.files) for p in posts] == [True, False]  # the chart once, then the card
