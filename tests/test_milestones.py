"""Milestones: the file round-trips, chat edits are checked, check-ins respect working hours,
the weekly digest posts once, and marking done offers an early-win announcement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.core import Core
from bot.milestones import offers, service
from bot.milestones.tables import EarlyWin, Milestone, MilestoneCheckin, MilestoneUpdate
from bot.model import ConversationRef, MessageEvent, plain_text
from bot.programme import loader
from bot.programme.core_sections import get_setting, set_setting
from bot.programme.schema import ProgrammeError
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE

CHANGE = "changelead@northbridge.example"
OFFICER = "changeofficer@northbridge.example"
FRONT_DOOR = "lead.frontdoor@northbridge.example"  # owns recording-templates
PRACTITIONER = "practitioner1@northbridge.example"


async def count(core: Core, table: Any) -> int:
    async with core.db.session() as s:
        return (await s.execute(select(func.count()).select_from(table))).scalar_one()


async def milestone(core: Core, mid: str) -> Milestone:
    async with core.db.session() as s:
        m = await s.get(Milestone, mid)
        assert m is not None
        return m


# -- the programme file ----------------------------------------------------------------


async def test_the_example_roadmap_loads_and_exports_exactly(loaded: Core) -> None:
    exported = yaml.safe_load(await loader.export(loaded.db, loaded.router))
    original = yaml.safe_load(EXAMPLE.read_text())
    assert exported["milestones"] == original["milestones"]
    assert exported["early_wins"] == original["early_wins"]
    assert await count(loaded, Milestone) == 7 and await count(loaded, EarlyWin) == 4


async def test_reloading_an_old_file_keeps_what_owners_said_in_chat(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "on_track", "progress": "80", "note": "Live in MASH"}) is None
    text = EXAMPLE.read_text()
    await loader.load(loaded.db, text, loaded.router)
    m = await milestone(loaded, "recording-templates")
    assert (m.status, m.progress) == ("on_track", 80)
    # What the file itself changes is applied; the rest stays as chat left it.
    moved = text.replace("    due: 2026-10-30\n", "    due: 2027-01-15\n")
    await loader.load(loaded.db, moved, loaded.router)
    m = await milestone(loaded, "recording-templates")
    assert m.due == date(2027, 1, 15) and (m.status, m.progress) == ("on_track", 80)
    # The export now carries both, and loading it changes nothing.
    exported = await loader.export(loaded.db, loaded.router)
    await loader.load(loaded.db, exported, loaded.router)
    assert await loader.export(loaded.db, loaded.router) == exported


async def test_a_status_changed_in_the_file_is_recorded_as_an_update(loaded: Core) -> None:
    text = EXAMPLE.read_text().replace("    status: at_risk\n    progress: 50\n",
                                       "    status: on_track\n    progress: 60\n")
    await loader.load(loaded.db, text, loaded.router)
    m = await milestone(loaded, "group-supervision")
    assert (m.status, m.progress) == ("on_track", 60)
    async with loaded.db.session() as s:
        u = await service.last_update(s, "group-supervision")
    assert u is not None and u.source == "file" and u.prev_status == "at_risk"


async def test_a_milestone_dropped_from_the_file_goes_but_one_made_in_chat_stays(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "milestone new")
    assert await d.submit(CHANGE, {
        "id": "parent-panel", "title": "Parent panel meets quarterly", "owners": OFFICER,
        "due": "2027-05-28", "cadence": "monthly", "team": "", "theme": "",
    }) is None
    data = yaml.safe_load(EXAMPLE.read_text())
    data["milestones"] = [m for m in data["milestones"] if m["id"] != "caseload-weighting"]
    await loader.load(loaded.db, yaml.safe_dump(data, sort_keys=False), loaded.router)
    async with loaded.db.session() as s:
        ids = {m.id for m in await service.all_milestones(s)}
    assert "caseload-weighting" not in ids and "parent-panel" in ids
    exported = yaml.safe_load(await loader.export(loaded.db, loaded.router))
    assert exported["milestones"][-1]["id"] == "parent-panel"


def test_problems_in_the_milestones_section_name_their_line(core: Core) -> None:
    bad = EXAMPLE.read_text().replace(
        "    owners: [lead.cic@northbridge.example]", "    owners: [nobody@northbridge.example]"
    ).replace("    progress: 35\n", "    progress: 135\n").replace(
        "    status: off_track\n", "    status: wobbly\n"
    ).replace("early_wins: [supervision-space]", "early_wins: [free-lunch]")
    with pytest.raises(ProgrammeError) as e:
        loader.validate(bad, core.router)
    text = "\n".join(e.value.problems)
    assert "milestones[5].owners[0]: 'nobody@northbridge.example' is not a person" in text
    assert "milestones[0].progress: should be from 0 to 100" in text
    assert "milestones[3].status: should be one of" in text
    assert "milestones[1].early_wins[0]: 'free-lunch' is not an early win" in text
    assert all(p.startswith("line ") for p in e.value.problems)


# -- chat: creating, editing, updating -------------------------------------------------


async def test_the_change_team_adds_and_edits_a_milestone_in_chat(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "milestone new")
    form = d.form(CHANGE)
    assert form is not None and form.title == "New milestone"
    assert await d.submit(CHANGE, {
        "id": "parent-panel", "title": "Parent panel meets quarterly", "description": "",
        "owners": f"{OFFICER}, lead.cic@northbridge.example", "team": "children-in-care",
        "due": "2027-05-28", "cadence": "monthly", "theme": "family-networks",
    }) is None
    assert "Milestone added." in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "milestone edit parent panel")
    assert await d.submit(CHANGE, {
        "title": "Parent panel meets every quarter", "owners": OFFICER, "team": "children-in-care",
        "due": "2027-06-30", "cadence": "fortnightly", "theme": "",
    }) is None
    await d.say(PRACTITIONER, "status parent-panel")
    card = d.seen(PRACTITIONER)[-1]
    assert "Parent panel meets every quarter" in card and "30 Jun 2027" in card
    assert "Children in Care" in card and "Change Officer" in card
    async with loaded.db.session() as s:
        assert await service.owners_of(s, "parent-panel") != []
        assert (await service.get(s, "parent-panel")).cadence == "fortnightly"  # type: ignore[union-attr]


@pytest.mark.parametrize("change, field, words", [
    ({"due": "2026-11-01"}, "due", "in the past"),
    ({"owners": "someone@elsewhere.example"}, "owners", "I don't know someone@elsewhere.example"),
    ({"owners": ""}, "owners", "At least one owner"),
    ({"id": "Parent Panel!"}, "id", "lower-case letters"),
    ({"id": "group-supervision"}, "id", "already a milestone"),
    ({"due": "next spring"}, "due", "YYYY-MM-DD"),
    ({"title": ""}, "title", "title is needed"),
])
async def test_bad_input_on_creation_says_why_and_changes_nothing(
    loaded: Core, change: dict[str, str], field: str, words: str
) -> None:
    d = FakeDriver(loaded)
    before = await count(loaded, Milestone)
    await d.say(CHANGE, "milestone new")
    values = {"id": "parent-panel", "title": "Parent panel", "owners": OFFICER,
              "due": "2027-05-28", "cadence": "monthly"} | change
    errors = await d.submit(CHANGE, values)
    assert errors is not None and words in errors[field]
    assert await count(loaded, Milestone) == before


async def test_progress_outside_0_to_100_is_refused_and_nothing_is_stored(loaded: Core) -> None:
    d = FakeDriver(loaded)
    for bad in ("150", "-5", "lots"):
        await d.say(FRONT_DOOR, "update recording-templates")
        errors = await d.submit(FRONT_DOOR, {"status": "on_track", "progress": bad, "note": ""})
        assert errors is not None and "0 to 100" in errors["progress"]
    assert await count(loaded, MilestoneUpdate) == 0
    assert (await milestone(loaded, "recording-templates")).progress == 70


async def test_an_unknown_milestone_gets_a_clear_answer(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(FRONT_DOOR, "update budget approval")
    assert d.seen(FRONT_DOOR)[-1].startswith("I don't know a milestone called 'budget approval'.")
    await d.say(CHANGE, "milestone edit budget approval")
    assert d.form(CHANGE) is None
    await d.say(PRACTITIONER, "milestone new")
    assert d.seen(PRACTITIONER)[-1] == "Sorry, only the change team can do that. Nothing was changed."


async def test_a_channel_mention_is_answered_in_the_channel(loaded: Core) -> None:
    d = FakeDriver(loaded)
    channel = ConversationRef("fake", "W1", "C-general", is_direct=False)
    await loaded.handle(MessageEvent("ev-mention", d.user(PRACTITIONER), channel,
                                     text="what's at risk?", mentioned=True), d.port)
    [answer] = d.channel("C-general")
    assert "Group supervision running in every team" in answer


# -- check-ins and working hours -------------------------------------------------------


async def test_check_ins_wait_for_the_owners_working_hours(loaded: Core) -> None:
    d = FakeDriver(loaded)
    clock = loaded.clock
    await loaded.tick(clock.now())  # Monday 30 Nov 10:00: the cadence starts
    # Weekly: due Monday 7 Dec 10:00. Nothing before; at 19:00 it waits for the morning.
    for when in (datetime(2026, 12, 7, 9, 59, tzinfo=UTC), datetime(2026, 12, 7, 19, tzinfo=UTC),
                 datetime(2026, 12, 8, 8, 30, tzinfo=UTC)):
        clock.set(when)  # type: ignore[attr-defined]
        await loaded.tick(when)
        assert not any("Check-in: Family network" in t for t in d.seen(OFFICER)), when
    async with loaded.db.session() as s:
        states = list((await s.execute(select(MilestoneCheckin.state))).scalars())
    assert states == ["due"]  # derived and stored: a restart would still send it
    clock.set(datetime(2026, 12, 8, 9, tzinfo=UTC))  # type: ignore[attr-defined]
    await loaded.tick(clock.now())
    assert [t for t in d.seen(OFFICER) if "Check-in: Family network" in t]


async def test_every_owner_is_asked_and_one_answer_closes_all_their_cards(loaded: Core) -> None:
    d = FakeDriver(loaded)
    clock = loaded.clock
    await loaded.tick(clock.now())
    clock.set(datetime(2026, 12, 28, 10, tzinfo=UTC))  # type: ignore[attr-defined]  # bank holiday
    await loaded.tick(clock.now())
    assert not any("Check-in: Supervision policy" in t for t in d.seen(CHANGE))
    clock.set(datetime(2026, 12, 29, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    await loaded.tick(clock.now())
    lead = "safeguarding.lead@northbridge.example"
    assert any("Check-in: Supervision policy" in t for t in d.seen(CHANGE))
    assert any("Check-in: Supervision policy" in t for t in d.seen(lead))
    await d.say(lead, "update supervision policy")
    assert await d.submit(lead, {"status": "on_track", "progress": "10", "note": "Draft out"}) is None
    assert not any("Check-in: Supervision policy" in t for t in d.seen(CHANGE) + d.seen(lead))
    assert any("Designated Safeguarding Lead updated Supervision policy" in t for t in d.seen(CHANGE))
    assert any("Thanks, recorded for Supervision policy" in t for t in d.seen(lead))


# -- done, early wins, digest, health, home --------------------------------------------


async def test_marking_done_delivers_its_early_wins_and_offers_the_change_team_a_draft(
    loaded: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offers, "broadcasts_service", lambda: None)  # as before broadcasts existed
    d = FakeDriver(loaded)
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "done", "progress": "90", "note": ""}) is None
    m = await milestone(loaded, "recording-templates")
    assert (m.status, m.progress) == ("done", 100)
    async with loaded.db.session() as s:
        win = await s.get(EarlyWin, "shorter-case-notes")
    assert win is not None and win.status == "delivered" and win.delivered_on == date(2026, 11, 30)
    for who in (CHANGE, OFFICER):
        offer = d.seen(who)[-1]
        assert "Done: Strengths-based recording templates live" in offer
        assert "Shorter case notes with the new recording template" in offer
    assert not any("Done:" in t for t in d.seen(PRACTITIONER))


async def test_with_broadcasts_the_change_team_gets_a_draft_to_review(
    loaded: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    drafts: list[dict[str, Any]] = []

    class Broadcasts:
        @staticmethod
        async def draft(core: Core, author: str, *, title: str, text: str, source: str = "",
                        link_url: str | None = None) -> str:
            drafts.append({"author": author, "title": title, "text": text, "source": source})
            return "draft-1"

    monkeypatch.setattr(offers, "broadcasts_service", lambda: Broadcasts)
    d = FakeDriver(loaded)
    await d.say(CHANGE, "update practice tools training")
    assert await d.submit(CHANGE, {"status": "done", "progress": "100", "note": ""}) is None
    assert [x["title"] for x in drafts] == ["Done: Practice tools training for all practitioners"]
    assert drafts[0]["source"] == "milestone:practice-tools-training"
    # An owner outside the change team: the change team is offered a button to draft it.
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "done", "progress": "100", "note": ""}) is None
    await d.tap(OFFICER, "Draft it as a broadcast")
    assert drafts[-1]["title"] == "Done: Strengths-based recording templates live"
    assert "Drafted" in d.seen(OFFICER)[-1]


async def test_the_weekly_digest_posts_once_a_week_to_the_roadmap_channel(loaded: Core) -> None:
    d = FakeDriver(loaded)
    async with loaded.db.session() as s:
        prog = await get_setting(s, "programme")
        prog = prog | {"channels": prog["channels"] | {"roadmap_digest": "fake:W1/C-roadmap"}}
        await set_setting(s, "programme", prog)
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "at_risk", "progress": "75", "note": ""}) is None
    await loaded.tick(loaded.clock.now())
    await loaded.tick(loaded.clock.now() + timedelta(hours=2))
    [digest] = d.channel("C-roadmap")
    assert "Roadmap this week (7 milestones)" in digest
    assert "🟢 On track: 2" in digest and "🟠 At risk: 2" in digest and "✅ Done: 1" in digest
    assert "Strengths-based recording templates live: Off track → At risk, 70% → 75%" in digest
    assert "Overdue:\n• Strengths-based recording templates live" in digest
    assert "Early wins delivered:\n• none this week" in digest
    # Saturday: not a working moment; the next Monday: the next digest.
    loaded.clock.set(datetime(2026, 12, 5, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    await loaded.tick(loaded.clock.now())
    assert len(d.channel("C-roadmap")) == 1
    loaded.clock.set(datetime(2026, 12, 7, 9, 30, tzinfo=UTC))  # type: ignore[attr-defined]
    await loaded.tick(loaded.clock.now())
    assert len(d.channel("C-roadmap")) == 2
    assert "nothing changed" in d.channel("C-roadmap")[-1]


async def test_roadmap_health_for_reports(loaded: Core) -> None:
    async with loaded.db.session() as s:
        h = await service.health(s, date(2026, 11, 30))
    assert h == {"not_started": 2, "on_track": 2, "at_risk": 1, "off_track": 1, "done": 1,
                 "overdue": 1, "stale": 0, "total": 7}


async def test_the_home_surface_lists_your_milestones(loaded: Core) -> None:
    d = FakeDriver(loaded)
    ctx = await loaded.context_for(
        MessageEvent("ev-home", d.user(OFFICER), d.conv(OFFICER), text=""), d.port)
    blocks = await loaded.home(ctx)
    text = plain_text(type("M", (), {"blocks": tuple(blocks)})())  # type: ignore[arg-type]
    assert "Your milestones" in text and "Family network meetings offered" in text
    ctx = await loaded.context_for(
        MessageEvent("ev-home2", d.user(PRACTITIONER), d.conv(PRACTITIONER), text=""), d.port)
    assert not any("Your milestones" in getattr(b, "text", "") for b in await loaded.home(ctx))


async def test_the_change_team_marking_done_gets_a_broadcast_preview_to_confirm(loaded: Core) -> None:
    pytest.importorskip("bot.broadcasts.service")
    d = FakeDriver(loaded)
    await d.say(CHANGE, "update practice tools training")
    assert await d.submit(CHANGE, {"status": "done", "progress": "100", "note": "All trained"}) is None
    assert any("Done: Practice tools training for all practitioners" in t for t in d.seen(CHANGE))
    assert not any("Done: Practice tools" in t for t in d.seen(OFFICER))


async def test_an_offer_made_after_hours_waits_for_the_change_teams_working_hours(
    loaded: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offers, "broadcasts_service", lambda: None)
    d = FakeDriver(loaded)
    loaded.clock.set(datetime(2026, 12, 4, 19, tzinfo=UTC))  # type: ignore[attr-defined]  # Friday
    await d.say(FRONT_DOOR, "update recording templates")
    assert await d.submit(FRONT_DOOR, {"status": "done", "progress": "100", "note": ""}) is None
    assert not any("Done: Strengths-based" in t for t in d.seen(CHANGE))
    await loaded.tick(datetime(2026, 12, 5, 11, tzinfo=UTC))  # Saturday
    assert not any("Done: Strengths-based" in t for t in d.seen(CHANGE))
    await loaded.tick(datetime(2026, 12, 7, 9, tzinfo=UTC))  # Monday morning
    await loaded.tick(datetime(2026, 12, 7, 10, tzinfo=UTC))
    for who in (CHANGE, OFFICER):
        assert len([t for t in d.seen(who) if "Done: Strengths-based" in t]) == 1


async def test_many_views_at_once_show_the_same_as_one_at_a_time(loaded) -> None:  # type: ignore[no-untyped-def]
    """The roadmap card reads all milestones in a few queries; it must show what one view shows."""
    from bot.milestones import service as ms_service

    async with loaded.db.session() as s:
        ms = await ms_service.all_milestones(s)
        assert len(ms) > 1
        many = await ms_service.views(s, ms)
        one = [await ms_service.view(s, m) for m in ms]
    key = lambda v: (v.m.id, [p.id for p in v.owners], v.team.id if v.team else None,  # noqa: E731
                     v.last.id if v.last else None, v.last_by.id if v.last_by else None)
    assert [key(v) for v in many] == [key(v) for v in one]


async def test_the_roadmap_card_reads_only_each_milestones_newest_update(loaded: Core) -> None:
    """A roadmap gathers thousands of updates over two years; the card must not load them all."""
    from sqlalchemy import event, insert

    base = datetime(2026, 1, 5, 9, tzinfo=UTC)
    async with loaded.db.session() as s:
        ms = await service.all_milestones(s)
        await s.execute(insert(MilestoneUpdate), [
            {"id": f"u{m.id[:20]}{k:03d}", "milestone_id": m.id, "person_id": None,
             "at": base + timedelta(days=7 * k), "status": "on_track", "progress": k,
             "prev_status": "on_track", "prev_progress": max(k - 1, 0), "note": f"week {k}"}
            for m in ms for k in range(40)])
    loaded_rows: list[str] = []
    listener = lambda target, _ctx: loaded_rows.append(target.id)  # noqa: E731
    event.listen(MilestoneUpdate, "load", listener)
    try:
        async with loaded.db.session() as s:
            views = await service.views(s, await service.all_milestones(s))
    finally:
        event.remove(MilestoneUpdate, "load", listener)
    assert len(loaded_rows) == len(ms)
    assert {v.last.note for v in views if v.last} == {"week 39"}
    d = FakeDriver(loaded)
    await d.say(CHANGE, "status")
    assert "8 weeks ago" in d.seen(CHANGE)[-1]  # dated by the newest update (week 39)
