"""The programme file: validated with lines and fields, loaded idempotently, exported back."""

from __future__ import annotations

import yaml
from sqlalchemy import func, select

from bot.core import Core
from bot.people.tables import Identity, Person, PersonRole, Team, Theme
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from tests.conftest import EXAMPLE


async def counts(core: Core) -> dict[str, int]:
    out = {}
    async with core.db.session() as s:
        for table in (Person, Team, Theme, PersonRole, Identity):
            out[table.__tablename__] = (await s.execute(select(func.count()).select_from(table))).scalar_one()
    return out


async def test_example_loads_and_loading_twice_changes_nothing(core: Core) -> None:
    text = EXAMPLE.read_text()
    loaded = await loader.load(core.db, text, core.router)
    assert {"programme", "organisation", "themes"} <= set(loaded)
    first = await counts(core)
    assert first["people"] >= 20 and first["teams"] == 5 and first["themes"] == 5
    first_export = await loader.export(core.db, core.router)
    await loader.load(core.db, text, core.router)
    assert await counts(core) == first
    assert await loader.export(core.db, core.router) == first_export


async def test_editing_and_reloading_updates_without_duplicates(core: Core) -> None:
    text = EXAMPLE.read_text()
    await loader.load(core.db, text, core.router)
    before = await counts(core)
    edited = text.replace("name: Social Worker A", "name: Senior Social Worker A").replace(
        "{id: tools, name: Practice tools and training}", "{id: tools, name: Tools}"
    )
    await loader.load(core.db, edited, core.router)
    assert await counts(core) == before
    async with core.db.session() as s:
        p = (await s.execute(select(Person).where(Person.email == "practitioner1@northbridge.example"))).scalar_one()
        assert p.display_name == "Senior Social Worker A"
        assert (await s.get(Theme, "tools")).name == "Tools"  # type: ignore[union-attr]


async def test_export_round_trips(core: Core) -> None:
    await loader.load(core.db, EXAMPLE.read_text(), core.router)
    exported = await loader.export(core.db, core.router)
    data = yaml.safe_load(exported)
    assert data["programme"]["name"].startswith("Northbridge")
    # Loading the export into the same database changes nothing, and exports the same.
    await loader.load(core.db, exported, core.router)
    assert await loader.export(core.db, core.router) == exported


def test_every_problem_is_reported_with_its_line_and_field(core: Core) -> None:
    bad = """programme:
  name: Test
  timezone: Mars/Olympus
  anonymity: {min_group: 2}
organisation:
  teams:
    - {id: a, name: A, lead: nobody@example.org}
    - {id: a, name: Again}
  people:
    - {email: not-an-email, team: zzz}
colour: blue
"""
    try:
        loader.validate(bad, core.router)
    except ProgrammeError as e:
        problems = e.problems
    else:
        raise AssertionError("bad file accepted")
    text = "\n".join(problems)
    assert "line 3, programme.timezone: 'Mars/Olympus' is not a time zone" in text
    assert "line 4, programme.anonymity.min_group: must be at least 3" in text
    assert "line 7, organisation.teams[0].lead: 'nobody@example.org' is not a person" in text
    assert "line 8, organisation.teams[1].id: team 'a' appears twice" in text
    assert "line 10, organisation.people[0].email: 'not-an-email' is not an email address" in text
    assert "line 11, colour: unknown section" in text


def test_broken_yaml_is_a_clear_error(core: Core) -> None:
    try:
        loader.validate("programme:\n  name: [unclosed\n", core.router)
    except ProgrammeError as e:
        assert e.problems[0].startswith("line ")
        assert "not valid YAML" in e.problems[0]
    else:
        raise AssertionError("broken YAML accepted")


async def test_a_bad_file_loads_nothing(core: Core) -> None:
    try:
        await loader.load(core.db, "programme: {name: X}\norganisation: {teams: [{id: BAD}]}\n", core.router)
    except ProgrammeError:
        pass
    assert (await counts(core))["teams"] == 0


def test_a_date_that_does_not_exist_is_a_line_numbered_problem(core: Core) -> None:
    try:
        loader.validate("programme:\n  name: X\nmilestones:\n  - {id: a, due: 2027-13-01}\n", core.router)
    except ProgrammeError as e:
        assert e.problems == ["line 4: '2027-13-01' is not a valid date"]
    else:
        raise AssertionError("impossible date accepted")
