"""A motivated intruder with the database, against the privacy notice on first contact.

Everyone is shown the privacy notice before the first answer they get from the bot, and the
bot remembers whom it told (`privacy_notices_shown`, by platform account). Many people's first
typed words to the bot are "feedback". In a quiet organisation, the moment a person was first
told is then the moment just before an item arrived: before the fix the row carried that day,
and on PostgreSQL its `xmin` was three transactions before the item's. The intruder reads the
new account's row and the next item, and has its author. CI runs this folder on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from bot.core import Core, HandleResult, Next
from bot.feedback.tables import FeedbackItem
from bot.model import ActionEvent, Event, MessageEvent, RatingScale, text_message
from bot.people import held
from bot.people.tables import Identity, Person
from bot.port import Port
from bot.privacy import notice
from bot.privacy.tables import NoticeShown
from tests.conformance.drivers.fake import FakeDriver
from tests.conformance.drivers.slack import SlackDriver
from tests.slack.conftest import slack  # noqa: F401  (the Slack adapter on a real server)
from tests.test_design_invariants import rows_naming
from tests.test_feedback_helpers import dump, give, identity_strings

TOLD_EARLIER = [f"practitioner{i}@northbridge.example" for i in range(1, 5)]
NEWCOMER = "practitioner7@northbridge.example"  # types to the bot for the first time: "feedback"
TEXT = "Nobody reads the new case notes template before supervision."
FIRST = "Before we start: how staffvoice uses your information"


async def _xmin_of_rows_naming(core: Core, who: set[str]) -> dict[str, set[int]]:
    """PostgreSQL: per table, the transaction ids of the live rows that name the person."""
    out: dict[str, set[int]] = {}
    async with core.db.engine.connect() as conn:
        for name in (await dump(core.db)):
            rows = (await conn.exec_driver_sql(f'SELECT xmin::text, t::text FROM "{name}" t')).all()
            hits = {int(x) for x, row in rows if any(w in row for w in who)}
            if hits:
                out[name] = hits
    return out


async def test_a_first_message_that_is_feedback_dates_no_row_of_its_sender(loaded: Core) -> None:
    """Attack: on Monday the launch message reaches everyone by DM (so every account and DM
    route is stored then) and four people try the bot; on a quiet Tuesday one newcomer's first
    words are "feedback", and theirs is the day's only item. The intruder looks, among the rows
    naming the newcomer, for one dated Tuesday or written (PostgreSQL `xmin`) between the
    day's start and the item's commit.

    Before: `privacy_notices_shown` held (newcomer, Tuesday), written three transactions
    before the item."""
    d = FakeDriver(loaded)
    async with loaded.db.session() as s:
        staff = list((await s.execute(select(Person.id).where(
            Person.email.in_([*TOLD_EARLIER, NEWCOMER])))).scalars())
    for pid in staff:
        assert await loaded.dm(pid, text_message("staffvoice is here: type help.")) is not None
    for email in TOLD_EARLIER:
        await d.say(email, "help")
        assert d.seen(email)[1].startswith(FIRST)
    assert await notice.flush(loaded) == len(TOLD_EARLIER)

    loaded.clock.advance(timedelta(days=1))  # Tuesday, and nobody else says anything
    tuesday = loaded.clock.now().date()
    who = await identity_strings(loaded.db, NEWCOMER)
    before = await rows_naming(loaded, who, skip=("processed_events",))
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            start = int((await conn.execute(text("SELECT txid_current()"))).scalar_one())
    assert await give(d, NEWCOMER, TEXT) is None
    seen = d.seen(NEWCOMER)
    assert seen[1].startswith(FIRST) and sum(m.startswith(FIRST) for m in seen) == 1
    await d.say(NEWCOMER, "help")  # told once, though no row is written yet
    assert not any(m.startswith(FIRST) for m in d.seen(NEWCOMER)[len(seen):])
    await notice.flush(loaded)

    async with loaded.db.session() as s:
        [item] = (await s.execute(select(FeedbackItem))).scalars().all()
        told = {(r.platform, r.user_id) for r in (await s.execute(select(NoticeShown))).scalars()}
    assert item.text == TEXT and item.day == tuesday  # the item the intruder wants to attribute
    assert ("fake", f"U-{NEWCOMER}") in told and len(told) == len(TOLD_EARLIER) + 1

    # Dates: no row naming the newcomer carries Tuesday (their account and route are Monday's).
    after = await rows_naming(loaded, who, skip=("processed_events",))
    dated = [row for rows in after.values() for row in rows if str(tuesday) in row]
    assert dated == []
    assert {k: v for k, v in after.items() if k != "privacy_notices_shown"} == before

    # PostgreSQL: no live row naming them was written between the day's start and the item,
    # and their notice row carries the same xmin as everyone told on Monday.
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            [item_xmin] = (await conn.execute(text(
                "SELECT xmin::text FROM feedback_items"))).scalars().all()
            notice_xmins = set((await conn.execute(text(
                "SELECT xmin::text FROM privacy_notices_shown"))).scalars().all())
        xmins = await _xmin_of_rows_naming(loaded, who)
        near = {t: {x for x in xs if start < x <= int(item_xmin)} for t, xs in xmins.items()
                if t != "processed_events"}
        assert {t: xs for t, xs in near.items() if xs} == {}
        assert len(notice_xmins) == 1  # the Monday four's rows and the newcomer's: one flush


async def test_a_process_that_told_someone_writes_their_row_at_its_next_flush(
        loaded: Core) -> None:
    """The row waits in memory: it is not there after the first message, it is after the
    flush, and a second process (a replica, a restart) does not tell them again after it."""
    d = FakeDriver(loaded)
    await d.say(NEWCOMER, "whoami")
    async with loaded.db.session() as s:
        assert (await s.execute(select(NoticeShown))).first() is None
    assert notice.unwritten(loaded) == {("fake", d.port.workspace, f"U-{NEWCOMER}")}
    assert await notice.flush(loaded) == 1 and notice.unwritten(loaded) == set()
    assert await notice.flush(loaded) == 0
    other = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    await other.start()
    d2 = FakeDriver(other)
    await d2.say(NEWCOMER, "whoami")
    assert not any(m.startswith(FIRST) for m in d2.seen(NEWCOMER))
    async with loaded.db.session() as s:
        assert [r.user_id for r in (await s.execute(select(NoticeShown))).scalars()] == [
            f"U-{NEWCOMER}"]


async def test_the_stored_order_of_notice_rows_is_not_the_order_people_were_told(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: four people are told, then, in a later flush, a newcomer. A dump lists a
    table's rows as they are stored: SQLite by rowid, PostgreSQL by `ctid`. Before the fix the
    newcomer's row sat after the four's (rowid 5; on PostgreSQL the update in place kept the
    four's places and the new row went after them), so the last row of a dump was the last
    person told, and the flush after a first "feedback" named its sender. Now SQLite stores
    them in key order (no rowid) and PostgreSQL lays every row down again in one shuffled
    order at each flush: here the shuffle is made a known order (by user id, descending) to
    see that it is every row, not only the new one, that it places."""
    monkeypatch.setattr(notice, "_shuffle", lambda rows: rows.sort(
        key=lambda r: r["user_id"] if isinstance(r, dict) else r[2], reverse=True))
    d = FakeDriver(loaded)
    for who in TOLD_EARLIER:
        await d.say(who, "whoami")
    await notice.flush(loaded)
    await d.say(NEWCOMER, "whoami")
    assert await notice.flush(loaded) == 1
    ids = sorted(f"U-{w}" for w in [*TOLD_EARLIER, NEWCOMER])
    async with loaded.db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            stored = list((await conn.execute(text(
                "SELECT user_id FROM privacy_notices_shown ORDER BY ctid"))).scalars())
            assert stored == ids[::-1]  # every row where the last flush put it
        else:
            sql = (await conn.execute(text("SELECT sql FROM sqlite_master WHERE name = "
                                           "'privacy_notices_shown'"))).scalar_one()
            assert "WITHOUT ROWID" in sql.upper()
            stored = list((await conn.execute(text(
                "SELECT user_id FROM privacy_notices_shown"))).scalars())
            assert stored == ids  # a plain scan walks the key, never the order told


async def test_a_first_message_from_an_account_never_reached_dates_no_row_of_its_sender(
        loaded: Core) -> None:
    """Attack: as above, but nobody DMed the newcomer before (no launch message): their first
    words, "feedback", are the bot's first sight of their account. The intruder looks for a row
    naming them that is dated Tuesday, the day of the day's only item."""
    d = FakeDriver(loaded)
    for email in TOLD_EARLIER:
        await d.say(email, "help")
    await notice.flush(loaded)
    loaded.clock.advance(timedelta(days=1))
    tuesday = loaded.clock.now().date()
    assert await give(d, NEWCOMER, TEXT) is None
    await notice.flush(loaded)
    after = await rows_naming(loaded, await identity_strings(loaded.db, NEWCOMER),
                              skip=("processed_events",))
    assert [row for rows in after.values() for row in rows if str(tuesday) in row] == []


async def test_a_new_time_zone_on_a_tap_changes_no_row_naming_the_person(loaded: Core) -> None:
    """Attack (PostgreSQL): a person from the HR import (not the programme file) answers from a
    client now in another time zone; the intruder matches the `xmin` of rows naming people to
    the sealed pending answers' `xmin`, and has whose answer each is."""
    if loaded.db.is_sqlite:
        pytest.skip("transaction ids are PostgreSQL's; SQLite's write-ahead log is B4's too")
    d = FakeDriver(loaded)
    who = "practitioner1@northbridge.example"
    async with loaded.db.session() as s:
        await s.execute(update(Person).where(Person.email == who)
                        .values(from_programme=False, tz="Europe/London"))
    await loaded.tick()  # Monday 10:00: the weekly round opens
    posted = d.port.messages(d.conv(who).conversation_id)[-1]
    scale = next(b for b in posted.message.blocks if isinstance(b, RatingScale))
    await loaded.handle(ActionEvent("tap-abroad", replace(d.user(who), tz="Europe/Paris"),
                                    d.conv(who), action_id=scale.action_id, value="4",
                                    message=posted.ref), d.port)
    assert "Saved your answer to question 1." in d.seen(who)[-1]
    async with loaded.db.engine.connect() as conn:
        pending = set((await conn.execute(text("SELECT xmin::text FROM pulse_pending"))).scalars())
    assert len(pending) == 1
    named = await _xmin_of_rows_naming(loaded, await identity_strings(loaded.db, who))
    assert {t: xs for t, xs in named.items() if {str(x) for x in xs} & pending} == {}


async def test_a_home_tab_drawn_for_an_account_not_yet_linked_writes_no_row_naming_them(
        loaded: Core, slack: SlackDriver) -> None:  # noqa: F811
    """Attack (Slack): a newcomer opens the app's Home tab for the first time, and the
    admission of that event did not hold their account (it gave up: a database busy past
    its retries; or the flusher had just taken the held link to write it). Here a middleware
    answers for the core as such an admission does. The Home tab is drawn all the same
    (`Core.context_for`). The intruder looks for a row naming the newcomer written then.

    Before: `context_for` linked an account neither stored nor held at once
    (`people.person_for`): their `identities` row, written at the moment they opened the
    Home tab, as admission had stopped doing (N21)."""
    newcomer = slack.user(NEWCOMER).id

    async def admission_gave_up(event: Event, port: Port, call_next: Next) -> HandleResult:
        if event.user.user_id == newcomer:
            return HandleResult(handled=False, error="internal")
        return await call_next()

    loaded.use(admission_gave_up)
    who = {*await identity_strings(loaded.db, NEWCOMER), newcomer}
    before = await rows_naming(loaded, who, skip=("processed_events",))
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            start = int((await conn.execute(text("SELECT txid_current()"))).scalar_one())
    home = await slack.open_home(NEWCOMER)
    assert home is not None and "Give anonymous feedback" in str(home)  # drawn for them
    assert await rows_naming(loaded, who, skip=("processed_events",)) == before
    if not loaded.db.is_sqlite:
        xmins = await _xmin_of_rows_naming(loaded, who)
        assert {t: {x for x in xs if x > start} for t, xs in xmins.items()} == {
            t: set() for t in xmins}

    # The link is held, and written by the flusher, undated, with every other account's.
    assert await held.flush(loaded) >= 1
    async with loaded.db.session() as s:
        [row] = (await s.execute(select(Identity).where(Identity.user_id == newcomer))).scalars()
        assert row.updated_at is None
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            assert len(set((await conn.execute(text(
                "SELECT xmin::text FROM identities"))).scalars())) == 1


async def test_a_first_teams_message_dates_no_reference_or_member_row_of_its_sender(
        loaded: Core) -> None:
    """Attack (Microsoft Teams, through the real adapter): nobody reached the newcomer before;
    on Monday four people use the bot; on a quiet Tuesday the newcomer's first words are
    "feedback", and theirs is the day's only item. The intruder looks for a row naming them
    dated Tuesday, or (PostgreSQL) written between the day's start and the item.

    Before: their personal chat's reference (`teams_conversations`: their user id, Tuesday)
    and their member row (`teams_members`: email, name, Tuesday) were written, each in a
    transaction of its own, just before the admission of their first message."""
    from tests.conformance.drivers.teams import make

    d = await make(loaded)
    try:
        for email in TOLD_EARLIER:
            await d.say(email, "help")
        await notice.flush(loaded)
        await held.flush(loaded)
        loaded.clock.advance(timedelta(days=1))
        tuesday = loaded.clock.now().date()
        if not loaded.db.is_sqlite:
            async with loaded.db.engine.connect() as conn:
                start = int((await conn.execute(text("SELECT txid_current()"))).scalar_one())
        assert await give(d, NEWCOMER, TEXT) is None
        await notice.flush(loaded)
        await held.flush(loaded)
        uid, chat = d.dm_id(NEWCOMER)
        who = {*await identity_strings(loaded.db, NEWCOMER), uid, chat}
        after = await rows_naming(loaded, who, skip=("processed_events",))
        assert len(after["teams_conversations"]) == 1 and len(after["teams_members"]) == 1
        assert [row for rows in after.values() for row in rows if str(tuesday) in row] == []
        if not loaded.db.is_sqlite:
            async with loaded.db.engine.connect() as conn:
                [item_xmin] = (await conn.execute(text(
                    "SELECT xmin::text FROM feedback_items"))).scalars().all()
            xmins = await _xmin_of_rows_naming(loaded, who)
            near = {t: {x for x in xs if start < x <= int(item_xmin)}
                    for t, xs in xmins.items() if t != "processed_events"}
            assert {t: xs for t, xs in near.items() if xs} == {}
    finally:
        await d.close()


async def test_a_person_who_enrols_themselves_is_not_created_in_their_first_events_transaction(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the programme lets people enrol themselves, and an agency worker in no source
    writes to the bot for the first time: "feedback". Their person row (email, name) and role
    row must exist at once (what the event does may refer to them). The intruder pairs the
    new person with the event that brought them: on PostgreSQL by `xmin` (the event's
    `processed_events` row against the person's rows), on SQLite by the commits of the
    write-ahead log.

    Before: the person was created in the admission's transaction: one `xmin`, one commit.
    Now they are created in a transaction of their own just before it (so, on a quiet day,
    the residue of N21: the transaction before), undated, and the next flush rewrites every
    person and role row, so theirs end with the flush's `xmin`, as everyone's."""
    from storage import sqlite_inline
    from tests.anonymity.test_feedback_counter import _wal_commits
    from tests.test_dispatcher import self_enrol

    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_EVERY", 10**9)  # the log keeps every commit
    await self_enrol(loaded)
    d = FakeDriver(loaded)
    agency = "agency.worker@northbridge.example"
    result = await loaded.handle(MessageEvent("agency-first-words", d.user(agency), d.conv(agency),
                                              text="feedback"), d.port)
    assert result.error is None and d.seen(agency)[0].startswith(FIRST)
    key = loaded.event_key("agency-first-words")
    async with loaded.db.session() as s:
        pid = (await s.execute(select(Person.id).where(Person.email == agency))).scalar_one()
    if loaded.db.is_sqlite:
        commits = _wal_commits((make_url(loaded.db.url).database or "") + "-wal")
        assert any(key.encode() in c for c in commits) and any(pid.encode() in c for c in commits)
        assert [c for c in commits if key.encode() in c and pid.encode() in c] == []
    else:
        async with loaded.db.engine.connect() as conn:
            [event] = (await conn.execute(text(
                "SELECT xmin::text FROM processed_events WHERE event_id = :k"), {"k": key})).scalars()
            mine = set((await conn.execute(text(
                "SELECT xmin::text FROM people WHERE id = :p UNION "
                "SELECT xmin::text FROM person_roles WHERE person_id = :p"), {"p": pid})).scalars())
        assert event not in mine
    await held.flush(loaded)
    async with loaded.db.session() as s:
        [link] = (await s.execute(select(Identity).where(Identity.person_id == pid))).scalars()
        assert link.updated_at is None
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            for table in ("people", "person_roles"):
                assert len(set((await conn.execute(text(
                    f"SELECT xmin::text FROM {table}"))).scalars())) == 1, table
