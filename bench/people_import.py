"""HR file import at county scale: 50,000 people in 400 teams, then a week's changes.

Writes two CSV files (Excel's "CSV UTF-8", with a BOM) into a scratch directory and imports
them into a fresh database through the same path as `staffvoice people import` (read the file,
plan the difference, apply it in one transaction):

1. the first file: `--people` people in `--teams` teams under team paths, one lead per team;
2. the second: `--joiners` new people, `--movers` people in another team, `--leavers` left out.

Prints seconds for each import and the peak resident memory of this process. Targets on SQLite
(issue 18): first under 15 s, second under 5 s, peak under 300 MB. Run it on a quiet machine:

    .venv/bin/python bench/people_import.py [--people 50000] [--teams 400] [--joiners 2000]
        [--movers 3000] [--leavers 1500] [--url postgresql+asyncpg://...] [--xlsx]

A quick check that it still runs (not a measurement): `--people 500` scales the changes down.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from bot.people import directory, importing  # noqa: E402
from bot.people.tables import Person, Team  # noqa: E402
from storage.db import Database  # noqa: E402

HEADER = ["Email", "Name", "Team", "Roles", "Time zone", "Ends on"]
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def team_paths(n: int) -> list[str]:
    """n teams, in 8 directorates of one (fictional) council."""
    return [f"Northbridge County Council/Directorate {i % 8 + 1}/Team {i + 1}" for i in range(n)]


def rows_for(ids: list[int], team_of: dict[int, str], leads: set[int]) -> list[list[str]]:
    return [[f"person{i}@northbridge.example", f"Staff Member {i}", team_of[i],
             "team lead" if i in leads else "", "Europe/London", ""] for i in ids]


def write(path: Path, rows: list[list[str]], xlsx: bool) -> Path:
    if xlsx:
        import openpyxl

        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet()
        ws.append(HEADER)
        for r in rows:
            ws.append(r)
        path = path.with_suffix(".xlsx")
        wb.save(path)
        return path
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(HEADER)
        w.writerows(rows)
    return path


async def timed_import(db: Database, path: Path) -> tuple[float, directory.Plan]:
    started = time.perf_counter()
    plan = await directory.run(db, importing.read_file(path), NOW)
    elapsed = time.perf_counter() - started
    if not plan.ok:
        raise SystemExit(f"the generated file has problems: {plan.problems[:3]}")
    return elapsed, plan


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def main(args: argparse.Namespace) -> None:
    scale = args.people / 50_000
    joiners = args.joiners if args.joiners is not None else round(2_000 * scale)
    movers = args.movers if args.movers is not None else round(3_000 * scale)
    leavers = args.leavers if args.leavers is not None else round(1_500 * scale)
    rnd = random.Random(18)
    paths = team_paths(args.teams)
    team_of = {i: paths[i % len(paths)] for i in range(args.people + joiners)}
    leads = set(range(len(paths)))  # the first person of each team leads it
    with tempfile.TemporaryDirectory() as d:
        url = args.url or f"sqlite+svinline:///{d}/bench.db"
        db = Database(url)
        await db.upgrade()
        first = write(Path(d) / "first.csv", rows_for(list(range(args.people)), team_of, leads),
                      args.xlsx)
        staying = [i for i in range(args.people) if i not in leads]
        gone = set(rnd.sample(staying, leavers))
        moved = rnd.sample([i for i in staying if i not in gone], movers)
        for i in moved:
            team_of[i] = paths[(paths.index(team_of[i]) + 1 + rnd.randrange(len(paths) - 1))
                               % len(paths)]
        second_ids = [i for i in range(args.people) if i not in gone] + \
            list(range(args.people, args.people + joiners))
        second = write(Path(d) / "second.csv", rows_for(second_ids, team_of, leads), args.xlsx)

        t1, p1 = await timed_import(db, first)
        t2, p2 = await timed_import(db, second)
        async with db.session() as s:
            people = (await s.execute(select(func.count()).select_from(Person))).scalar_one()
            teams = (await s.execute(select(func.count()).select_from(Team))).scalar_one()
        await db.dispose()
    fmt = "XLSX" if args.xlsx else "CSV"
    print(f"database: {'SQLite' if url.startswith('sqlite') else 'PostgreSQL'}, {fmt}")
    print(f"first import:  {args.people:,} people, {len(paths)} teams: {t1:.2f} s "
          f"({p1.summary()}) target < 15 s")
    print(f"second import: {joiners:,} joiners, {movers:,} movers, {leavers:,} leavers: "
          f"{t2:.2f} s ({p2.summary()}) target < 5 s")
    print(f"stored: {people:,} people, {teams:,} teams")
    print(f"peak memory: {peak_mb():.0f} MB (target < 300 MB)")
    ok = (len(p2.joiners), len(p2.movers), len(p2.leavers)) == (joiners, movers, leavers)
    print("difference as generated: " + ("yes" if ok else "NO"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--teams", type=int, default=400)
    ap.add_argument("--joiners", type=int)
    ap.add_argument("--movers", type=int)
    ap.add_argument("--leavers", type=int)
    ap.add_argument("--url", help="a database URL (default: a scratch SQLite file)")
    ap.add_argument("--xlsx", action="store_true", help="write and read XLSX instead of CSV")
    asyncio.run(main(ap.parse_args()))
