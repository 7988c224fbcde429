"""Issue 21 items 2 and 3: erasing a person leaves no row naming them (every table scanned),
and a subject access export holds every row that named them and nothing anonymous."""

from __future__ import annotations

import asyncio
import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.audit import trail
from bot.broadcasts.tables import Broadcast, Delivery
from bot.core import Core
from bot.feedback.tables import FeedbackResponse
from bot.milestones.tables import Milestone, MilestoneCheckin, MilestoneOwner, MilestoneUpdate
from bot.people.tables import Person, Team
from bot.privacy import notice
from bot.pulse.tables import PulseAttributedAnswer, PulseQuestion
from staffvoice.cli import main
from staffvoice.web.tables import WebLoginLink, WebSession
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import as_text, dump, give, identity_strings
from tests.test_reports_seed import emails, everyone_answers, seed_round

WHO = "lead.assessment@northbridge.example"  # a team lead who also does change-team work
CHANGE = "changelead@northbridge.example"
SECRET_FEEDBACK = "The duty rota never lets us take lunch breaks."
ANONYMOUS_TABLES = ("pulse_tallies", "pulse_cells", "pulse_summaries", "pulse_comments", "pulse_rounds",
                    "feedback_items", "feedback_handles", "feedback_messages")


def naming(rows: dict[str, list[dict[str, Any]]], ids: set[str]) -> dict[str, int]:
    """Rows per table with any column holding any of `ids`."""
    hits: dict[str, int] = {}
    for table, items in rows.items():
        for r in items:
            text = " ".join(as_text(v) for v in r.values())
            if any(i in text for i in ids):
                hits[table] = hits.get(table, 0) + 1
    return hits


async def a_busy_person(core: Core) -> str:
    """WHO talks to the bot, owns a milestone, writes updates, broadcasts, replies to feedback,
    answers an attributed survey and is audited; returns their person id."""
    d = FakeDriver(core)
    await d.say(WHO, "whoami")
    await d.say(CHANGE, f"grant change team {WHO}")
    await d.say(WHO, "feedback list")
    await give(d, WHO, SECRET_FEEDBACK)  # anonymous: must survive, unlinked
    await notice.flush(core)  # their privacy notice row
    people = await emails(core)
    await seed_round(core, core.clock.now() - timedelta(days=14),
                     everyone_answers(people, comments=12))
    now = core.clock.now()
    async with core.db.session() as s:
        me = (await s.execute(select(Person).where(Person.email == WHO))).scalar_one()
        rid = await seed_round(core, now - timedelta(days=7), everyone_answers(people))
        q = (await s.execute(select(PulseQuestion))).scalars().first()
        assert q is not None
        s.add(PulseAttributedAnswer(round_id=rid, person_id=me.id, question_id=q.id, value=4))
        ms = (await s.execute(select(MilestoneOwner))).scalars().first()
        assert ms is not None
        s.add(MilestoneOwner(milestone_id=ms.milestone_id, person_id=me.id, position=9))
        s.add(MilestoneUpdate(milestone_id=ms.milestone_id, person_id=me.id, at=now,
                              status="on_track", progress=40, prev_status="not_started",
                              prev_progress=0, note="Training booked"))
        s.add(MilestoneCheckin(milestone_id=ms.milestone_id, person_id=me.id, cycle_at=now,
                               state="done", closed_at=now))
        stale = await s.get(Milestone, ms.milestone_id)
        assert stale is not None  # a stale notice still to reach them and a colleague
        stale.stale_since, stale.stale_tell = now, [me.id, "someone-else"]
        b = Broadcast(author_person_id=me.id, title="Early win", text="We did it",
                      audience={"kind": "dm", "everyone": True}, state="done", created_at=now,
                      finished_at=now)
        s.add(b)
        await s.flush()
        s.add(Delivery(broadcast_id=b.id, recipient=f"person:{me.id}", person_id=me.id,
                       platform="fake", user_id=f"U-{WHO}", state="sent", next_attempt_at=now))
        s.add(FeedbackResponse(title="Lunch", text="Cover rota agreed", day=now.date(),
                               published_by=me.id))
        s.add(WebSession(id="f" * 64, person_id=me.id, provider="slack", created_at=now,
                         seen_at=now, expires_at=now + timedelta(hours=8)))
        s.add(WebLoginLink(id="e" * 64, person_id=me.id, expires_at=now + timedelta(minutes=15)))
        team = await s.get(Team, "assessment")
        assert team is not None and team.lead_person_id == me.id
        return me.id


async def test_an_erasure_leaves_no_row_naming_the_person_and_keeps_anonymous_data(
        loaded: Core, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    pid = await a_busy_person(loaded)
    ids = await identity_strings(loaded.db, WHO)
    before = await dump(loaded.db)
    hits = naming(before, ids)
    # The busy person really is all over the database (the scan would catch a missed table).
    for table in ("people", "identities", "person_roles", "teams", "milestones", "milestone_owners",
                  "milestone_updates", "milestone_checkins", "broadcasts", "broadcast_deliveries",
                  "feedback_responses", "pulse_attributed_answers", "audit_actors",
                  "privacy_notices_shown"):
        assert hits.get(table), (table, hits)

    # A dry run says what would go and changes nothing.
    assert await asyncio.to_thread(main, ["people", "erase", WHO, "--dry-run"],
                                   settings=settings) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "dry run: nothing was changed" in out
    assert await dump(loaded.db) == before

    assert await asyncio.to_thread(main, ["people", "erase", WHO], settings=settings) == 0
    out = capsys.readouterr().out
    assert "removed:" in out and "kept, and why:" in out and "cannot be found by person" in out
    after = await dump(loaded.db)
    assert naming(after, ids) == {}
    # Nothing anonymous was touched, so nothing about it changed that could point at them.
    for table in ANONYMOUS_TABLES:
        assert after[table] == before[table], table
    assert any(r["text"] == SECRET_FEEDBACK for r in after["feedback_items"])
    # What they did for the organisation stays, without their name; the audit chain holds.
    assert len(after["broadcasts"]) == len(before["broadcasts"])
    assert len(after["milestone_updates"]) == len(before["milestone_updates"])
    assert (await trail.verify(loaded.db)).ok
    lines = [trail.describe(x) for x in await trail.entries(loaded.db)]
    assert any("grant.role change_team about an erased person" in x for x in lines)
    assert "people.erase one person" in lines[-1] and WHO not in "\n".join(lines)
    async with loaded.db.session() as s:
        assert await s.get(Person, pid) is None
    assert [r["stale_tell"] for r in after["milestones"] if r["stale_tell"]] == [["someone-else"]]


async def test_an_export_holds_every_row_naming_them_and_nothing_anonymous(
        loaded: Core, settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    await a_busy_person(loaded)
    ids = await identity_strings(loaded.db, WHO)
    rows = await dump(loaded.db)
    out = tmp_path / "person.zip"
    assert await asyncio.to_thread(main, ["people", "export-data", WHO, "--out", str(out)],
                                   settings=settings) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    z = zipfile.ZipFile(io.BytesIO(out.read_bytes()))
    assert sorted(z.namelist()) == ["README.txt", "person.html", "person.json"]
    data = json.loads(z.read("person.json"))
    page = z.read("person.html").decode()
    # Every row that names them, in every table, is in the export.
    for table, items in rows.items():
        for r in items:
            if table == "audit_actors":
                continue  # an internal key; the entries themselves are exported
            text = " ".join(as_text(v) for v in r.values())
            if any(i in text for i in ids):
                shown = data["held"].get(table, [])
                key = next(k for k in r if r[k] is not None and not isinstance(r[k], bytes))
                assert any(str(x.get(key)) == str(r[key]) for x in shown), (table, r)
    assert {"grant.role", "view.feedback"} <= {e["action"] for e in data["held"]["audit_entries"]}
    assert "cannot be given to you or erased for you" in data["anonymous_data"]
    assert "<h2>Your profile</h2>" in page and "Anonymous data" in page
    # Nothing anonymous: not their feedback, not any pulse comment, not a tally.
    blob = json.dumps(data) + page + z.read("README.txt").decode()
    assert SECRET_FEEDBACK not in blob and "Comment number" not in blob
    assert "pulse_tallies" not in data["held"] and "feedback_items" not in data["held"]
    assert (await trail.entries(loaded.db))[-1].action == "export.person"


async def test_bad_input_gets_one_line_and_changes_nothing(
        loaded: Core, settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    before = await dump(loaded.db)
    assert await asyncio.to_thread(main, ["people", "erase", "nobody@northbridge.example"],
                                   settings=settings) == 2
    err = capsys.readouterr().err
    assert err == "error: no one has the email nobody@northbridge.example; nothing was changed\n"
    assert await asyncio.to_thread(
        main, ["people", "export-data", "nobody@northbridge.example", "--out",
               str(tmp_path / "x.zip")], settings=settings) == 2
    assert "no one has the email" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()
    for bad in (tmp_path / "missing" / "p.zip", tmp_path):
        assert await asyncio.to_thread(main, ["people", "export-data", WHO, "--out", str(bad)],
                                       settings=settings) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out ") and err.count("\n") == 1
    assert await dump(loaded.db) == before
    if os.geteuid() == 0:
        return  # root writes in any folder: the case below cannot happen
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert await asyncio.to_thread(
            main, ["people", "export-data", WHO, "--out", str(locked / "p.zip")],
            settings=settings) == 2
        assert "cannot write" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    assert await dump(loaded.db) == before


async def test_erasing_someone_the_programme_names_as_a_contact_says_where_to_change_it(
        loaded: Core, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    assert await asyncio.to_thread(main, ["people", "erase", "lado@northbridge.example",
                                          "--dry-run"], settings=settings) == 0
    out = capsys.readouterr().out
    assert "note: they are in the programme file" in out
    assert "note: the programme file's safeguarding section(s) still name them" in out


async def test_a_subject_access_export_named_after_the_person_leaves_no_name_in_the_audit_trail(
        loaded: Core, settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Attack: the operator names the export after the person, as people do
    (`--out lead.assessment-sar.zip`), and later erases them. Audit entries cannot change
    (a hash chain), so a file name kept in an entry's target names them for good, after the
    erasure took their name off every entry; before the fix the export's entry kept it."""
    d = FakeDriver(loaded)
    await d.say(WHO, "whoami")
    name = WHO.split("@")[0]  # lead.assessment
    out = tmp_path / f"{name}-subject-access.zip"
    assert await asyncio.to_thread(main, ["people", "export-data", WHO, "--out", str(out)],
                                   settings=settings) == 0
    assert out.exists()
    assert await asyncio.to_thread(main, ["people", "erase", WHO], settings=settings) == 0
    capsys.readouterr()
    rows = (await dump(loaded.db))["audit_entries"]
    export = [r for r in rows if r["action"] == "export.person"]
    assert len(export) == 1  # the export is still on record, by an erased person's subject
    assert not [r for r in rows if name in " ".join(as_text(v) for v in r.values())], export
    lines = [trail.describe(x) for x in await trail.entries(loaded.db)]
    assert not [x for x in lines if name in x], lines
    assert (await trail.verify(loaded.db)).ok
