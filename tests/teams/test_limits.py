"""The Bot Connector's limits, as the strict fake enforces them: message size in bytes of the
activity as sent (issue 17 item 11), 7 sends a second per conversation, and 50 calls a second
per app per tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from adapters.teams.port import MAX_ACTIVITY_BYTES, conversation_ref, wire_bytes
from adapters.teams.render import activity_json as render_activity
from bot.broadcasts import service
from bot.broadcasts.feature import settle
from bot.broadcasts.tables import Broadcast
from bot.core import Core
from bot.model import Message, Text, text_message
from bot.people import service as people
from bot.people.tables import Person
from tests.conformance.drivers.teams import TEAM_ID, TeamsDriver, plain_of
from tests.conformance.test_broadcasts import GOOD
from tests.fakes.teams_connector import TENANT_RPS, utf16_bytes

CHANGE = "changelead@northbridge.example"
STAFF = "practitioner1@northbridge.example"
# Under the 20,000-character limit, but each typographic quote and dash is sent as a six-byte
# escape: the card is well over Teams' size limit.
QUOTED = ("“Family network meetings” — the roadmap’s first win. " * 400)[:19_990]


async def test_a_broadcast_too_big_for_teams_in_bytes_is_refused_in_the_form(
    teams: TeamsDriver,
) -> None:
    assert len(QUOTED) < 20_000
    await teams.say(CHANGE, "broadcast")
    errors = await teams.submit(CHANGE, {**GOOD, "text": QUOTED})
    assert errors is not None and "bytes" in errors.get("text", ""), errors
    assert "Teams refuses messages over about 28,000 bytes" in errors["text"]
    assert teams.form(CHANGE) is not None  # still in the dialog, text kept to shorten
    async with teams.core.db.session() as s:
        assert (await s.execute(select(Broadcast))).first() is None
    assert not [r for r in teams.fake.state.refused if r[0] == 413]
    # Shortened to fit: accepted.
    assert await teams.submit(CHANGE, {**GOOD, "text": QUOTED[:3000]}) is None
    assert "Preview: only you can see this" in teams.seen(CHANGE)[-1]


async def _arrives_whole_in_parts(teams: TeamsDriver, paragraphs: list[str]) -> None:
    """DM the paragraphs to a practitioner who has talked to the bot on Teams: Teams refuses
    no part (413), there is more than one, and together they are every line, in order."""
    await teams.say(STAFF, "help")
    async with teams.core.db.session() as s:
        person = await people.person_by_email(s, STAFF)
    assert person is not None
    before = len(teams.seen(STAFF))
    assert await teams.core.dm(person.id, Message((Text("\n".join(paragraphs)),), "notes")) is not None
    parts = teams._dm_posts(STAFF)[before:]
    assert len(parts) > 1
    assert not [r for r in teams.fake.state.refused if r[0] == 413]
    got = "\n".join(plain_of(p.current) for p in parts).split("\n")
    assert [line.strip() for line in got] == paragraphs  # all of it, in order


async def test_a_message_too_big_for_one_activity_is_sent_in_parts_in_order(
    teams: TeamsDriver,
) -> None:
    await _arrives_whole_in_parts(
        teams, [f"{i:04d} “Practice notes” — week {i}." for i in range(1600)])


async def test_the_same_message_sent_to_many_is_measured_once(
        teams: TeamsDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.teams import port as teams_port

    measured: list[int] = []
    real = teams_port.wire_bytes
    monkeypatch.setattr(teams_port, "wire_bytes", lambda p: measured.append(1) or real(p))
    card = Message((Text("The weekly pulse is open."), Text("Five questions, two minutes.")),
                   "pulse open")
    for who in (STAFF, "practitioner2@northbridge.example", "practitioner3@northbridge.example"):
        await teams.say(who, "help")
        async with teams.core.db.session() as s:
            person = await people.person_by_email(s, who)
        assert person is not None
        assert await teams.core.dm(person.id, card) is not None
        assert "The weekly pulse is open." in plain_of(teams._dm_posts(who)[-1].current)
    assert len(measured) <= 1  # before: once a send


async def test_an_edit_too_big_is_refused_before_teams_sees_it(teams: TeamsDriver) -> None:
    import pytest

    from bot.port import PlatformError

    await teams.say(STAFF, "help")
    port = teams.core.ports["teams"]
    _uid, cid = teams.dm_id(STAFF)
    conv = conversation_ref(teams.fake.state.tenant_id, cid, "personal", teams.fake.service_url)
    ref = await port.send(conv, text_message("short"))
    with pytest.raises(PlatformError, match="too large"):
        await port.update(ref, text_message(QUOTED + QUOTED))
    assert plain_of(teams.fake.state.posted[ref.message_id].current) == "short"


def _recording_waits(teams: TeamsDriver) -> list[float]:
    """The waits the connector pool is asked for, each moving the fake's clock instead."""
    waits: list[float] = []
    pool = teams.core.ports["teams"].pool  # type: ignore[attr-defined]

    async def record(seconds: float) -> None:
        waits.append(seconds)
        teams.fake.advance(seconds)

    pool.sleep = record
    return waits


async def test_more_than_seven_sends_a_second_to_one_chat_wait_as_teams_asks(
    teams: TeamsDriver,
) -> None:
    waits = _recording_waits(teams)
    await teams.say(STAFF, "help")
    port = teams.core.ports["teams"]
    _uid, cid = teams.dm_id(STAFF)
    conv = conversation_ref(teams.fake.state.tenant_id, cid, "personal", teams.fake.service_url)
    for i in range(12):
        await port.send(conv, text_message(f"update {i}"))
    assert teams.seen(STAFF)[-12:] == [f"update {i}" for i in range(12)]
    throttled = [r for r in teams.fake.state.refused if r[0] == 429]
    assert throttled and len(waits) == len(throttled)
    assert all(w >= 1 for w in waits)  # Retry-After honoured
    assert MAX_ACTIVITY_BYTES == 28_000


async def test_a_practitioner_tapping_through_the_pulse_faster_than_teams_allows_edits(
    teams: TeamsDriver,
) -> None:
    """Each tap edits the invitation card in place; Teams counts edits against the chat's
    7 operations a second like posts. The throttled edits wait as Teams asks, and the card
    ends where the taps left it."""
    waits = _recording_waits(teams)
    await teams.core.tick()  # the round opens: question 1 in each person's chat
    assert "question 1 of 7" in teams.seen(STAFF)[-1]
    for label in ("4", "Previous", "4", "5", "Skip", "3", "4", "9", "Skip"):
        await teams.tap(STAFF, label)
    _uid, cid = teams.dm_id(STAFF)
    [card] = [p for p in teams._dm_posts(STAFF) if "question 1 of 7" in plain_of(p.versions[0])]
    assert len(card.versions) == 10  # the invitation and one edit per tap, none lost
    assert "Thank you!" in plain_of(card.current)
    assert "You skipped 1 question" in plain_of(card.current)
    throttled = teams.fake.state.throttled_calls
    assert throttled and {m for m, _c in throttled} == {"PUT"}
    assert {c for _m, c in throttled} == {cid}
    # Retry-After honoured, for these and for any call over the tenant's 50 a second (the
    # round's opening sends to everyone may meet it, depending on the machine's speed).
    assert len(waits) == len(throttled) + len(teams.fake.state.tenant_throttled)
    assert all(w >= 1 for w in waits)
    async with teams.core.db.session() as s:
        from sqlalchemy import func

        from bot.pulse.tables import PulsePending

        assert (await s.execute(select(func.count()).select_from(PulsePending))).scalar_one() == 5


async def test_edits_and_deletes_count_with_posts_against_one_chat(teams: TeamsDriver) -> None:
    """The fake as the rate-limit page says: 7 operations of any kind in a second, then 429."""
    await teams.say(STAFF, "help")
    port = teams.core.ports["teams"]
    _uid, cid = teams.dm_id(STAFF)
    conv = conversation_ref(teams.fake.state.tenant_id, cid, "personal", teams.fake.service_url)
    teams.fake.advance(3600)  # a quiet hour since the help answer
    ref = await port.send(conv, text_message("Broadcast: 0 of 40 delivered"))
    for i in range(1, 6):
        await port.update(ref, text_message(f"Broadcast: {i * 8} of 40 delivered"))
    await port.delete(ref)  # seven operations in this second: all accepted
    assert not teams.fake.state.throttled_calls
    await port.send(conv, text_message("One more"))  # the eighth waits (the fake's clock)
    assert teams.fake.state.throttled_calls == [("POST", cid)]
    assert teams.seen(STAFF)[-1] == "One more"


@pytest.fixture
async def crowded(loaded: Core) -> AsyncIterator[TeamsDriver]:
    """90 more staff in the council's tenant, and the fake's clock moving only when the bot
    waits: everything the bot sends without waiting falls in the same second."""
    async with loaded.db.session() as s:
        for i in range(90):
            s.add(Person(email=f"staff{i:02d}@northbridge.example", display_name=f"Staff {i:02d}"))
    d = TeamsDriver(loaded)
    d.fake.state.manual_clock = True
    await d.start()
    yield d
    await d.close()


async def test_a_broadcast_to_a_whole_tenant_waits_out_teams_50_a_second_and_reaches_each_once(
    crowded: TeamsDriver,
) -> None:
    """Teams allows an app 50 calls a second per tenant, every kind of call counted (the
    rate-limit page). A broadcast to ~100 people opens a chat with each and posts in it, so
    it meets that limit: the refused calls wait as Teams asks, and each person gets the early
    win exactly once."""
    teams = crowded
    waits = _recording_waits(teams)
    await teams.say(CHANGE, "broadcast")
    assert await teams.submit(CHANGE, {**GOOD, "audience": "everyone"}) is None
    await teams.tap(CHANGE, "Send")
    await settle()
    async with teams.core.db.session() as s:
        emails = list((await s.execute(select(Person.email).where(Person.email.is_not(None))))
                      .scalars())
    assert len(emails) > TENANT_RPS
    copies = {e: len([t for t in teams.seen(str(e)) if GOOD["title"] in t and "Celebrate" in t])
              for e in emails}
    assert set(copies.values()) <= {0, 1}, "someone got the early win twice"
    async with teams.core.db.session() as s:
        [bid] = (await s.execute(select(Broadcast.id))).scalars().all()
    status = await service.status(teams.core, bid)
    delivered = status.counts["sent"]
    assert delivered == sum(copies.values()) and delivered >= len(emails) - 1  # a night worker later
    assert status.counts.get("failed", 0) == 0
    throttled = teams.fake.state.tenant_throttled
    assert throttled, "the broadcast never met the tenant's limit"
    # Even the roster at installation (a page of 2 people a call here) met it, and was whole.
    assert ("GET", f"/v3/conversations/{TEAM_ID}/pagedmembers") in throttled
    assert any(m == "POST" for m, _p in throttled)  # and the sends
    assert waits and all(w >= 1 for w in waits)  # Retry-After honoured


async def test_a_long_plain_message_over_40_kb_in_utf16_is_sent_in_parts(teams: TeamsDriver) -> None:
    """Teams counts a message in UTF-16 ("40 KB ... encoded as UTF-16"): 24,000 plain letters
    are under 28,000 bytes as sent but 48 KB to Teams. The person still gets all of it."""
    paragraphs = [f"{i:04d} Practice notes for the locality, week {i}." for i in range(520)]
    payload = render_activity(Message((Text("\n".join(paragraphs)),), "notes"))
    assert wire_bytes(payload) < MAX_ACTIVITY_BYTES < utf16_bytes(payload)
    await _arrives_whole_in_parts(teams, paragraphs)


async def test_a_plain_broadcast_under_28000_bytes_but_over_40_kb_in_utf16_is_refused_in_the_form(
    teams: TeamsDriver,
) -> None:
    """12,000 plain letters: within the broadcast's 20,000 characters, and the card (which
    carries the text twice: body and fallback) under 28,000 bytes as sent, but about 50 KB in
    UTF-16, over Teams' 40 KB. Said in the form, with how much to cut, rather than refused by
    Teams once the preview or the broadcast goes out."""
    text = ("Family network meetings now run in every locality hub. " * 400)[:12_000]
    await teams.say(CHANGE, "broadcast")
    errors = await teams.submit(CHANGE, {**GOOD, "text": text})
    assert errors is not None and "two for each character" in errors.get("text", ""), errors
    assert "characters or link to the full story" in errors["text"]
    async with teams.core.db.session() as s:
        assert (await s.execute(select(Broadcast))).first() is None
    assert not [r for r in teams.fake.state.refused if r[0] == 413]
    # Shortened to fit: accepted, and the preview reaches the change lead.
    assert await teams.submit(CHANGE, {**GOOD, "text": text[:8000]}) is None
    assert "Preview: only you can see this" in teams.seen(CHANGE)[-1]
