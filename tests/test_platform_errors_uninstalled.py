"""Stories: the Slack app is uninstalled (token_revoked) while the bot tells several people
something, through the Slack adapter's port on the fake Slack (tests/fakes/slack_api.py).
Whatever was told before the refusal is not told again; whoever it did not reach hears it
once after the reinstall; nothing ends in a traceback.

- A stale milestone with no team lead goes to every member of the change team: uninstalled
  after the first notice, each member still has it once after the reinstall.
- An early-win offer waiting for the change team: the same.
- A broadcast scheduled for a Slack user group falls due while uninstalled: the group cannot be
  read, but the group is not the problem; it stays scheduled and goes, once each, on the first
  tick after the reinstall. Still refused past the scheduler's grace, it is cancelled.
- A "you said, we did" whose broadcast could not be made falls back to a DM per member of
  staff: with the app uninstalled it is stored, the publisher is told staff were not reached
  and why, and the notices to authors who allowed replies still start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.slack.port import SlackPort
from bot.broadcasts import service as broadcasts
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.clock import FakeClock
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.milestones import checkins, offers
from bot.milestones.tables import Milestone
from bot.people import service as people
from bot.people.tables import Person
from bot.roles import CHANGE_TEAM
from tests.fakes.slack_api import TEAM, FakeSlack
from tests.slack_fixture import reinstalled, slack_on

FNM = "family-network-meetings"
CHANGE = ["changelead@northbridge.example", "changeofficer@northbridge.example"]


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    async with slack_on(loaded) as pair:
        yield pair


def got(fake: FakeSlack, email: str, what: str) -> int:
    """How many messages carrying `what` Slack took in `email`'s DM."""
    user = fake.user_by_email(email)
    assert user is not None
    if user.id not in fake.dms:
        return 0
    return sum(what in m.text for m in fake.in_channel(fake.dm_of(user.id)))


async def change_team(core: Core) -> list[Person]:
    async with core.db.session() as s:
        return sorted(await people.people_with_role(s, CHANGE_TEAM), key=lambda p: p.email or "")


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


async def test_a_stale_notice_refused_part_way_reaches_each_change_team_member_once(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the notice went to the first member, the refusal came out of the scheduled job
    as a traceback, and after the reinstall the whole notice went again: the first member had
    it twice."""
    fake, _port = slack
    assert [p.email for p in await change_team(loaded)] == CHANGE
    async with loaded.db.session() as s:
        m = await s.get(Milestone, FNM)
        assert m is not None
        m.team_id = None  # no team lead: the change team hears
        m.stale_since = clock.now()  # Monday 10:00, at work
    fake.revoke_after("chat.postMessage", 1)  # uninstalled after the first notice
    with caplog.at_level(logging.WARNING):
        await checkins.tell_leads(loaded, clock.now())
        clock.advance(timedelta(minutes=5))
        await checkins.tell_leads(loaded, clock.now())  # still uninstalled: nothing more
    no_traceback(caplog)
    assert sorted(got(fake, e, "gone stale") for e in CHANGE) == [0, 1]
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=5))
        assert await checkins.tell_leads(loaded, clock.now()) == 1
        clock.advance(timedelta(minutes=5))
        assert await checkins.tell_leads(loaded, clock.now()) == 0
    assert [got(fake, e, "gone stale") for e in CHANGE] == [1, 1], "each once"
    async with loaded.db.session() as s:
        m = await s.get(Milestone, FNM)
        assert m is not None and m.stale_told_at is not None and m.stale_tell is None


async def test_an_early_win_offer_refused_part_way_reaches_each_change_team_member_once(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the refusal came out of the ticker (or out of the owner's update in chat, when
    the offer went at once) as a traceback."""
    fake, _port = slack
    async with loaded.db.session() as s:
        m = await s.get(Milestone, FNM)
        assert m is not None
        m.offer_to = [p.id for p in await change_team(loaded)]  # marked done; waiting for them
    fake.revoke_after("chat.postMessage", 1)
    with caplog.at_level(logging.WARNING):
        assert await offers.send_pending(loaded, clock.now()) == 1
        assert await offers.send_pending(loaded, clock.now()) == 0
    no_traceback(caplog)
    assert sorted(got(fake, e, "early-win announcement") for e in CHANGE) == [0, 1]
    async with reinstalled(loaded, fake):
        assert await offers.send_pending(loaded, clock.now()) == 1
        assert await offers.send_pending(loaded, clock.now()) == 0
    assert [got(fake, e, "early-win announcement") for e in CHANGE] == [1, 1]


async def test_a_you_said_we_did_sent_by_dm_while_uninstalled_is_stored_and_says_so(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Longer than a broadcast may be (3,000 characters), so it falls back to a DM per member
    of staff, as on any failure of the broadcast feature (chat and the dashboard refuse such a
    text first: the length stands in for that failure); the app is uninstalled. Before: the refusal came out of `publish` after the
    response was stored, so the publisher saw an error for what was published, and the
    authors who allowed replies were never told. No ledger keeps these DMs (the broadcast
    would have), so the publisher is told who was not reached, as a count."""
    fake, _port = slack
    async with loaded.db.session() as s:
        author = (await s.execute(select(Person.id).where(
            Person.email == "practitioner1@northbridge.example"))).scalar_one()
        publisher = (await s.execute(select(Person.id).where(Person.email == CHANGE[0]))
                     ).scalar_one()
    async with loaded.db.session() as s:
        theme = (await fb.themes(s))[0].id
    await fb.store(loaded, author, text="The new referral form takes an hour to fill in.",
                   theme_id=theme, replies=True, concerns=[])
    async with loaded.db.session() as s:
        item = (await s.execute(select(FeedbackItem))).scalar_one()
        item.released = True  # the day's release (N22)
    fake.revoke("token_revoked")
    told: list[str] = []  # whose notice was started (it may end at once: the app is refused)
    tell = fb._tell_later
    monkeypatch.setattr(fb, "_tell_later", lambda core, person_id, message: (
        told.append(person_id), tell(core, person_id, message)))
    with caplog.at_level(logging.WARNING):
        done = await fb.publish(loaded, publisher, theme_id=theme, title="Shorter forms",
                                text="We cut the referral form down. " * 100)
    no_traceback(caplog)
    assert done.items == 1 and done.staff.startswith("dm 0 of ")
    assert "refuses staffvoice until it is reinstalled" in done.staff
    async with loaded.db.session() as s:
        assert (await s.get(FeedbackItem, item.id)).response_id == done.response_id  # type: ignore[union-attr]
    # The author who allowed replies is told (tried: the refused app ends the notice at once,
    # so whether it was still running here depended on the database's speed: CI2, PostgreSQL).
    assert told == [author], "the author who allowed replies is not being told"
    for task in list(fb.NOTICES):  # it waits for the platform; not this story's
        task.cancel()
    await fb.settle_notices()


async def _scheduled_for_a_group(core: Core, fake: FakeSlack, clock: FakeClock) -> tuple[str, list[str]]:
    """The change lead schedules an early win for 14:00 to a Slack user group of three."""
    staff = [f"practitioner{i}@northbridge.example" for i in (1, 2, 3)]
    fake.usergroups["S0DUTY"] = [fake.user_by_email(e).id for e in staff]  # type: ignore[union-attr]
    author = [p.id for p in await change_team(core) if p.email == CHANGE[0]][0]
    async with core.db.session() as s:
        f = await broadcasts.validate(s, {"title": "Duty rota", "text": "Starts next week.",
                                          "when": "2026-11-30 14:00",
                                          "audience": f"members: slack:{TEAM}/usergroup:S0DUTY"},
                                      set(core.ports), clock.now())
    b = await broadcasts.store(core, author, f)
    assert (await broadcasts.confirm(core, b.id, author)).state == "scheduled"
    return b.id, staff


async def test_a_broadcast_scheduled_for_a_group_waits_for_the_reinstall_then_goes_once(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the unreadable group cancelled the broadcast as if it were gone, and telling
    its author (on the same Slack) came out of the scheduled job as a traceback; the
    reinstall sent nothing."""
    fake, _port = slack
    bid, staff = await _scheduled_for_a_group(loaded, fake, clock)
    fake.revoke("token_revoked")
    clock.advance(timedelta(hours=4))  # 14:00
    with caplog.at_level(logging.WARNING):
        assert await broadcasts.start_due(loaded, clock.now()) == 0
        clock.advance(timedelta(minutes=10))
        assert await broadcasts.start_due(loaded, clock.now()) == 0
    no_traceback(caplog)
    assert (await broadcasts.get(loaded, bid)).state == "scheduled"  # type: ignore[union-attr]
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=10))
        assert await broadcasts.start_due(loaded, clock.now()) == 1
        fast = {"slack": Limits(workspace_per_s=1000, conversation_per_s=1000, burst=50)}
        await Sender(loaded, limiter=Limiter(fast)).drain()
    assert [got(fake, e, "Duty rota") for e in staff] == [1, 1, 1]


async def test_a_broadcast_still_refused_past_the_grace_is_cancelled_without_a_traceback(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, _port = slack
    bid, staff = await _scheduled_for_a_group(loaded, fake, clock)
    fake.revoke("token_revoked")
    clock.advance(timedelta(hours=4))
    with caplog.at_level(logging.WARNING):
        assert await broadcasts.start_due(loaded, clock.now()) == 0
        clock.advance(timedelta(hours=4, minutes=1))  # the scheduler's grace has passed
        assert await broadcasts.start_due(loaded, clock.now()) == 0
    no_traceback(caplog)
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=10))
        assert await broadcasts.start_due(loaded, clock.now()) == 0
    assert (await broadcasts.get(loaded, bid)).state == "cancelled"  # type: ignore[union-attr]
    assert [got(fake, e, "Duty rota") for e in staff] == [0, 0, 0], "news hours late misleads"


async def test_the_author_of_a_broadcast_cancelled_while_uninstalled_hears_of_it_after_the_reinstall(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
) -> None:
    """The author is on the same Slack that refuses the app. Before: the broadcast was
    cancelled past the grace while the notice to its author was refused too, and nothing
    told them after the reinstall: their news was silently never sent."""
    fake, _port = slack
    bid, staff = await _scheduled_for_a_group(loaded, fake, clock)
    fake.revoke("token_revoked")
    clock.advance(timedelta(hours=4))
    assert await broadcasts.start_due(loaded, clock.now()) == 0
    clock.advance(timedelta(hours=4, minutes=1))  # the scheduler's grace has passed
    assert await broadcasts.start_due(loaded, clock.now()) == 0
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=10))
        assert await broadcasts.start_due(loaded, clock.now()) == 0
        clock.advance(timedelta(minutes=10))
        assert await broadcasts.start_due(loaded, clock.now()) == 0
    assert got(fake, CHANGE[0], "'Duty rota' was not sent") == 1, "told once, after the reinstall"
    assert (await broadcasts.get(loaded, bid)).state == "cancelled"  # type: ignore[union-attr]
    assert [got(fake, e, "Duty rota") for e in staff] == [0, 0, 0], "news hours late misleads"


async def test_an_early_win_offer_sent_from_chat_while_the_ticker_runs_reaches_each_once(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
) -> None:
    """The owner marks the milestone done in chat on one replica (which sends the offers at
    once) while the scheduler's leader runs the offers ticker: both read who is still to be
    offered before either had sent. Before: each change-team member had the offer twice."""
    import asyncio

    fake, _port = slack
    async with loaded.db.session() as s:
        m = await s.get(Milestone, FNM)
        assert m is not None
        m.offer_to = [p.id for p in await change_team(loaded)]
    sent = await asyncio.gather(offers.send_pending(loaded, clock.now()),
                                offers.send_pending(loaded, clock.now()))
    assert sum(sent) == 2
    assert [got(fake, e, "early-win announcement") for e in CHANGE] == [1, 1]


async def test_a_passing_slack_error_reading_the_group_does_not_cancel_a_scheduled_broadcast(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock,
) -> None:
    """Slack answers `internal_error` once (docs.slack.dev: a passing server-side error, try
    again) just as a broadcast for a user group falls due: the group is fine, so it starts on
    the next tick. Before: it was cancelled as unreadable, its author told to check the id."""
    fake, _port = slack
    bid, staff = await _scheduled_for_a_group(loaded, fake, clock)
    fake.failures["usergroups.users.list"] = ["internal_error"]
    clock.advance(timedelta(hours=4))  # 14:00
    assert await broadcasts.start_due(loaded, clock.now()) == 0
    clock.advance(timedelta(minutes=1))
    assert await broadcasts.start_due(loaded, clock.now()) == 1
    assert got(fake, CHANGE[0], "was not sent") == 0
