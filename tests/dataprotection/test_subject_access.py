"""A subject access export holds what names the person who asked, and nothing that names anyone
else (docs/invariants.md N31)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

from sqlalchemy import select

from bot.core import Core
from bot.milestones.tables import Milestone
from bot.people.tables import Person
from staffvoice.cli import main
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import identity_strings

ASKER = "changeofficer@northbridge.example"
COLLEAGUES = ("changelead@northbridge.example", "lead.frontdoor@northbridge.example")


async def test_an_export_names_nobody_but_the_person_who_asked_for_it(
        loaded: Core, settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The Change Officer asks what is held about them. An early-win offer waits for both
    change-team members, and a stale-milestone notice for the officer and the milestone's
    owner, the Front Door manager. Before the fix the export held each milestone's whole row,
    `offer_to` and `stale_tell` with the colleagues' person ids: the officer learnt who else
    was on the change team's list and who owned the stale milestone, by id, and could join
    those ids to any other export or dump (another person's data in a subject access reply)."""
    d = FakeDriver(loaded)
    for email in (ASKER, *COLLEAGUES):
        await d.say(email, "whoami")
    async with loaded.db.session() as s:
        ids = {p.email: p.id for p in (await s.execute(select(Person))).scalars()}
        ms = list((await s.execute(select(Milestone).order_by(Milestone.id))).scalars())[:2]
        ms[0].offer_to = [ids[COLLEAGUES[0]], ids[ASKER]]
        ms[1].stale_since = ms[1].stale_told_at = loaded.clock.now()
        ms[1].stale_tell = [ids[COLLEAGUES[1]], ids[ASKER]]
    out = tmp_path / "officer.zip"
    assert await asyncio.to_thread(main, ["people", "export-data", ASKER, "--out", str(out)],
                                   settings=settings) == 0
    capsys.readouterr()
    z = zipfile.ZipFile(io.BytesIO(out.read_bytes()))
    data = json.loads(z.read("person.json"))
    blob = z.read("person.json").decode() + z.read("person.html").decode()

    # What names them is there: both waiting notices, each with their id alone.
    shown = {r["id"]: r for r in data["held"]["milestones"]}
    assert shown[ms[0].id]["offer_to"] == [ids[ASKER]]
    assert shown[ms[1].id]["stale_tell"] == [ids[ASKER]]
    assert ids[ASKER] in blob
    # Nothing that names a colleague: no person id, email, platform account or DM.
    for email in COLLEAGUES:
        for x in await identity_strings(loaded.db, email):
            assert x not in blob, (email, x)
