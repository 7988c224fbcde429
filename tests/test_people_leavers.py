"""Leavers stop being prompted and drop out of audiences; the change team sees counts in chat."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.slack.config import SlackConfig
from adapters.slack.port import Directory, SlackPort, Workspaces
from bot.broadcasts import ledger, service
from bot.broadcasts.limiter import Limiter
from bot.broadcasts.sender import Sender
from bot.core import Core
from bot.people import directory, importing
from bot.people import service as people
from bot.people.tables import Person
from bot.pulse.tables import PulseParticipation
from tests.conformance.drivers.fake import FakeDriver
from tests.fakes.slack_api import BOT_TOKEN, TEAM, FakeSlack
from tests.test_broadcast_audiences import FAST, dms_with_title, publish

CHANGE = "changelead@northbridge.example"
OFFICER = "changeofficer@northbridge.example"
LEAD = "lead.assessment@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"


def hr_file(path: Path, workers: list[int], *, ends_on: str = "") -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["Email", "Name", "Team", "Ends on"])
        for i in workers:
            w.writerow([f"worker{i}@northbridge.example", f"Agency Worker {i}", "assessment",
                        ends_on if i == 6 else ""])
    return path


async def bring(core: Core, path: Path) -> directory.Plan:
    plan = await directory.run(core.db, importing.read_file(path), core.clock.now())
    assert plan.ok, plan.problems
    return plan


async def person(core: Core, email: str) -> Person:
    async with core.db.session() as s:
        p = (await s.execute(select(Person).where(Person.email == email))).scalar_one()
    return p


async def test_a_leaver_is_kept_but_not_asked_in_the_next_round_nor_in_any_audience(
    loaded: Core, tmp_path: Path,
) -> None:
    await bring(loaded, hr_file(tmp_path / "a.csv", [1, 2, 3, 4, 5, 6]))
    plan = await bring(loaded, hr_file(tmp_path / "b.csv", [1, 2, 3, 4, 5]))
    assert plan.leavers == ["worker6@northbridge.example"]
    leaver = await person(loaded, "worker6@northbridge.example")
    assert leaver.left_on == loaded.clock.now().date() and leaver.team_id == "assessment"

    d = FakeDriver(loaded)
    await loaded.tick()  # Monday 10:00: the weekly pulse opens for everyone
    assert any("Weekly pulse" in t for t in d.seen("worker5@northbridge.example"))
    assert d.seen("worker6@northbridge.example") == []
    async with loaded.db.session() as s:
        asked = set((await s.execute(select(PulseParticipation.person_id))).scalars())
        everyone = await ledger.audience_people(s, {"everyone": True})
        team = await ledger.audience_people(s, {"teams": ["childrens-services"]})
        practitioners = {p.id for p in await people.people_with_role(s, "practitioner")}
    worker5 = await person(loaded, "worker5@northbridge.example")
    assert worker5.id in asked and leaver.id not in asked
    for audience in (set(everyone), set(team), practitioners):
        assert worker5.id in audience and leaver.id not in audience


async def test_someone_who_leaves_while_a_round_is_open_gets_no_reminder(
    loaded: Core, tmp_path: Path,
) -> None:
    await bring(loaded, hr_file(tmp_path / "a.csv", [1, 2, 3, 4, 5, 6]))
    d = FakeDriver(loaded)
    await loaded.tick()
    assert len(d.seen("worker6@northbridge.example")) == 1  # invited
    await bring(loaded, hr_file(tmp_path / "b.csv", [1, 2, 3, 4, 5]))
    wednesday = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # reminder_after: 2d
    loaded.clock.set(wednesday)  # type: ignore[attr-defined]
    await loaded.tick(wednesday)
    assert len(d.seen("worker5@northbridge.example")) == 2  # invitation and reminder
    assert len(d.seen("worker6@northbridge.example")) == 1  # no reminder


async def test_a_milestone_owner_who_has_left_is_not_asked_to_check_in(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.tick(loaded.clock.now())
    async with loaded.db.session() as s:
        officer = (await s.execute(select(Person).where(Person.email == OFFICER))).scalar_one()
        officer.left_on = date(2026, 12, 1)
    when = datetime(2026, 12, 8, 9, tzinfo=UTC)  # the weekly check-in of "Family network ..."
    loaded.clock.set(when)  # type: ignore[attr-defined]
    await loaded.tick(when)
    assert not any("Check-in:" in t for t in d.seen(OFFICER))


async def test_a_fixed_term_contract_ends_by_itself(loaded: Core, tmp_path: Path) -> None:
    await bring(loaded, hr_file(tmp_path / "a.csv", [5, 6], ends_on="30/11/2026"))
    assert (await person(loaded, "worker6@northbridge.example")).left_on is None
    tuesday = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    loaded.clock.set(tuesday)  # type: ignore[attr-defined]
    await loaded.tick(tuesday)
    assert (await person(loaded, "worker6@northbridge.example")).left_on == date(2026, 12, 1)
    assert (await person(loaded, "worker5@northbridge.example")).left_on is None
    # The same file again says so rather than bringing them back.
    plan = await bring(loaded, hr_file(tmp_path / "a.csv", [5, 6], ends_on="30/11/2026"))
    assert plan.empty and plan.joiners == []
    # An extended contract brings them back.
    plan = await bring(loaded, hr_file(tmp_path / "a.csv", [5, 6], ends_on="31/03/2027"))
    assert plan.joiners == [("worker6@northbridge.example", "Children's Services/Assessment Team")]


async def test_the_change_team_sees_counts_and_a_team_lead_only_their_own_team_size(
    loaded: Core, tmp_path: Path,
) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "people")
    assert "No HR import or directory sync yet" in d.seen(CHANGE)[-1]
    await bring(loaded, hr_file(tmp_path / "staff.csv", [1, 2, 3, 4, 5, 6]))
    await bring(loaded, hr_file(tmp_path / "staff2.csv", [1, 2, 3, 4, 5]))

    await d.say(CHANGE, "people")
    text = d.seen(CHANGE)[-1]
    assert "People: 30 in 5 teams" in text  # 25 from the programme file and 5 imported
    assert "Children's Services / Assessment Team: 11" in text
    assert "Last HR import (staff2.csv), 30 Nov 2026 10:00 UTC: 0 joiners, 0 movers, 1 leavers" in text
    assert "worker" not in text  # counts, never names

    await d.say(CHANGE, "people changes")
    text = d.seen(CHANGE)[-1]
    assert "Leavers: 1" in text and "Joiners: 0" in text and "worker" not in text

    await d.say(LEAD, "people")
    text = d.seen(LEAD)[-1]
    assert "Assessment Team: 11 people" in text
    assert "Family Support" not in text and "Last" not in text
    await d.say(LEAD, "people changes")
    assert "only the change team can do that" in d.seen(LEAD)[-1]
    await d.say(PRACTITIONER, "people")
    assert "Sorry, only team leads or the change team can do that" in d.seen(PRACTITIONER)[-1]


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[FakeSlack]:
    """The fake Slack Web API behind the real Slack port (as in test_broadcast_audiences)."""
    fake = FakeSlack(retry_after=0)
    await fake.start()
    ws = Workspaces(SlackConfig(signing_secret="s", bot_token=BOT_TOKEN, api_url=fake.url))
    await ws.start()
    loaded.add_port(SlackPort(ws, Directory(ws)))
    yield fake
    await ws.close()
    await fake.close()


async def test_a_leaver_still_in_a_slack_user_group_gets_no_broadcast(
    loaded: Core, slack: FakeSlack, tmp_path: Path,
) -> None:
    await bring(loaded, hr_file(tmp_path / "a.csv", [5, 6]))
    await bring(loaded, hr_file(tmp_path / "b.csv", [5]))  # worker6 left; Slack not told yet
    members = [slack.add_user(f"worker{i}@northbridge.example") for i in (5, 6)]
    slack.usergroups["S0DUTY"] = [m.id for m in members]
    bid = await publish(loaded, f"members: slack:{TEAM}/usergroup:S0DUTY")
    await Sender(loaded, limiter=Limiter(FAST)).drain()
    assert dms_with_title(slack, "worker5@northbridge.example") == 1
    assert dms_with_title(slack, "worker6@northbridge.example") == 0
    assert (await service.status(loaded, bid)).total == 1
