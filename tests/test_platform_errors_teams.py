"""Stories: the Bot Connector answers with the errors real councils meet (tests/fakes/
teams_connector.py cites each); every recipient is delivered once or failed with a reason the
change team can count, nothing is retried forever, nobody is blamed for the app's own token.

- One person blocked the bot (403 ConversationBlockedByUser), one left the tenant (404 NotFound
  when the chat is created), and the service has a passing 503: the first two are recorded
  with their reasons, the 503 is retried, everyone else gets exactly one copy.
- The Bot Connector stops accepting the bot's token (401, a fresh token too): the rows retry
  with the reason, the connector is not asked again for every row, nobody is marked
  unreachable, and once the registration is fixed the broadcast reaches everyone.
- The tenant's admin disabled the app (403 BotDisabledByAdmin): the same, nobody blamed.
- Safeguarding: a lead who blocked the bot does not stop the other lead's alert; theirs stays
  pending, visible in the urgent queue, and reaches them once they unblock it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.teams.connector import REFUSED_S
from adapters.teams.port import TeamsPort
from bot.broadcasts import service
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.feedback import service as fb
from bot.model import text_message
from bot.people import held
from bot.people.tables import Identity, Person
from tests.conformance.drivers.teams import TeamsDriver
from tests.test_broadcast_engine import office_hours_for_all

CHANGE = "changelead@northbridge.example"
TITLE = "Early win: family network meetings"
LEADS = ["safeguarding.lead@northbridge.example", "lado@northbridge.example"]
CONCERN = "A boy on my caseload told me his stepdad hits him."
FAST = {"teams": Limits(workspace_per_s=1000, conversation_per_s=1000, burst=50)}


@pytest.fixture
async def teams(loaded: Core) -> AsyncIterator[TeamsDriver]:
    d = await TeamsDriver(loaded).start()
    yield d
    await d.close()


async def publish(core: Core) -> tuple[str, list[str]]:
    """An early win to the assessment team (six people); its id and their emails."""
    await office_hours_for_all(core)
    async with core.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    bid = await service.publish_to_staff(core, author, title=TITLE, text="In every team now.",
                                         audience="teams: assessment")
    async with core.db.session() as s:
        emails = sorted(str(e) for e in (await s.execute(select(Person.email).join(
            Delivery, Delivery.person_id == Person.id).where(Delivery.broadcast_id == bid)))
            .scalars())
    return bid, emails


async def states(core: Core, bid: str) -> dict[str, tuple[str, str]]:
    async with core.db.session() as s:
        found = (await s.execute(select(Person.email, Delivery.state, Delivery.error).join(
            Person, Person.id == Delivery.person_id).where(Delivery.broadcast_id == bid))).all()
    return {str(e): (str(st), str(err or "")) for e, st, err in found}


async def unreachable(core: Core) -> list[str]:
    async with core.db.session() as s:
        return sorted(str(e) for e in (await s.execute(select(Person.email).join(
            Identity, Identity.person_id == Person.id).where(
            Identity.reachable.is_(False)))).scalars())


def copies(teams: TeamsDriver, email: str) -> int:
    return sum(TITLE in t for t in teams.seen(email))


async def drain(core: Core, sender: Sender, clock: FakeClock, times: int = 3) -> None:
    for _ in range(times):
        await sender.drain()
        clock.advance(timedelta(minutes=5))


async def test_a_blocked_user_a_leaver_and_a_passing_503_in_one_teams_broadcast(
    loaded: Core, teams: TeamsDriver, clock: FakeClock
) -> None:
    bid, emails = await publish(loaded)
    blocked, leaver = teams.fake.user_by_email(emails[0]), teams.fake.user_by_email(emails[1])
    blocked.blocked = True
    del teams.fake.state.users[leaver.id]  # removed from the tenant since the roster was read
    teams.fake.state.fail_next = [503]
    await drain(loaded, Sender(loaded, limiter=Limiter(FAST)), clock)
    got = await states(loaded, bid)
    assert got[emails[0]][0] == "skipped" and "blocked or uninstalled" in got[emails[0]][1]
    assert got[emails[1]][0] == "skipped" and "gone" in got[emails[1]][1], got[emails[1]]
    assert [got[e][0] for e in emails[2:]] == ["sent"] * 4
    assert [copies(teams, e) for e in emails[2:]] == [1] * 4, "one copy each, none twice"
    assert (503, "ServiceUnavailable") in teams.fake.state.refused
    assert await unreachable(loaded) == sorted(emails[:2])
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["skipped"] == 2 and st.counts["sent"] == 4


async def test_a_rejected_bot_token_retries_blames_nobody_and_delivers_once_fixed(
    loaded: Core, teams: TeamsDriver, clock: FakeClock
) -> None:
    port = loaded.ports["teams"]
    assert isinstance(port, TeamsPort)
    now = [0.0]
    port.pool.monotonic = lambda: now[0]
    bid, emails = await publish(loaded)
    teams.fake.state.reject_tokens = True
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    got = await states(loaded, bid)
    assert {st for st, _ in got.values()} == {"failed"}, got
    assert all("refused staffvoice's token (401)" in why for _, why in got.values())
    asked = len(teams.fake.state.calls)
    clock.advance(timedelta(minutes=11))
    await sender.drain()
    assert len(teams.fake.state.calls) == asked, "answered locally, not asked for every row"
    assert await unreachable(loaded) == [], "the bot's token says nothing about the people"
    # The admin fixes the app registration; a while later the connector is asked again.
    teams.fake.state.reject_tokens = False
    now[0] += REFUSED_S + 1
    clock.advance(timedelta(minutes=11))
    await drain(loaded, sender, clock)
    assert [copies(teams, e) for e in emails] == [1] * 6
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["sent"] == 6


async def test_a_lead_who_blocked_the_bot_does_not_stop_the_other_leads_alert(
    loaded: Core, teams: TeamsDriver
) -> None:
    """Safeguarding: the alert goes to each lead on its own; the one Teams refuses (403) keeps
    a pending alert, shown against their name in the leads' urgent queue, and is tried again."""
    teams.fake.user_by_email(LEADS[0]).blocked = True
    async with loaded.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    await fb.store(loaded, author, text=CONCERN, theme_id=None, replies=False,
                   concerns=["child_risk"])
    await fb.deliver_alerts(loaded)
    assert sum("URGENT" in t for t in teams.seen(LEADS[1])) == 1
    assert not any("URGENT" in t for t in teams.seen(LEADS[0]))
    async with loaded.db.session() as s:
        ids = {str(e): str(p) for p, e in (await s.execute(select(Person.id, Person.email)))}
        [queued] = await fb.urgent_queue(s)
    assert queued.delivery == {ids[LEADS[0]]: "pending", ids[LEADS[1]]: "sent"}
    teams.fake.user_by_email(LEADS[0]).blocked = False  # they unblock; the next tick reaches them
    await teams.say(LEADS[0], "help")  # ...and say something, as Teams needs to learn the chat
    await fb.deliver_alerts(loaded)
    assert sum("URGENT" in t for t in teams.seen(LEADS[0])) == 1
    assert sum("URGENT" in t for t in teams.seen(LEADS[1])) == 1, "nobody gets it twice"


async def test_an_app_the_tenant_admin_disabled_blames_nobody_and_waits_for_the_admin(
    loaded: Core, teams: TeamsDriver, clock: FakeClock
) -> None:
    """403 BotDisabledByAdmin is about the app in the whole tenant: the rows wait with a
    reason the change team can act on, and nobody is marked unreachable (each would otherwise
    need to talk to the bot again before any prompt reached them)."""
    sender = Sender(loaded, limiter=Limiter(FAST))
    _first, emails = await publish(loaded)
    await drain(loaded, sender, clock, times=1)
    assert [copies(teams, e) for e in emails] == [1] * 6  # their chats are known now
    teams.fake.state.disabled_by_admin = True
    bid, _ = await publish(loaded)
    await sender.drain()
    got = await states(loaded, bid)
    assert {st for st, _ in got.values()} == {"failed"}, got
    assert all("admin disabled staffvoice" in why for _, why in got.values())
    assert await unreachable(loaded) == []
    teams.fake.state.disabled_by_admin = False  # the admin allows the app again
    clock.advance(timedelta(minutes=11))
    await drain(loaded, sender, clock, times=1)
    assert [copies(teams, e) for e in emails] == [2] * 6, "the second one, once each"


async def _lead_chat_forgotten(loaded: Core, teams: TeamsDriver, *, stuck: bool) -> str:
    """The lead talked to the bot (their chat is stored); then the service forgets that chat
    (404 ConversationNotFound, tests/fakes/teams_connector.py), and a concern is sent."""
    for lead in LEADS:  # both chats known: only a lost one is created
        await teams.say(lead, "help")
    uid, old = teams.dm_id(LEADS[0])
    teams.fake.forget_conversation(old)
    if stuck:
        teams.fake.state.stuck.add(uid)
    teams.fake.state.calls.clear()
    async with loaded.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    await fb.store(loaded, author, text=CONCERN, theme_id=None, replies=False,
                   concerns=["child_risk"])
    await fb.deliver_alerts(loaded)
    return old


def _creates(teams: TeamsDriver) -> int:
    return sum(c == ("POST", "/v3/conversations") for c in teams.fake.state.calls)


async def test_a_stale_teams_chat_is_created_again_and_the_alert_goes_there(
    loaded: Core, teams: TeamsDriver
) -> None:
    """A stored personal chat Teams no longer knows is not the person's doing (botframework-sdk
    #6628: about 1% of users at a time, none blocked the bot): the chat is created once more
    and the urgent alert arrives in it; nobody is marked unreachable."""
    old = await _lead_chat_forgotten(loaded, teams, stuck=False)
    _uid, new = teams.dm_id(LEADS[0])
    assert new != old
    assert sum("URGENT" in t for t in teams.seen(LEADS[0])) == 1, "in the new chat"
    assert _creates(teams) == 1, "created once"
    await held.flush(loaded)
    assert await unreachable(loaded) == []
    async with loaded.db.session() as s:
        ids = {str(e): str(p) for p, e in (await s.execute(select(Person.id, Person.email)))}
        [queued] = await fb.urgent_queue(s)
    assert queued.delivery[ids[LEADS[0]]] == "sent"
    # The next message goes to the new chat straight away: no second creation, no 404.
    teams.fake.state.calls.clear()
    teams.fake.state.refused.clear()
    assert await loaded.dm(ids[LEADS[0]], text_message("Second")) is not None
    assert _creates(teams) == 0 and teams.fake.state.refused == []
    assert "Second" in teams.seen(LEADS[0])[-1]


async def test_a_chat_that_cannot_be_made_again_marks_the_lead_unreachable_once(
    loaded: Core, teams: TeamsDriver
) -> None:
    await _lead_chat_forgotten(loaded, teams, stuck=True)
    assert _creates(teams) == 1, "tried once, not in a loop"
    await held.flush(loaded)  # the account was linked by this process (bot/people/held.py)
    assert await unreachable(loaded) == [LEADS[0]]
    assert sum("URGENT" in t for t in teams.seen(LEADS[1])) == 1, "the other lead has it"
    async with loaded.db.session() as s:
        why = (await s.execute(select(Identity.unreachable_reason).join(
            Person, Person.id == Identity.person_id).where(Person.email == LEADS[0]))).scalar_one()
    assert why is not None and "ConversationNotFound" in why and "anew" in why, why


async def test_a_chat_created_anew_that_is_gone_too_is_created_once_more(
    loaded: Core, teams: TeamsDriver
) -> None:
    """Found in review: the chat made anew is kept only in memory; when Teams forgot that one
    too, it was looked up in the store (which never had it), and the lead was marked
    unreachable. Now the stored chat, whose person is known, is the one created again."""
    old = await _lead_chat_forgotten(loaded, teams, stuck=False)
    _uid, first = teams.dm_id(LEADS[0])
    assert first != old
    teams.fake.forget_conversation(first)
    async with loaded.db.session() as s:
        lead = (await s.execute(select(Person.id).where(Person.email == LEADS[0]))).scalar_one()
    assert await loaded.dm(lead, text_message("Second")) is not None
    _uid, second = teams.dm_id(LEADS[0])
    assert second not in (old, first)
    assert "Second" in teams.seen(LEADS[0])[-1]
    await held.flush(loaded)
    assert await unreachable(loaded) == []
