"""Stories: the change team sends an early win to a Slack user group, a Slack channel's members
or a Teams team; each member is DM'd once, linked to their person by verified email.

The member lists come from the fake Slack Web API (channel members cursor-paged, two a page)
and the fake Teams connector (paged members, two a page), through the real adapters' ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from adapters.slack.config import SlackConfig
from adapters.slack.port import Directory, SlackPort, Workspaces
from bot.broadcasts import service
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Broadcast
from bot.clock import FakeClock
from bot.core import Core
from bot.errors import FormInvalid, UserError
from bot.people import service as people
from bot.people.tables import Identity, Person
from tests.conformance.drivers.teams import TEAM_ID, TeamsDriver
from tests.fakes.slack_api import BOT_TOKEN, TEAM, FakeSlack

CHANGE = "changelead@northbridge.example"
TITLE = "Early win: duty rota"
FAST = {p: Limits(workspace_per_s=1000, conversation_per_s=1000, burst=50) for p in ("slack", "teams")}


async def author(core: Core) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()


async def publish(core: Core, audience: str) -> str:
    return await service.publish_to_staff(core, await author(core), title=TITLE,
                                          text="The new duty rota starts next week.",
                                          audience=audience)


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(retry_after=0)
    await fake.start()
    ws = Workspaces(SlackConfig(signing_secret="s", bot_token=BOT_TOKEN, api_url=fake.url))
    await ws.start()
    loaded.add_port(SlackPort(ws, Directory(ws)))
    yield fake
    await ws.close()
    await fake.close()


def dms_with_title(fake: FakeSlack, email: str) -> int:
    u = fake.user_by_email(email)
    assert u is not None
    return sum(TITLE in m.text for m in fake.in_channel(fake.dm_of(u.id)))


async def test_a_slack_user_group_and_a_channel_are_dmd_member_by_member(
    loaded: Core, slack: FakeSlack
) -> None:
    staff = [slack.add_user(f"practitioner{i}@northbridge.example") for i in range(1, 6)]
    newcomer = slack.add_user("agency.worker@northbridge.example")  # not in the programme file
    bot = slack.add_user("rota-bot@northbridge.example")
    bot.is_bot = True
    leaver = slack.add_user("leaver@northbridge.example")
    leaver.deleted = True
    slack.usergroups["S0DUTY"] = [staff[0].id, staff[1].id, staff[2].id, bot.id, leaver.id]
    # Five people, a bot and a leaver: three pages of two.
    slack.channel_members["C0WINS"] = [staff[2].id, staff[3].id, staff[4].id, newcomer.id,
                                       leaver.id, bot.id]

    bid = await publish(loaded, f"members: slack:{TEAM}/usergroup:S0DUTY, slack:{TEAM}/channel:C0WINS")
    await Sender(loaded, limiter=Limiter(FAST)).drain()

    humans = [u.email for u in staff]
    assert {e: dms_with_title(slack, e) for e in humans} == {e: 1 for e in humans}, (
        "each person once, even the one in both the group and the channel")
    # Someone in the channel but not in the programme is never enrolled nor counted (issue 17).
    assert dms_with_title(slack, newcomer.email) == 0
    assert dms_with_title(slack, bot.email) == 0 and dms_with_title(slack, leaver.email) == 0
    cursors = [c.args.get("cursor") for c in slack.called("conversations.members")]
    assert cursors == [None, "offset_2", "offset_4"]
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.total == 5 and st.counts["sent"] == 5

    async with loaded.db.session() as s:
        known = await people.person_by_email(s, "practitioner1@northbridge.example")
        assert known is not None and known.from_programme, "linked to the programme's person"
        ident = await s.get(Identity, ("slack", TEAM, staff[0].id))
        assert ident is not None and ident.person_id == known.id
        assert await s.scalar(select(func.count()).select_from(Person).where(
            Person.email == "practitioner1@northbridge.example")) == 1
        assert await people.person_by_email(s, "agency.worker@northbridge.example") is None
        assert await people.person_by_email(s, "rota-bot@northbridge.example") is None


async def test_an_unknown_or_unreadable_group_is_refused_and_nothing_is_stored(
    loaded: Core, slack: FakeSlack
) -> None:
    with pytest.raises(UserError, match="can't read the members of 'slack:T0FAKE001/usergroup:S0NONE'"
                                        r" \(slack: no_such_subteam\)"):
        await publish(loaded, f"members: slack:{TEAM}/usergroup:S0NONE")
    with pytest.raises(UserError, match="channel_not_found"):
        await publish(loaded, f"members: slack:{TEAM}/channel:C0NONE")

    async def problems(audience: str) -> str:
        values = {"title": TITLE, "text": "x", "audience": audience, "when": "now"}
        with pytest.raises(FormInvalid) as e:
            async with loaded.db.session() as s:
                f = await service.validate(s, values, set(loaded.ports), loaded.clock.now())
            await service.check_groups(loaded, f)
        return e.value.errors["audience"]

    assert "not a group I know how to read" in await problems("members: slack:T1")
    assert "slack has no groups of kind 'team'" in await problems("members: slack:T1/team:X")
    assert "teams is not connected" in await problems("members: teams:tenant/team:19:x@thread")
    assert "can't read the members" in await problems(f"members: slack:{TEAM}/channel:C0NONE")
    assert "not both" in await problems("members: slack:T1/channel:C1; channels: slack:T1/C2")
    async with loaded.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Broadcast)) == 0


@pytest.fixture
async def teams(loaded: Core) -> AsyncIterator[TeamsDriver]:
    d = await TeamsDriver(loaded).start()
    yield d
    await d.close()


async def test_a_teams_team_is_an_audience_read_page_by_page(
    loaded: Core, teams: TeamsDriver, clock: FakeClock
) -> None:
    st = teams.fake.state
    calls_before = sum(p.lower().endswith("/pagedmembers") for _, p in st.calls)
    bid = await publish(loaded, f"members: teams:{st.tenant_id}/team:{TEAM_ID}")
    await Sender(loaded, limiter=Limiter(FAST)).drain()

    paged = sum(p.lower().endswith("/pagedmembers") for _, p in st.calls) - calls_before
    assert paged == (len(st.team_members[TEAM_ID]) + 1) // 2, "every page of two was read"
    everyone = [u.email for u in st.users.values()]
    night = "nightduty@northbridge.example"
    got = {e: sum(TITLE in t for t in teams.seen(e)) for e in everyone}
    assert got == {e: 0 if e == night else 1 for e in everyone}
    status = await service.status(loaded, bid)
    assert status.total == len(everyone) and status.waiting == 1, "the night worker waits for 17:00"


async def test_a_scheduled_broadcast_whose_group_is_gone_is_cancelled_and_the_author_told(
    loaded: Core, slack: FakeSlack, clock: FakeClock
) -> None:
    lead = slack.add_user(CHANGE)
    staff = slack.add_user("practitioner1@northbridge.example")
    slack.usergroups["S0DUTY"] = [staff.id]
    async with loaded.db.session() as s:
        f = await service.validate(s, {"title": TITLE, "text": "Soon.", "when": "2026-11-30 14:00",
                                       "audience": f"members: slack:{TEAM}/usergroup:S0DUTY"},
                                   set(loaded.ports), clock.now())
    b = await service.store(loaded, await author(loaded), f)
    assert (await service.confirm(loaded, b.id, await author(loaded))).state == "scheduled"
    del slack.usergroups["S0DUTY"]  # the group was deleted before the time came
    clock.advance(timedelta(hours=4))
    assert await service.start_due(loaded, clock.now()) == 0
    assert (await service.get(loaded, b.id)).state == "cancelled"  # type: ignore[union-attr]
    told = [m.text for m in slack.in_channel(slack.dm_of(lead.id))]
    assert any(f"'{TITLE}' was not sent" in t and "no_such_subteam" in t for t in told)
    assert dms_with_title(slack, staff.email) == 0
