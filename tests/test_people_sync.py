"""People from the directory: Slack's Web API and Microsoft Graph, against local fakes that page,
throttle (429 with Retry-After) and answer in the documented shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from adapters import directory as people_sync
from bot.config import Settings
from bot.core import Core
from bot.people.tables import PeopleRun, Person, Team
from staffvoice.commands.people import main as people_cli
from tests.conftest import MONDAY_10
from tests.fakes import graph_api
from tests.fakes.directory_limits import Budget
from tests.fakes.graph_api import FakeGraph
from tests.fakes.slack_directory import TOKEN, FakeSlackDirectory

DUTY = "Children's Services/Front Door (MASH)/Out of Hours"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackDirectory]:
    fake = FakeSlackDirectory(max_limit=2, budget=Budget(2, 1.0))  # pages of 2; Tier 2, scaled
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph(page_size=2, budget=Budget(3, 1.0))
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(autouse=True)
def _today(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's clock reads the system time; pin it to the tests' Monday."""
    from bot.clock import SystemClock

    monkeypatch.setattr(SystemClock, "now", lambda self: MONDAY_10)


def slack_env(monkeypatch: pytest.MonkeyPatch, fake: FakeSlackDirectory) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake.url)
    monkeypatch.setenv("STAFFVOICE_SLACK_SYNC_GROUPS", f"S0DUTY={DUTY}")
    monkeypatch.setenv("STAFFVOICE_SLACK_SYNC_PACE", "0")


def graph_env(monkeypatch: pytest.MonkeyPatch, fake: FakeGraph, **extra: str) -> None:
    prefix = "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__"
    monkeypatch.setenv(prefix + "TENANTID", graph_api.TENANT)
    monkeypatch.setenv(prefix + "CLIENTID", graph_api.CLIENT_ID)
    monkeypatch.setenv(prefix + "CLIENTSECRET", graph_api.CLIENT_SECRET)
    monkeypatch.setenv("STAFFVOICE_GRAPH_URL", fake.graph_url)
    monkeypatch.setenv("STAFFVOICE_GRAPH_LOGIN_URL", fake.login_url)
    monkeypatch.setenv("STAFFVOICE_GRAPH_GROUPS", "g-childrens")
    for k, v in extra.items():
        monkeypatch.setenv(k, v)


async def sync(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str
               ) -> tuple[int, str, str]:
    code = await people_cli(settings, ["sync", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


async def people(core: Core) -> dict[str, Person]:
    async with core.db.session() as s:
        return {p.email: p for p in (await s.execute(select(Person))).scalars()}


async def test_slack_members_are_read_page_by_page_through_a_429_and_leavers_follow_deactivation(
    loaded: Core, settings: Settings, slack: FakeSlackDirectory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    slack_env(monkeypatch, slack)
    duty = [slack.add(f"duty{i}@northbridge.example", f"Duty Worker {i}") for i in (1, 2)]
    slack.add("worker3@northbridge.example", "Agency Worker 3", tz="Europe/Dublin")
    leaving = slack.add("worker4@northbridge.example", "Agency Worker 4")
    slack.add("visitor@partner.example", "Visiting Guest", guest=True)
    slack.add("bot@northbridge.example", "Rota Bot", bot=True)
    slack.add("gone@northbridge.example", "Long Gone", deleted=True)
    slack.groups["S0DUTY"] = [m.id for m in duty]

    code, out, err = await sync(settings, capsys, "slack", "--dry-run")
    assert code == 0, err
    assert f"joiner: duty1@northbridge.example -> {DUTY}" in out
    assert "joiner: worker3@northbridge.example -> (no team)" in out
    assert "note: 1 guest account(s) skipped: guests never take part" in out
    assert "visitor@partner.example" not in out and "bot@" not in out and "gone@" not in out
    assert "dry run of Slack workspace: 4 joiners" in out
    assert "duty1@northbridge.example" not in await people(loaded)
    assert slack.budget.refused >= 1  # a 429 was waited out...
    assert slack.called("users.list") - slack.budget.refused == 4  # ...and all 4 pages read

    slack.budget = Budget(100, 1.0)  # throttling shown; the rest of the story at full speed
    code, out, err = await sync(settings, capsys, "slack")
    assert code == 0 and "Slack workspace: applied 4 joiners" in out
    stored = await people(loaded)
    assert stored["worker3@northbridge.example"].tz == "Europe/Dublin"
    assert stored["duty1@northbridge.example"].source == "slack"
    async with loaded.db.session() as s:
        team = await s.get(Team, stored["duty1@northbridge.example"].team_id)
    assert team is not None and team.name == "Out of Hours" and team.parent_id == "front-door"

    leaving.deleted = True
    code, out, err = await sync(settings, capsys, "slack")
    assert "applied 0 joiners, 0 movers, 1 leavers" in out
    assert (await people(loaded))["worker4@northbridge.example"].left_on == loaded.clock.now().date()
    code, out, err = await sync(settings, capsys, "slack")
    assert "Slack workspace: no changes" in out


async def test_slack_cannot_change_someone_the_programme_file_describes(
    loaded: Core, settings: Settings, slack: FakeSlackDirectory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    slack_env(monkeypatch, slack)
    p1 = slack.add("practitioner1@northbridge.example", "Sam Nickname")
    slack.groups["S0DUTY"] = [p1.id]
    code, out, err = await sync(settings, capsys, "slack")
    assert code == 0, err
    assert ("conflict: Slack user U00000002, user group: practitioner1@northbridge.example is in "
            "Children's Services/Assessment Team in the programme file") in out
    p = (await people(loaded))["practitioner1@northbridge.example"]
    assert (p.team_id, p.display_name) == ("assessment", "Social Worker A")


async def test_a_wrong_slack_token_is_one_clear_line_and_nothing_changes(
    loaded: Core, settings: Settings, slack: FakeSlackDirectory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    slack_env(monkeypatch, slack)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
    before = set(await people(loaded))
    code, out, err = await sync(settings, capsys, "slack")
    assert code == 2
    assert err.strip() == "error: Slack refused usergroups.users.list: invalid_auth; nothing was changed"
    assert set(await people(loaded)) == before


async def test_graph_members_of_nested_groups_through_paging_and_throttling(
    loaded: Core, settings: Settings, graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    graph_env(monkeypatch, graph, STAFFVOICE_GRAPH_TEAM_PARENT="Children's Services")
    graph.groups["g-childrens"] = ["g-edge"]  # a nested group, flattened by transitiveMembers
    for i in range(1, 5):
        graph.add(f"worker{i}@northbridge.example", f"Agency Worker {i}", department="Edge of Care",
                  groups=("g-childrens",))
    graph.add("lead.edge@northbridge.example", "Edge of Care Lead", department="Edge of Care",
              groups=("g-edge",))
    disabled = graph.add("worker9@northbridge.example", "Agency Worker 9",
                         department="Edge of Care", groups=("g-edge",))
    graph.add("guest_partner.example#EXT#@northbridge.example", "Guest", userType="Guest",
              groups=("g-childrens",))

    code, out, err = await sync(settings, capsys, "teams")
    assert code == 0, err
    assert "Microsoft Entra ID: applied 6 joiners" in out and "1 new teams" in out
    assert "note: 1 guest account(s) skipped" in out
    assert graph.budget.refused >= 1  # 429s were waited out
    assert sum("skiptoken" in r for r in graph.requests) >= 3  # and every page followed
    stored = await people(loaded)
    assert "guest_partner.example#ext#@northbridge.example" not in stored
    async with loaded.db.session() as s:
        team = await s.get(Team, stored["lead.edge@northbridge.example"].team_id)
    assert team is not None and (team.name, team.parent_id) == ("Edge of Care", "childrens-services")

    graph.budget = Budget(100, 1.0)
    disabled.accountEnabled = False
    code, out, err = await sync(settings, capsys, "teams", "--dry-run")
    assert "leaver: worker9@northbridge.example" in out
    code, out, err = await sync(settings, capsys, "teams")
    assert "1 leavers" in out
    assert (await people(loaded))["worker9@northbridge.example"].left_on == MONDAY_10.date()
    code, out, err = await sync(settings, capsys, "teams")
    assert "Microsoft Entra ID: no changes" in out


async def test_graph_teams_can_follow_the_management_chain(
    loaded: Core, settings: Settings, graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    graph_env(monkeypatch, graph, STAFFVOICE_GRAPH_TEAMS_FROM="manager")
    head = graph.add("head.edge@northbridge.example", "Head of Edge", groups=("g-childrens",))
    mgr = graph.add("mgr.edge@northbridge.example", "Edge Manager", groups=("g-childrens",),
                    manager=head.id)
    graph.add("worker1@northbridge.example", "Agency Worker 1", groups=("g-childrens",),
              manager=mgr.id)
    code, out, err = await sync(settings, capsys, "teams", "--dry-run")
    assert code == 0, err
    assert "joiner: worker1@northbridge.example -> Team of Head of Edge/Team of Edge Manager" in out
    code, out, err = await sync(settings, capsys, "teams")
    assert "applied 3 joiners" in out and "2 new teams" in out
    stored = await people(loaded)
    async with loaded.db.session() as s:
        team = await s.get(Team, stored["worker1@northbridge.example"].team_id)
    assert team is not None and team.lead_person_id == stored["mgr.edge@northbridge.example"].id
    code, out, err = await sync(settings, capsys, "teams")
    assert "Microsoft Entra ID: no changes" in out


async def test_a_wrong_graph_secret_is_one_clear_line(
    loaded: Core, settings: Settings, graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    graph_env(monkeypatch, graph)
    monkeypatch.setenv("CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET", "wrong")
    code, out, err = await sync(settings, capsys, "teams")
    assert code == 2
    assert err.strip() == ("error: Microsoft Entra ID refused the app's credentials "
                           "(invalid_client); nothing was changed")


async def test_the_nightly_sync_is_a_scheduler_job_only_when_configured(
    loaded: Core, slack: FakeSlackDirectory,
) -> None:
    assert people_sync.install(loaded, {}) == []
    assert "people-sync" not in loaded.router.tickers
    slack.add("worker1@northbridge.example", "Agency Worker 1")
    env = {"STAFFVOICE_PEOPLE_SYNC": "slack", "SLACK_BOT_TOKEN": TOKEN,
           "SLACK_API_URL": slack.url, "STAFFVOICE_SLACK_SYNC_PACE": "0"}
    assert people_sync.install(loaded, env) == ["people sync: slack nightly at 02:30"]
    assert "people-sync" in loaded.router.tickers
    night = datetime(2026, 12, 1, 2, 31, tzinfo=UTC)  # 02:31 in London (GMT in winter)
    loaded.clock.set(night)  # type: ignore[attr-defined]
    done = await loaded.tick(night)
    assert done["people-sync"] == 1
    assert (await people(loaded))["worker1@northbridge.example"].source == "slack"
    again = await loaded.tick(night)
    assert again["people-sync"] == 0  # once a night
    async with loaded.db.session() as s:
        run = (await s.execute(select(PeopleRun))).scalar_one()
    assert (run.source, run.outcome, run.counts["joiners"]) == ("slack", "applied", 1)
    from staffvoice.serve.mounts import attached_ports

    bare = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    async with attached_ports(bare, env) as lines:  # what `staffvoice schedule run-due` uses
        assert "people sync: slack nightly at 02:30" in lines
        assert "people-sync" in bare.router.tickers
    assert people_sync.install(loaded, {"STAFFVOICE_PEOPLE_SYNC": "workday"}) == [
        "people sync: off (STAFFVOICE_PEOPLE_SYNC: 'workday' is not slack or teams)"]


async def test_graph_that_keeps_throttling_gives_a_clear_error_and_applies_nothing(
    loaded: Core, settings: Settings, graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The reader waits out 429s through the one retry policy (storage/retry.py) and gives up
    after its tries with a clear message; a half-read listing is never applied."""
    from dataclasses import replace

    from adapters.directory import graph as graph_reader

    # The policy as shipped, with its waits shrunk so the test does not sleep for minutes.
    monkeypatch.setattr(graph_reader, "THROTTLING", replace(graph_reader.THROTTLING, base=0.001,
                                                             cap=0.001))
    graph_env(monkeypatch, graph)
    for i in range(1, 6):
        graph.add(f"worker{i}@northbridge.example", f"Agency Worker {i}", department="Edge of Care",
                  groups=("g-childrens",))
    graph.budget = Budget(1, 600.0)  # one page, then Retry-After: 600 for ten minutes
    def rows(ps: dict[str, Person]) -> set[tuple[str, str | None, object]]:
        return {(e, p.team_id, p.left_on) for e, p in ps.items()}

    before = rows(await people(loaded))
    code, out, err = await sync(settings, capsys, "teams")
    assert code != 0
    assert "Microsoft Graph kept throttling; try again later" in err
    assert "Traceback" not in err + out
    assert graph.budget.refused == graph_reader.RETRIES  # every try was made, then no more
    assert sum("skiptoken" in r for r in graph.requests) == graph_reader.RETRIES
    assert rows(await people(loaded)) == before
    assert not any(e.startswith("worker") for e, _, _ in before)
