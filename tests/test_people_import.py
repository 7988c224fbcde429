"""An HR officer brings people in from a file: CSV (Excel's "CSV UTF-8", with its BOM) or XLSX.

Each story runs `staffvoice people import` in this process against real files written here,
and checks what the officer reads and what is stored (SQLite, or PostgreSQL in CI).
"""

from __future__ import annotations

import csv
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.core import Core
from bot.people.tables import PeopleRun, Person, PersonRole, Team
from staffvoice.commands.people import main as people_cli
from tests.conftest import MONDAY_10

HEADER = ["E-mail Address", "Full name", "Team", "Line manager", "Roles", "Time Zone",
          "Work pattern", "End date"]
CS = "Children's Services"


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] = HEADER,
              bom: bool = True) -> Path:
    """The way Excel writes "CSV UTF-8 (Comma delimited)": a BOM, then CRLF lines."""
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[Any]], *, header: list[str] = HEADER) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def staff(n: int, team: str = f"{CS}/Assessment Team/Team 2", start: int = 1) -> list[list[str]]:
    return [[f"worker{i}@northbridge.example", f"Agency Worker {i}", team, "", "", "", "", ""]
            for i in range(start, start + n)]


async def run(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str
              ) -> tuple[int, str, str]:
    code = await people_cli(settings, ["import", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


async def stored(core: Core) -> dict[str, Person]:
    async with core.db.session() as s:
        return {p.email: p for p in (await s.execute(select(Person))).scalars()}


async def snapshot(core: Core) -> tuple[set[tuple[Any, ...]], ...]:
    """Every stored person, team and role, to compare before and after."""
    async with core.db.session() as s:
        people = {(p.id, p.email, p.display_name, p.team_id, p.tz, p.source, p.left_on, p.ends_on)
                  for p in (await s.execute(select(Person))).scalars()}
        teams = {(t.id, t.name, t.parent_id, t.lead_person_id)
                 for t in (await s.execute(select(Team))).scalars()}
        roles = set((await s.execute(select(PersonRole.person_id, PersonRole.role))).all())
    return people, teams, roles


async def runs(core: Core) -> int:
    async with core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(PeopleRun))).scalar_one())


@pytest.fixture(autouse=True)
def _today(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's clock reads the system time; pin it to the tests' Monday."""
    from bot.clock import SystemClock

    monkeypatch.setattr(SystemClock, "now", lambda self: MONDAY_10)


async def test_an_excel_csv_with_a_bom_is_previewed_imported_and_a_second_import_changes_nothing(
    loaded: Core, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    first = write_csv(tmp_path / "staff.csv", [
        *staff(3),
        ["lead.team2@northbridge.example", "Team Two Manager", f"{CS}/Assessment Team/Team 2", "",
         "team lead", "Europe/London", "mon-thu 08:00-18:00", ""],
        ["student1@northbridge.example", "Social Work Student", "", "lead.team2@northbridge.example",
         "", "", "", "2027-03-31"],
    ])
    before = await snapshot(loaded)

    code, out, err = await run(settings, capsys, str(first), "--dry-run")
    assert code == 0, err
    assert f"joiner: worker1@northbridge.example -> {CS}/Assessment Team/Team 2" in out
    assert f"new team: {CS}/Assessment Team/Team 2" in out
    assert "dry run of staff.csv: 5 joiners" in out and "nothing was changed" in out
    assert await snapshot(loaded) == before  # nothing written
    assert await runs(loaded) == 0

    code, out, err = await run(settings, capsys, str(first))
    assert code == 0, err
    assert "staff.csv: applied 5 joiners" in out
    people = await stored(loaded)
    w1, lead, student = (people["worker1@northbridge.example"],
                         people["lead.team2@northbridge.example"],
                         people["student1@northbridge.example"])
    async with loaded.db.session() as s:
        team2 = await s.get(Team, w1.team_id)
        assert team2 is not None and team2.name == "Team 2" and team2.parent_id == "assessment"
        assert team2.lead_person_id == lead.id and team2.source == "import"
    assert student.team_id == team2.id  # the team their manager leads
    assert w1.source == "import" and w1.left_on is None and w1.display_name == "Agency Worker 1"
    assert lead.work_pattern == {"start": "08:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu"]}
    assert student.ends_on == date(2027, 3, 31)

    code, out, err = await run(settings, capsys, str(first))
    assert code == 0 and "staff.csv: no changes" in out

    # A week later: worker2 moved, worker3 left, worker1 joined the change team, one joiner.
    second = write_csv(tmp_path / "staff2.csv", [
        ["worker1@northbridge.example", "Agency Worker 1", f"{CS}/Assessment Team/Team 2", "",
         "change team", "", "", ""],
        ["worker2@northbridge.example", "Agency Worker 2", "family-support", "", "", "", "", ""],
        ["lead.team2@northbridge.example", "Team Two Manager", f"{CS}/Assessment Team/Team 2", "",
         "team lead", "Europe/London", "mon-thu 08:00-18:00", ""],
        ["student1@northbridge.example", "Social Work Student", "", "lead.team2@northbridge.example",
         "", "", "", "2027-03-31"],
        ["worker9@northbridge.example", "Agency Worker 9", "Front Door (MASH)", "", "", "", "", ""],
    ])
    code, out, err = await run(settings, capsys, str(second), "--dry-run")
    assert code == 0, err
    assert "joiner: worker9@northbridge.example -> Children's Services/Front Door (MASH)" in out
    assert ("mover: worker2@northbridge.example: Children's Services/Assessment Team/Team 2 -> "
            "Children's Services/Family Support") in out
    assert "leaver: worker3@northbridge.example" in out
    assert "role change: worker1@northbridge.example: +change_team" in out
    assert "1 joiners, 1 movers, 1 leavers, 1 role changes" in out
    assert (await stored(loaded))["worker3@northbridge.example"].left_on is None

    code, out, err = await run(settings, capsys, str(second))
    assert code == 0 and "applied 1 joiners, 1 movers, 1 leavers, 1 role changes" in out
    people = await stored(loaded)
    assert people["worker3@northbridge.example"].left_on == MONDAY_10.date()  # kept, marked
    assert people["worker2@northbridge.example"].team_id == "family-support"
    async with loaded.db.session() as s:
        assert await s.get(PersonRole, (people["worker1@northbridge.example"].id, "change_team"))
    code, out, err = await run(settings, capsys, str(second))
    assert "staff2.csv: no changes" in out
    assert await runs(loaded) == 4


async def test_an_xlsx_file_with_dates_and_numbers_is_read_like_a_csv(
    loaded: Core, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    book = write_xlsx(tmp_path / "hr.xlsx", [
        ["worker1@northbridge.example", "Agency Worker 1", "assessment", None, None, None, None,
         MONDAY_10.replace(tzinfo=None) + timedelta(days=90)],
        ["WORKER2@Northbridge.example ", "Agency Worker 2", "Assessment Team", None, "Safeguarding lead",
         "Europe/London", None, None],
    ])
    code, out, err = await run(settings, capsys, str(book))
    assert code == 0, err
    assert "applied 2 joiners" in out
    people = await stored(loaded)
    assert people["worker1@northbridge.example"].ends_on == MONDAY_10.date() + timedelta(days=90)
    assert people["worker2@northbridge.example"].team_id == "assessment"
    code, out, _ = await run(settings, capsys, str(book))
    assert "hr.xlsx: no changes" in out


async def test_columns_are_matched_loosely_and_map_names_the_rest(
    loaded: Core, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    f = write_csv(tmp_path / "export.csv", [["worker1@northbridge.example", "assessment", "x"]],
                  header=["  STAFF MAIL ", "Service_Unit", "Payroll"], bom=False)
    code, _, err = await run(settings, capsys, str(f))
    assert code == 2
    assert err.strip() == ("error: export.csv has no email column (columns found: 'STAFF MAIL', "
                           "'Service_Unit', 'Payroll'); name one 'email' or use --map \"YOUR "
                           "COLUMN=email\"; nothing was changed")
    code, out, err = await run(settings, capsys, str(f), "--map", "staff mail=email",
                               "--map", "Service Unit=team")
    assert code == 0, err
    assert "note: ignored columns: Payroll" in out
    assert (await stored(loaded))["worker1@northbridge.example"].team_id == "assessment"


@pytest.mark.parametrize("case", ["missing email column", "duplicate email", "manager loop",
                                  "unknown team parent", "10 MB of junk", "not UTF-8",
                                  "bad values"])
async def test_bad_input_gets_a_clear_message_and_nothing_is_written(
    loaded: Core, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    f = tmp_path / "bad.csv"
    if case == "missing email column":
        write_csv(f, [["Worker", "assessment"]], header=["Name", "Team"])
        expected = ["error: bad.csv has no email column (columns found: 'Name', 'Team')"]
    elif case == "duplicate email":
        write_csv(f, [*staff(2), staff(1)[0]])
        expected = ["problem: row 4, E-mail Address: worker1@northbridge.example appears twice "
                    "(also row 2)"]
    elif case == "manager loop":
        write_csv(f, [
            ["a@northbridge.example", "A", "", "b@northbridge.example", "", "", "", ""],
            ["b@northbridge.example", "B", "", "c@northbridge.example", "", "", "", ""],
            ["c@northbridge.example", "C", "", "a@northbridge.example", "", "", "", ""],
            ["d@northbridge.example", "D", "", "nobody@northbridge.example", "", "", "", ""],
        ])
        expected = ["problem: row 2, Line manager: the management chain loops: a@northbridge.example"
                    " -> b@northbridge.example -> c@northbridge.example -> a@northbridge.example",
                    "problem: row 5, Line manager: no person with email nobody@northbridge.example"]
    elif case == "unknown team parent":
        write_csv(f, [*staff(1), *staff(1, "Adult Services/Reablement", start=2)])
        expected = ["problem: row 3, Team: unknown parent team 'Adult Services' in "
                    "'Adult Services/Reablement'"]
    elif case == "10 MB of junk":
        f.write_bytes(os.urandom(10 * 1024 * 1024))
        expected = ["error: bad.csv is not"]
    elif case == "not UTF-8":
        f.write_bytes("Email,Name\r\nworker1@northbridge.example,Zoë Example\r\n".encode("cp1252"))
        expected = ["error: bad.csv is not UTF-8 text (byte 42); in Excel choose Save As > "
                    "'CSV UTF-8 (Comma delimited)'; nothing was changed"]
    else:
        write_csv(f, [["w@northbridge.example", "W", "assessment", "", "boss", "Mars/Olympus",
                       "sometimes", "next year"], ["", "No Email", "", "", "", "", "", ""]])
        expected = ["problem: row 2, Roles: unknown role 'boss'",
                    "problem: row 2, Time Zone: 'Mars/Olympus' is not a time zone",
                    "problem: row 2, Work pattern: 'sometimes' should look like mon-fri 09:00-17:00",
                    "problem: row 2, End date: 'next year' should be a date like 2027-03-31",
                    "problem: row 3, E-mail Address: missing"]
    before = await snapshot(loaded)
    code, out, err = await run(settings, capsys, str(f))
    assert code == 2
    text = out + err
    for line in expected:
        assert line in text, text
    assert "Traceback" not in text
    for line in err.strip().splitlines():  # one line, not a stack of them
        assert line.startswith("error: ") and line.endswith("nothing was changed")
    assert len(err.strip().splitlines()) == 1
    assert await snapshot(loaded) == before
    assert await runs(loaded) == 0


async def test_a_person_from_the_programme_file_is_never_overwritten_by_a_file(
    loaded: Core, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    f = write_csv(tmp_path / "hr.csv", [
        ["practitioner1@northbridge.example", "Somebody Else", "family-support", "", "", "", "", ""],
        *staff(1),
    ])
    code, out, err = await run(settings, capsys, str(f))
    assert code == 0, err
    assert ("conflict: row 2, Team: practitioner1@northbridge.example is in "
            "Children's Services/Assessment Team in the programme file; this says "
            "Children's Services/Family Support; kept the programme file's") in out
    assert "row 2, Full name: practitioner1@northbridge.example is 'Social Worker A'" in out
    assert "applied 1 joiners" in out
    p1 = (await stored(loaded))["practitioner1@northbridge.example"]
    assert (p1.team_id, p1.display_name, p1.source) == ("assessment", "Social Worker A", "programme")
    # And the programme's people are not leavers of an import that does not list them.
    f2 = write_csv(tmp_path / "hr2.csv", staff(1))
    code, out, _ = await run(settings, capsys, str(f2))
    assert "hr2.csv: no changes" in out


async def test_a_failure_while_writing_leaves_nothing_half_done(
    loaded: Core, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.people import directory, importing

    f = write_csv(tmp_path / "staff.csv", staff(40))
    before = await snapshot(loaded)

    def broken(**kw: Any) -> None:  # the run record is the last thing written
        raise RuntimeError("disk full")

    monkeypatch.setattr(directory, "PeopleRun", broken)
    with pytest.raises(RuntimeError):
        await directory.run(loaded.db, importing.read_file(f), loaded.clock.now())
    assert await snapshot(loaded) == before


def test_the_staffvoice_command_imports_the_example_file(db: Any, db_url: str, tmp_path: Path
                                                         ) -> None:
    """`db` empties the PostgreSQL database first."""
    from tests.conftest import EXAMPLE, ROOT
    from tests.test_console_cli import run as staffvoice

    assert staffvoice(["programme", "load", str(EXAMPLE)], db_url, tmp_path).returncode == 0
    example = str(ROOT / "examples" / "people.csv")
    dry = staffvoice(["people", "import", example, "--dry-run"], db_url, tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "dry run of people.csv: 6 joiners, 0 movers, 0 leavers" in dry.stdout
    assert "problem" not in dry.stdout and "conflict" not in dry.stdout
    assert "applied 6 joiners" in staffvoice(["people", "import", example], db_url, tmp_path).stdout
    again = staffvoice(["people", "import", example], db_url, tmp_path)
    assert again.stdout.strip() == "people.csv: no changes"
