"""Teams conversations end to end: real-format activities to /api/messages, replies read from
the fake Bot Connector."""

from __future__ import annotations

from sqlalchemy import select

from adapters.teams.tables import TeamsConversation, TeamsMember
from bot.model import text_message
from bot.people import held
from bot.people import service as people
from bot.people.tables import Identity
from tests.conformance.drivers.teams import CHANNEL_ID, TEAM_ID, TeamsDriver, plain_of

PRACTITIONER = "practitioner1@northbridge.example"
LEAD = "changelead@northbridge.example"


async def test_install_in_a_team_learns_the_whole_roster_page_by_page(teams: TeamsDriver) -> None:
    async with teams.core.db.session() as s:
        members = (await s.execute(select(TeamsMember))).scalars().all()
        team = await s.get(TeamsConversation, CHANNEL_ID)
    assert len(members) == len(teams.fake.state.users) > 2  # more than one page (page size 2)
    assert all(m.email and m.email.endswith("@northbridge.example") for m in members)
    assert team is not None and team.kind == "channel" and team.team_id == TEAM_ID
    paged = [c for c in teams.fake.state.calls if c[1].lower().endswith("/pagedmembers")]
    assert len(paged) >= len(members) // 2
    # One welcome for the two install activities (installationUpdate + conversationUpdate).
    assert sum("Hello! I'm staffvoice" in t for t in teams.channel(f"teams:x/{CHANNEL_ID}")) == 1


async def test_team_members_are_an_audience(teams: TeamsDriver) -> None:
    port = teams.core.ports["teams"]
    from adapters.teams.port import conversation_ref

    team = conversation_ref(teams.fake.state.tenant_id, CHANNEL_ID, "channel",
                            teams.fake.service_url)
    members = await port.members(team)  # type: ignore[attr-defined]
    assert sorted(m.email for m in members) == sorted(u.email for u in teams.fake.state.users.values())


async def test_a_personal_message_links_the_person_and_their_time_zone(teams: TeamsDriver) -> None:
    await teams.say(PRACTITIONER, "whoami")
    assert "Assessment" in teams.seen(PRACTITIONER)[-1] or teams.seen(PRACTITIONER)[-1]
    await held.flush(teams.core)  # held apart from the message (docs/invariants.md, N21)
    async with teams.core.db.session() as s:
        person = await people.person_by_email(s, PRACTITIONER)
        assert person is not None
        idents = await people.identities_of(s, person.id)
    teams_ident = [i for i in idents if i.platform == "teams"]
    assert teams_ident and teams_ident[0].dm is not None  # reference stored for proactive DMs
    assert teams_ident[0].dm["data"][0] == ["serviceUrl", teams.fake.service_url]


async def test_the_time_zone_comes_from_the_activity(teams: TeamsDriver) -> None:
    from bot.people.service import ENROLMENT
    from bot.programme.core_sections import set_setting

    async with teams.core.db.session() as s:  # someone not in the programme file may join
        await set_setting(s, ENROLMENT, {"self_enrol": True, "contact": ""})
    newcomer = teams.fake.add_user("newstarter@northbridge.example", "New starter")
    cid = teams.fake.personal_id(newcomer.id)
    a = teams.activity(newcomer.id, cid, "personal", text="help")
    a["entities"] = [{"type": "clientInfo", "timezone": "America/New_York", "locale": "en-US"}]
    await teams.post(a)
    async with teams.core.db.session() as s:
        person = await people.person_by_email(s, "newstarter@northbridge.example")
    assert person is not None and person.tz == "America/New_York"


async def test_a_channel_mention_is_answered_in_its_thread(teams: TeamsDriver) -> None:
    await teams.mention(PRACTITIONER, "help")
    replies = [p for p in teams.fake.in_conversation(CHANNEL_ID)
               if ";messageid=" in p.conversation_id]
    assert replies, "no reply in the thread"
    assert "whoami" in plain_of(replies[-1].current)
    root = replies[-1].conversation_id.split(";messageid=")[1]
    assert root.startswith("17")  # the id of the user's post: the thread it started


async def test_a_group_chat_message_is_answered_in_the_chat(teams: TeamsDriver) -> None:
    u = teams.fake.user_by_email(PRACTITIONER)
    chat = "19:groupchat-1@thread.v2"
    a = teams.activity(u.id, chat, "groupChat", text="<at>staffvoice</at> help")
    a["entities"].append({"type": "mention", "text": "<at>staffvoice</at>",
                          "mentioned": {"id": teams.fake.state.bot_id, "name": "staffvoice"}})
    await teams.post(a)
    posted = teams.fake.in_conversation(chat)
    assert posted and "whoami" in plain_of(posted[-1].current)
    assert posted[-1].conversation_id == chat


async def test_proactive_dm_to_a_team_member_creates_the_chat(teams: TeamsDriver) -> None:
    other = "practitioner4@northbridge.example"
    async with teams.core.db.session() as s:
        person = await people.person_by_email(s, other)
    assert person is not None
    ref = await teams.core.dm(person.id, text_message("A new pulse survey is open."))
    assert ref is not None
    assert teams.seen(other) == ["A new pulse survey is open."]
    assert ("POST", "/v3/conversations") in teams.fake.state.calls


async def test_someone_who_has_not_installed_the_app_is_reported_unreachable(
    teams: TeamsDriver
) -> None:
    outsider = teams.fake.add_user("visitor@northbridge.example", "Visiting worker")
    from adapters.teams import references as refs

    await refs.remember_member(teams.core.db, teams.fake.state.tenant_id,
                               {"id": outsider.id, "email": outsider.email},
                               teams.core.clock.now())
    async with teams.core.db.session() as s:
        from bot.people.tables import Person

        p = Person(email=outsider.email, display_name="Visiting worker")
        s.add(p)
        await s.flush()
        pid = p.id
    assert await teams.core.dm(pid, text_message("hello")) is None
    async with teams.core.db.session() as s:
        ident = (await s.execute(select(Identity).where(Identity.person_id == pid))).scalar_one()
    assert ident.reachable is False
    assert "forbidden" in (ident.unreachable_reason or "")


async def test_a_user_who_blocked_the_bot_is_recorded_unreachable_not_retried(
    teams: TeamsDriver
) -> None:
    await teams.say(PRACTITIONER, "help")
    teams.fake.user_by_email(PRACTITIONER).blocked = True
    calls = len(teams.fake.state.calls)
    async with teams.core.db.session() as s:
        person = await people.person_by_email(s, PRACTITIONER)
    assert person is not None
    assert await teams.core.dm(person.id, text_message("reminder")) is None
    assert len(teams.fake.state.calls) == calls + 1  # one try, no retries on 403
    await held.flush(teams.core)  # the account linked by "help" is written by the flusher
    async with teams.core.db.session() as s:
        idents = await people.identities_of(s, person.id)
    assert [i.reachable for i in idents if i.platform == "teams"] == [False]
    assert "ConversationBlockedByUser" in (idents[0].unreachable_reason or "")


async def test_throttling_is_retried_with_backoff_honouring_retry_after(teams: TeamsDriver) -> None:
    waits: list[float] = []

    async def record(s: float) -> None:
        waits.append(s)

    pool = teams.core.ports["teams"].pool  # type: ignore[attr-defined]
    pool.sleep = record
    teams.fake.state.throttle = ["3", "1"]
    teams.fake.state.fail_next = [502, 504, 412]
    await teams.say(PRACTITIONER, "help")
    assert "whoami" in teams.seen(PRACTITIONER)[-1]
    # 429 twice (Retry-After honoured), then 502, 504, 412: five waits, growing, jittered.
    assert len(waits) == 5 and waits[0] >= 3 and waits[1] >= 1


async def test_a_card_tap_edits_the_card_in_place(teams: TeamsDriver) -> None:
    from adapters.teams.port import conversation_ref
    from bot.model import Choice, Choices, Message, Text

    port = teams.core.ports["teams"]
    uid, cid = teams.dm_id(PRACTITIONER)
    await teams.say(PRACTITIONER, "help")
    conv = conversation_ref(teams.fake.state.tenant_id, cid, "personal", teams.fake.service_url)
    ref = await port.send(conv, Message((Text("Pick"), Choices("x", (Choice("A", "a"),)))))
    await port.update(ref, Message((Text("Thanks, noted."),)))
    posted = teams.fake.state.posted[ref.message_id]
    assert len(posted.versions) == 2 and plain_of(posted.current) == "Thanks, noted."
    await port.delete(ref)
    assert posted.deleted and "Thanks, noted." not in teams.seen(PRACTITIONER)


async def test_the_read_before_a_turn_tells_what_is_stored(teams: TeamsDriver) -> None:
    """`refs.seen` stands in for two lookups on every activity: it must agree with the store."""
    from adapters.teams import references as refs

    await teams.say(PRACTITIONER, "help")
    uid, cid = teams.dm_id(PRACTITIONER)
    a = teams.activity(uid, cid, "personal", text="help")
    known = await refs.seen(teams.core.db, a)
    assert known.reference_current
    assert known.member is not None and known.member[0] == PRACTITIONER
    moved = await refs.seen(teams.core.db, {**a, "serviceUrl": "https://smba.trafficmanager.net/uk/"})
    assert not moved.reference_current and moved.member == known.member
    stranger = teams.fake.add_user("visitor@northbridge.example", "Visitor")
    unknown = await refs.seen(teams.core.db, teams.activity(stranger.id, teams.fake.personal_id(stranger.id),
                                                            "personal", text="help"))
    assert not unknown.reference_current and unknown.member is None
    await refs.forget(teams.core.db, cid)
    assert not (await refs.seen(teams.core.db, a)).reference_current


async def test_a_new_service_url_is_stored_when_a_known_chat_moves(teams: TeamsDriver) -> None:
    await teams.say(PRACTITIONER, "help")
    uid, cid = teams.dm_id(PRACTITIONER)
    moved = teams.fake.service_url.rstrip("/") + "/moved/"
    assert teams.http is not None
    async with teams.http.post(teams.url, json=teams.activity(uid, cid, "personal", text="help",
                                                              serviceUrl=moved),
                               headers={"Authorization": f"Bearer {teams.fake.sign({'serviceurl': moved})}"}) as r:
        assert r.status in (200, 201, 202)
    from adapters.teams import references as refs
    from bot.people import held

    used = await refs.conversation(teams.core.db, cid)  # used at once, written by the flusher
    assert used is not None and used.service_url == moved and used.installed
    await held.flush(teams.core)
    async with teams.core.db.session() as s:
        row = await s.get(TeamsConversation, cid)
    assert row is not None and row.service_url == moved and row.installed


async def test_a_sender_row_too_long_to_store_is_not_held_and_the_rest_is_written(
        teams: TeamsDriver) -> None:
    """A held row that could never be stored would fail every flush, and everything held
    beside it with it: it is not held. (Microsoft signs the activities; this is a guard.)"""
    from adapters.teams import references as refs
    from adapters.teams.tables import TeamsMember
    from bot.people import held

    await teams.say(PRACTITIONER, "help")  # their link and chat are held
    uid, cid = teams.dm_id(PRACTITIONER)
    tenant = teams.fake.state.tenant_id
    refs.hold_member(teams.core.db, tenant, {"id": "29:" + "x" * 200, "name": "Too long"})
    assert (tenant, "29:" + "x" * 200) not in refs.held(teams.core.db).members
    await held.flush(teams.core)
    async with teams.core.db.session() as s:
        chat = await s.get(TeamsConversation, cid)
        assert await s.get(TeamsMember, (tenant, "29:" + "x" * 200)) is None
    assert chat is not None and chat.user_id == uid and chat.updated_at is None
