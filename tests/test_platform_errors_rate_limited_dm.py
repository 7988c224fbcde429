"""Stories: a person on Slack and on Teams, and Slack answers a DM with 429 + Retry-After
(tests/fakes/slack_api.py, the Web API's own answer). A rate limit says nothing about the
person: the DM waits its turn and goes on Slack, once; it is not sent on Teams instead (or
as well, later). Only a refusal of the person (Unreachable) or of the app moves on.

Both platforms are the real fakes (a local Slack Web API, a local Bot Connector), driven
through the adapters' own ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from adapters.slack.port import SlackPort
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackAlert
from bot.model import ConversationRef, UserRef, text_message
from bot.people import service as people
from bot.people.held import flush as flush_held
from bot.people.tables import Identity, Person
from bot.port import RateLimited, TransientError
from tests.conformance.drivers.teams import TeamsDriver
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixture import slack_on

PRACTITIONER = "practitioner1@northbridge.example"
LEADS = ["safeguarding.lead@northbridge.example", "lado@northbridge.example"]
CHANGE = "changelead@northbridge.example"


@pytest.fixture
async def both(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort, TeamsDriver]]:
    async with slack_on(loaded) as (fake, port):
        teams = await TeamsDriver(loaded).start()
        try:
            yield fake, port, teams
        finally:
            await teams.close()


async def _on_both(core: Core, fake: FakeSlack, teams: TeamsDriver, email: str) -> str:
    """`email` talked to the bot on Teams (its DM route stored), and their Slack account is
    known too, tried first (stored since)."""
    await teams.say(email, "hello")
    await flush_held(core)  # the Teams account and its route, as the next tick writes them
    async with core.db.session() as s:
        pid = (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()
        # Undated, the Teams account sorts after any dated one (identities_of: newest first).
        assert all(i.updated_at is None for i in (await s.execute(
            select(Identity).where(Identity.person_id == pid))).scalars())
        u = fake.user_by_email(email)
        assert u is not None
        s.add(Identity(platform="slack", workspace=fake.team, user_id=u.id, person_id=pid,
                       updated_at=core.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)))
    return pid


def _slack_dms(fake: FakeSlack, email: str, text: str) -> int:
    u = fake.user_by_email(email)
    assert u is not None
    return sum(text in p.text for p in fake.messages if p.channel == fake.dm_of(u.id))


def _teams_dms(teams: TeamsDriver, email: str, text: str) -> int:
    return sum(text in s for s in teams.seen(email))


async def test_a_429_on_slack_waits_and_the_dm_goes_once_on_slack_not_on_teams(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """Before: the RateLimited from the Slack send made `Core.dm` try the person's Teams
    account, so the DM went on Teams (and, from a caller that retries, on Slack as well)."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    fake.retry_after = 1
    # More 429s in a row than the adapter waits out inline: Core.dm must wait its turn too.
    fake.throttle["chat.postMessage"] = 4
    ref = await loaded.dm(pid, text_message("Your pulse survey is open"))
    assert ref is not None and ref.conversation.platform == "slack"
    assert _slack_dms(fake, PRACTITIONER, "Your pulse survey is open") == 1
    assert _teams_dms(teams, PRACTITIONER, "Your pulse survey is open") == 0


async def test_one_429_with_retry_after_1_the_dm_goes_once_on_slack(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """The plainest case (a guard: the Slack adapter's own Pacer already waited out a single
    short 429 before `Core.dm` sees it; the tests above go past what it waits)."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    fake.retry_after = 1
    fake.throttle["chat.postMessage"] = 1
    ref = await loaded.dm(pid, text_message("Your pulse survey is open"))
    assert ref is not None and ref.conversation.platform == "slack"
    assert _slack_dms(fake, PRACTITIONER, "Your pulse survey is open") == 1
    assert _teams_dms(teams, PRACTITIONER, "Your pulse survey is open") == 0


async def test_a_429_longer_than_the_bound_is_raised_not_sent_elsewhere(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """A rate limit longer than `Core.dm` waits reaches the caller as RateLimited (it tries
    again later, as alerts and pulse rounds do); the Teams account is not used."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    fake.retry_after = 600
    fake.throttle["chat.postMessage"] = 1
    with pytest.raises(RateLimited):
        await loaded.dm(pid, text_message("Your pulse survey is open"))
    assert _teams_dms(teams, PRACTITIONER, "Your pulse survey is open") == 0
    async with loaded.db.session() as s:  # nobody is held unreachable for it
        assert all(i.reachable for i in (await s.execute(
            select(Identity).where(Identity.person_id == pid))).scalars())


async def test_a_safeguarding_alert_rate_limited_on_slack_reaches_each_lead_once_on_slack(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    fake, _port, teams = both
    for lead in LEADS:
        await _on_both(loaded, fake, teams, lead)
    async with loaded.db.session() as s:
        change = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    fake.retry_after = 1
    fake.throttle["chat.postMessage"] = 4
    await fb.store(loaded, change, text="A boy told me his stepdad hits him.", theme_id=None,
                   replies=False, concerns=["child_risk"])
    await fb.deliver_alerts(loaded)
    assert {lead: (_slack_dms(fake, lead, "URGENT"), _teams_dms(teams, lead, "URGENT"))
            for lead in LEADS} == {lead: (1, 0) for lead in LEADS}
    async with loaded.db.session() as s:
        assert {a.status for a in (await s.execute(select(FeedbackAlert))).scalars()} == {"sent"}


# -- the fast path: an answer to the person's own event, by the DM route it came from ------


def _route(fake: FakeSlack, email: str) -> tuple[UserRef, dict[str, Any]]:
    """The Slack account and DM route an event from `email` carries (Ctx.reply's fast path)."""
    u = fake.user_by_email(email)
    assert u is not None
    conv = ConversationRef("slack", fake.team, fake.dm_of(u.id))
    return UserRef("slack", fake.team, u.id), people.conversation_to_json(conv)


async def test_a_429_on_the_fast_path_is_waited_out_and_the_answer_goes_once(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """Before: the fast path let RateLimited out at once (the person's event failed with
    "Sorry, something went wrong" and its answer was lost), where the slow path handled it."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    user, route = _route(fake, PRACTITIONER)
    fake.retry_after = 1
    fake.throttle["chat.postMessage"] = 4
    ref = await loaded.dm(pid, text_message("Thanks for your feedback"), prefer=user, route=route)
    assert ref is not None and ref.conversation.platform == "slack"
    assert _slack_dms(fake, PRACTITIONER, "Thanks for your feedback") == 1
    assert _teams_dms(teams, PRACTITIONER, "Thanks for your feedback") == 0


async def test_an_outage_on_the_fast_path_goes_to_the_persons_other_account(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """Slack fails the post (`service_unavailable`, as in an outage): the answer goes by the
    person's Teams account, once, as the slow path does (N45); Slack is not asked again.
    Before: the fast path raised TransientError at once."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    user, route = _route(fake, PRACTITIONER)
    fake.failures["chat.postMessage"] = ["service_unavailable"] * 5
    ref = await loaded.dm(pid, text_message("Thanks for your feedback"), prefer=user, route=route)
    assert ref is not None and ref.conversation.platform == "teams"
    assert _teams_dms(teams, PRACTITIONER, "Thanks for your feedback") == 1
    assert len(fake.called("chat.postMessage")) == 1
    assert fake.failures["chat.postMessage"] == ["service_unavailable"] * 4


async def test_an_outage_on_the_fast_path_with_no_other_account_is_raised_as_transient(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """Only on Slack: TransientError reaches the caller (the event is answered "Sorry" and
    may be sent again), nobody is marked unreachable, Slack is asked once."""
    fake, _port, _teams = both
    async with loaded.db.session() as s:
        pid = (await s.execute(select(Person.id).where(Person.email == PRACTITIONER))).scalar_one()
    user, route = _route(fake, PRACTITIONER)
    async with loaded.db.session() as s:
        s.add(Identity(platform="slack", workspace=fake.team, user_id=user.user_id,
                       person_id=pid, dm=route))
    fake.failures["chat.postMessage"] = ["service_unavailable"] * 5
    with pytest.raises(TransientError):
        await loaded.dm(pid, text_message("Thanks for your feedback"), prefer=user, route=route)
    assert len(fake.called("chat.postMessage")) == 1
    async with loaded.db.session() as s:
        assert all(i.reachable for i in (await s.execute(
            select(Identity).where(Identity.person_id == pid))).scalars())


# -- the bound: about DM_RATE_WAIT_S of waiting in all, the adapter's own waits included ----


async def test_a_dm_waits_for_rate_limits_about_the_bound_in_all_not_per_try(
        loaded: Core, both: tuple[FakeSlack, SlackPort, TeamsDriver]) -> None:
    """Slack keeps answering 429 with Retry-After 6 (more than the adapter waits inline, so
    each try comes back at once). `Core.dm` waits one Retry-After, asks once more, and then
    RateLimited reaches its caller: about DM_RATE_WAIT_S (10 s) of waiting in all. Before:
    the bound counted from the first refusal and was checked only at the next one, so a
    third try came after 12 s (three posts, 12 s: a Slack queue slot, a Teams turn, the
    alerts' tick held that long; with the adapter's inline waits, up to three times its
    15 s). The person's Teams account is not used for it (N56)."""
    fake, _port, teams = both
    pid = await _on_both(loaded, fake, teams, PRACTITIONER)
    fake.retry_after = 6
    fake.throttle["chat.postMessage"] = 100
    with pytest.raises(RateLimited):
        await loaded.dm(pid, text_message("Your pulse survey is open"))
    assert len(fake.called("chat.postMessage")) == 2
    assert _teams_dms(teams, PRACTITIONER, "Your pulse survey is open") == 0
