"""Stories: pulse invitations the platform refuses are counted in the round's status.

The change team opens the weekly round through Slack (the real adapter, the fake Web API over
HTTP). Slack refuses some invitations: a deactivated account (never found by email), a DM that
takes no posts (is_archived), a message refused outright (msg_too_long). Before, these people
were simply never invited and no status said so; now "pulse" and "pulse SURVEY" say how many
could not be invited and why, by kind of reason, never who. Once the round closes, the count of
those never invited remains (the reasons go with the rows that named people, N3).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Person
from bot.pulse import invitations
from bot.pulse import service as pulse
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack

CHANGE = "changelead@northbridge.example"
SURVEY = "weekly-pulse"


async def _three_refusals(loaded: Core, d: SlackDriver) -> list[str]:
    """Three staff Slack will refuse, each in its own way; their emails."""
    async with loaded.db.session() as s:
        emails = sorted(str(e) for e in (await s.execute(select(Person.email).where(
            Person.email.is_not(None), Person.email != CHANGE))).scalars())[:3]
    gone, archived, refused = (d.user(e) for e in emails)
    d.fake.deactivate(gone.id)
    d.fake.refuse_posts(d.fake.dm_of(archived.id), "is_archived")
    d.fake.refuse_posts(d.fake.dm_of(refused.id), "msg_too_long")
    return emails


def _status_lines(d: SlackDriver) -> str:
    return "\n".join(d.seen(CHANGE)[-1:])


async def test_refused_invitations_are_counted_by_kind_in_the_round_status(
    loaded: Core, clock: FakeClock
) -> None:
    d = SlackDriver(loaded, FakeSlack(retry_after=0))
    await d.start()
    try:
        emails = await _three_refusals(loaded, d)
        await d.say(CHANGE, f"pulse open {SURVEY}")
        opened = d.seen(CHANGE)[-1]
        assert "is open until" in opened, opened
        await d.say(CHANGE, "pulse")
        status = _status_lines(d)
        assert ("3 could not be invited (1 no account found in chat (not on a connected "
                "platform, or deactivated), 1 the platform refused the message, 1 their "
                "conversation takes no posts (archived or restricted))") in status, status
        for e in emails:
            assert e not in status and d.user(e).id not in status, "numbers, never who"
        await d.say(CHANGE, f"pulse {SURVEY}")
        assert "3 could not be invited" in _status_lines(d)
        async with loaded.db.session() as s:
            rnd = await pulse.open_round_of(s, SURVEY)
            assert rnd is not None
            missing = await invitations.not_invited(s, rnd.id)
            rid = rnd.id
        assert missing.total == 3 and sum(n for _k, n in missing.reasons) == 3
        # The round closes; the reasons go with the rows that named people, the count stays.
        clock.advance(timedelta(days=8))
        async with loaded.db.session() as s:
            got = await s.get(pulse.PulseRound, rid)
            assert got is not None
            await pulse.close_round(s, got, clock.now(), loaded.secret)
            c = await pulse.counts(s, rid)
        await d.say(CHANGE, f"pulse {SURVEY}")
        closed = _status_lines(d)
        assert c.asked - c.invited >= 3  # and any whose working hours never came
        assert f"{c.asked - c.invited} never had the invitation" in closed, closed
    finally:
        await d.close()
