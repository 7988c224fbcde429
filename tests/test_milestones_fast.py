"""The cheap read paths behind "status" and "what's at risk?": the one-statement roadmap read
shows exactly what the ORM views showed, and cached settings never hide this process's changes
(another process's within the cache's time to live)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from sqlalchemy import event, select, update

from bot.core import Core
from bot.milestones import cards, service
from bot.milestones.tables import Milestone, MilestoneOwner, MilestoneUpdate
from bot.model import plain_text
from bot.people.tables import Person, Setting
from bot.programme.core_sections import (
    forget_settings,
    get_setting,
    set_setting,
    settings_cache,
)
from storage.db import Database
from tests.conformance.drivers.fake import FakeDriver

CHANGE = "changelead@northbridge.example"
FRONT_DOOR = "lead.frontdoor@northbridge.example"  # owns recording-templates
PRACTITIONER = "practitioner1@northbridge.example"


async def orm_overview(core: Core) -> str:
    """The overview as the ORM path built it before the fast read (the reference)."""
    now = core.clock.now()
    async with core.db.session() as s:
        today = await service.today(s, now)
        ms = await service.all_milestones(s)
        return plain_text(cards.overview(await service.health(s, today, ms),
                                         await service.views(s, ms), now, today))


async def orm_at_risk(core: Core) -> str:
    now = core.clock.now()
    async with core.db.session() as s:
        today = await service.today(s, now)
        vs = await service.views(s, await service.at_risk(s))
    return plain_text(cards.listing("At risk or off track", vs, now, today,
                                    "Nothing is at risk or off track right now. 🟢"))


async def person_id(core: Core, email: str) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()


# -- the roadmap in one statement ---------------------------------------------------------


async def test_the_overview_shows_the_newest_update_its_author_owners_in_order_and_team(
    loaded: Core,
) -> None:
    d = FakeDriver(loaded)
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "at_risk", "progress": "72", "note": "Testing"}) is None
    loaded.clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
    await d.say(CHANGE, "update recording templates")
    assert await d.submit(CHANGE, {"status": "off_track", "progress": "74",
                                   "note": "Vendor slipped"}) is None
    # Owners in their stored order, not the order people were added or their names sort in.
    safeguarding = await person_id(loaded, "safeguarding.lead@northbridge.example")
    async with loaded.db.session() as s:
        await service.set_owners(s, "supervision-policy", [safeguarding, await person_id(loaded, CHANGE)])

    await d.say(PRACTITIONER, "status")
    shown = d.seen(PRACTITIONER)[-1]
    assert shown == await orm_overview(loaded)
    assert ("🔴 Off track · Strengths-based recording templates live (recording-templates) · 74% · "
            "Front Door Team Manager · due 30 Oct 2026 — overdue · updated today") in shown
    assert "· Designated Safeguarding Lead, Change Programme Lead ·" in shown
    assert "🔴 Off track: 1" in shown and "Overdue: 1" in shown

    # What the one statement read renders the full card exactly as the ORM objects did.
    now = loaded.clock.now()
    async with loaded.db.session() as s:
        today = await service.today(s, now)
        fast = {v.m.id: v for v in await service.roadmap(s)}
        ms = await service.all_milestones(s)
        orm = {v.m.id: v for v in await service.views(s, ms)}
        one = await service.view(s, await service.get(s, "recording-templates"))  # type: ignore[arg-type]
    assert list(fast) == [m.id for m in ms]
    for mid, v in orm.items():
        assert plain_text(cards.card(fast[mid], now, today)) == plain_text(cards.card(v, now, today))
    card = plain_text(cards.card(fast["recording-templates"], now, today))
    assert card == plain_text(cards.card(one, now, today))
    assert "by Change Programme Lead: “Vendor slipped”" in card and "Front Door (MASH)" in card
    assert fast["recording-templates"].last.note == "Vendor slipped"  # type: ignore[union-attr]


async def test_what_is_at_risk_lists_the_same_milestones_in_the_same_order(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "what's at risk?")
    before = d.seen(PRACTITIONER)[-1]
    assert before == await orm_at_risk(loaded)
    assert before.index("Strengths-based recording") < before.index("Group supervision")
    await d.say(CHANGE, "update family network meetings")
    assert await d.submit(CHANGE, {"status": "off_track", "progress": "35", "note": ""}) is None
    await d.say(PRACTITIONER, "what's at risk?")
    after = d.seen(PRACTITIONER)[-1]
    assert after == await orm_at_risk(loaded)
    # Off track first by due date (30 Oct 2026, then 31 Mar 2027), then at risk.
    lines = [x for x in after.splitlines() if x.startswith("• ")]
    assert [x.split(" · ")[1] for x in lines] == [
        "Strengths-based recording templates live (recording-templates)",
        "Family network meetings offered at every assessment (family-network-meetings)",
        "Group supervision running in every team (group-supervision)",
    ]
    assert "updated today" in lines[1] and "Change Officer" in lines[1]


async def test_odd_rows_read_alike_no_team_no_owner_no_update_and_people_gone(loaded: Core) -> None:
    now = loaded.clock.now()
    async with loaded.db.session() as s:
        s.add(Milestone(id="bare", title="Bare milestone", description="", team_id=None,
                        due=date(2027, 1, 1), status="on_track", progress=5, position=100,
                        created_at=now, early_win_ids=[], offer_to=[]))
        s.add(Milestone(id="orphans", title="Orphaned bits", description="Team and people gone",
                        team_id="no-such-team", due=date(2026, 1, 1), status="at_risk",
                        progress=9, position=101, created_at=now, stale_since=now,
                        early_win_ids=[], offer_to=[]))
        await s.flush()
        s.add(MilestoneOwner(milestone_id="orphans", person_id="no-such-person", position=0))
        s.add(MilestoneOwner(milestone_id="orphans", person_id=await person_id(loaded, CHANGE),
                             position=1))
        for i, who in enumerate([await person_id(loaded, CHANGE), "no-such-person"]):
            s.add(MilestoneUpdate(milestone_id="orphans", person_id=who, at=now + timedelta(hours=i),
                                  status="at_risk", progress=9, prev_status="at_risk",
                                  prev_progress=9, note=f"note {i}", source="chat"))
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "status")
    assert d.seen(PRACTITIONER)[-1] == await orm_overview(loaded)
    await d.say(PRACTITIONER, "what's at risk?")
    assert d.seen(PRACTITIONER)[-1] == await orm_at_risk(loaded)
    async with loaded.db.session() as s:
        today = await service.today(s, now)
        fast = {v.m.id: v for v in await service.roadmap(s)}
        orm = {v.m.id: v for v in await service.views(s, await service.all_milestones(s))}
    for mid in ("bare", "orphans"):
        assert plain_text(cards.card(fast[mid], now, today)) == plain_text(cards.card(orm[mid], now, today))
    bare, orphans = fast["bare"], fast["orphans"]
    assert (bare.team, bare.owners, bare.last, bare.last_by) == (None, [], None, None)
    assert orphans.team is None and [p.display_name for p in orphans.owners] == ["Change Programme Lead"]
    assert orphans.last is not None and orphans.last.note == "note 1" and orphans.last_by is None
    assert "by the programme file: “note 1”" in plain_text(cards.card(orphans, now, today))


# -- settings through the cache --------------------------------------------------------------


async def timezone(db: Database, **kw: float) -> str:
    async with db.session() as s:
        return (await get_setting(s, "programme", {}, **kw))["timezone"]


async def set_timezone(db: Database, tz: str) -> None:
    async with db.session() as s:
        prog = await get_setting(s, "programme")
        await set_setting(s, "programme", prog | {"timezone": tz})


async def test_a_setting_changed_in_this_process_is_seen_at_once(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "status recording templates")
    assert "30 Oct 2026 (31 days overdue)" in d.seen(PRACTITIONER)[-1]
    assert await timezone(loaded.db) == "Europe/London"  # cached now
    # Monday 10:00 UTC is already Tuesday at UTC+14.
    await set_timezone(loaded.db, "Pacific/Kiritimati")
    assert await timezone(loaded.db) == "Pacific/Kiritimati"
    await d.say(PRACTITIONER, "status recording templates")
    assert "30 Oct 2026 (32 days overdue)" in d.seen(PRACTITIONER)[-1]
    async with loaded.db.transaction() as conn:
        assert await service.today(conn, loaded.clock.now()) == date(2026, 12, 1)
    # Changed on the ORM row itself, and by a Core statement on a bare connection: both seen.
    async with loaded.db.session() as s:
        row = await s.get(Setting, "programme")
        assert row is not None
        row.value = {**row.value, "timezone": "America/New_York"}
    assert await timezone(loaded.db) == "America/New_York"
    async with loaded.db.transaction() as conn:  # not tracked: the writer says so
        prog = await get_setting(conn, "programme")
        await conn.execute(update(Setting).where(Setting.key == "programme")
                           .values(value=prog | {"timezone": "Asia/Tokyo"}))
    forget_settings(loaded.db.engine)
    assert await timezone(loaded.db) == "Asia/Tokyo"
    # Inside the writing session, before any flush, its own value.
    async with loaded.db.session() as s:
        await set_setting(s, "programme", prog | {"timezone": "Europe/Paris"})
        assert (await get_setting(s, "programme"))["timezone"] == "Europe/Paris"
    assert await timezone(loaded.db) == "Europe/Paris"


async def test_a_value_read_between_a_writers_flush_and_its_commit_is_dropped_at_the_commit(
    loaded: Core,
) -> None:
    async with loaded.db.session() as w:
        prog = await get_setting(w, "programme")
        await set_setting(w, "programme", prog | {"timezone": "Asia/Tokyo"})
        await w.flush()
        assert await timezone(loaded.db) == "Europe/London"  # not committed yet; now cached
    assert await timezone(loaded.db) == "Asia/Tokyo"


async def test_a_setting_changed_by_another_process_is_seen_after_the_time_to_live(
    loaded: Core, db_url: str,
) -> None:
    assert await timezone(loaded.db) == "Europe/London"
    other = Database(db_url)  # another process's engine on the same database
    try:
        await set_timezone(other, "Asia/Tokyo")
    finally:
        await other.dispose()
    assert await timezone(loaded.db, ttl=60) == "Europe/London"  # still the cached value
    await asyncio.sleep(0.06)
    assert await timezone(loaded.db, ttl=0.05) == "Asia/Tokyo"
    assert await timezone(loaded.db, ttl=60) == "Asia/Tokyo"  # and cached afresh


async def test_a_read_in_a_transaction_older_than_a_write_is_not_kept(loaded: Core) -> None:
    """A session's transaction may see settings as they were when it began (PostgreSQL's
    repeatable read): what it reads after a write in this process is not kept."""
    assert await timezone(loaded.db) == "Europe/London"
    cache = settings_cache(loaded.db.engine.sync_engine)
    async with loaded.db.sessions() as s, s.begin():
        if not loaded.db.is_sqlite:
            await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        await s.execute(select(Setting.value))  # the transaction's snapshot starts
        await set_timezone(loaded.db, "Asia/Tokyo")
        seen = (await get_setting(s, "programme"))["timezone"]
        # SQLite reads outside a snapshot until a transaction writes (pysqlite's BEGIN).
        assert seen == ("Asia/Tokyo" if loaded.db.is_sqlite else "Europe/London")
        assert "programme" not in cache.values
    assert await timezone(loaded.db) == "Asia/Tokyo"
    assert "programme" in cache.values  # a transaction begun after the write keeps it


async def test_a_read_racing_a_commit_is_not_kept(loaded: Core) -> None:
    """On a bare connection: a write committed while the read is in flight (simulated by
    emptying the cache as a commit does, from inside the read) leaves nothing cached."""
    cache = settings_cache(loaded.db.engine.sync_engine)
    async with loaded.db.transaction() as conn:

        def commit_lands(*_: object) -> None:
            forget_settings(loaded.db.engine)

        event.listen(conn.sync_connection, "after_cursor_execute", commit_lands)
        assert (await get_setting(conn, "programme"))["timezone"] == "Europe/London"
        assert "programme" not in cache.values
        event.remove(conn.sync_connection, "after_cursor_execute", commit_lands)
        await get_setting(conn, "programme")
        assert "programme" in cache.values


async def test_what_a_caller_changes_in_a_value_does_not_reach_the_cache(loaded: Core) -> None:
    async with loaded.db.session() as s:
        await get_setting(s, "programme")
    async with loaded.db.session() as s:
        prog = await get_setting(s, "programme")
        prog["timezone"] = "Mars/Olympus"
        prog["working_hours"]["days"].clear()
    async with loaded.db.session() as s:
        again = await get_setting(s, "programme")
    assert again["timezone"] == "Europe/London" and again["working_hours"]["days"]
    async with loaded.db.session() as s:
        assert await get_setting(s, "no-such-setting", "fallback") == "fallback"
        assert await get_setting(s, "no-such-setting", "fallback") == "fallback"
