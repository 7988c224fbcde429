"""How long all group results of one pulse round take: 1,000,000 answers across 300 teams, SQLite.

A closed round keeps its answers as counts per reporting cell and as sums per group of cells
(bot/pulse/tables.py, bot/pulse/summary.py), so the fill computes the cells as a round's opening
does and the counts as its closing does (bench/seed.py), then the report reads only those.

    .venv/bin/python bench/report_speed.py [--answers 1000000] [--teams 300] [--trend 20]
        [--repeat 5] [--keep DB]

Builds a scratch database (migrated like production), fills it with fictional data straight
through the driver (fast), then times `reports.service.round_results` (every group: the whole,
300 teams with their sub-teams, 5 roles; every question; the anonymity engine) a few times,
each time computed afresh (the per-process cache of closed rounds' results is emptied first).
With `--trend N` it fills N closed rounds of `--answers` answers each and also times a group's
trend over them as chat and `staffvoice report chart --rounds N` ask for it (`service.trend`,
one question, last N rounds; target < 0.2 s for 20). The dashboard's pulse page, which draws
trends too, is timed through the real page by `bench/dashboard.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import seed  # noqa: E402
from storage.base import new_id  # noqa: E402
from storage.db import Database  # noqa: E402

KINDS = ["likert5"] * 7 + ["enps", "yesno", "text"]
ROLES = ["practitioner"] * 90 + ["team_lead"] * 4 + ["change_team", "leader"] + ["safeguarding_lead"] * 4


async def migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.dispose()


def _insert(con: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    values = [{k: (json.dumps(v) if isinstance(v, list | dict) else
                   v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v)
               for k, v in r.items()} for r in rows]
    con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                    f" ({', '.join(':' + c for c in cols)})", values)


def fill(path: str, answers: int, teams: int, rounds: int = 1, seed_: int = 7) -> str:
    """Fictional organisation, `rounds` closed rounds of `answers` answers each; returns the
    last round's id."""
    rng = random.Random(seed_)
    per_person = len(KINDS)
    respondents = answers // per_person
    invited = int(respondents * 1.1)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA journal_mode=MEMORY")
    team_rows = seed.team_tree(teams)
    con.executemany("INSERT INTO teams (id, name, parent_id) VALUES (?, ?, ?)", team_rows)
    leaves = seed.leaf_teams(team_rows)
    people = []
    for i in range(invited):
        people.append((new_id(), f"person{i}@bench.example", f"Person {i}", rng.choice(leaves)))
    con.executemany(
        "INSERT INTO people (id, email, display_name, team_id, from_programme) VALUES (?, ?, ?, ?, 0)",
        people)
    roles = [(pid, rng.choice(ROLES)) for pid, *_ in people]
    con.executemany("INSERT INTO person_roles (person_id, role, granted_in_chat) VALUES (?, ?, 0)",
                    [r for r in roles if r[1] not in ("practitioner", "team_lead")])
    leads: dict[str, str] = {}
    by_id = {p[0]: p[3] for p in people}
    for pid, role in roles:
        if role == "team_lead" and by_id[pid] not in leads:
            leads[by_id[pid]] = pid
    con.executemany("UPDATE teams SET lead_person_id = ? WHERE id = ?",
                    [(pid, t) for t, pid in leads.items()])
    con.execute(
        "INSERT INTO pulse_surveys (id, title, intro, audience, schedule, timezone, remind_after_min,"
        " close_after_min, anonymity, paused, active, source) VALUES"
        " ('bench', 'Bench pulse', '', ?, ?, 'Europe/London', 2880, 6180, 'anonymous', 0, 1, 'programme')",
        (json.dumps({"everyone": True}), json.dumps({"every": "weekly", "day": "mon", "time": "10:00"})))
    qids = []
    for pos, kind in enumerate(KINDS):
        qid = new_id()
        qids.append((qid, kind))
        con.execute("INSERT INTO pulse_questions (id, survey_id, key, position, kind, text, options, active)"
                    " VALUES (?, 'bench', ?, ?, ?, ?, '{}', 1)", (qid, f"q{pos}", pos, kind, f"Question {pos}"))
    role_of = dict(roles)
    main = {pid: ("team_lead" if leads.get(team) == pid else role_of[pid])
            for pid, _, _, team in people}
    parents = {t: p for t, _, p in team_rows}
    where = seed.cells_of([(pid, team, main[pid]) for pid, _, _, team in people], parents)
    answering = [pid for pid, *_ in people[:respondents]]
    last = datetime(2026, 11, 23, 10, tzinfo=UTC)
    for number in range(1, rounds + 1):
        rid = new_id()
        opens = last - timedelta(weeks=rounds - number)
        _insert(con, "pulse_rounds", [seed.round_row(rid, number, opens, [q for q, _ in qids],
                                                     invited=invited, respondents=respondents)])
        for table, rows in seed.closed_round(rng, rid, where, answering, qids, parents).items():
            _insert(con, table, rows)
        con.commit()
    count = rounds * respondents * per_person
    tallies, cells, summaries, comments = (con.execute(f"SELECT COUNT(*) FROM {t} WHERE round_id = ?", (rid,))
                                           .fetchone()[0] for t in ("pulse_tallies", "pulse_cells",
                                                                    "pulse_summaries", "pulse_comments"))
    size = con.execute("SELECT SUM(LENGTH(counts)) FROM pulse_summaries WHERE round_id = ?", (rid,)).fetchone()[0]
    con.execute("ANALYZE")
    con.close()
    print(f"filled: {count:,} answers in {rounds} round(s); the last kept as {tallies + cells:,} count rows "
          f"(tallies and cells), {summaries} summary rows ({size / 1000:.0f} kB) and {comments:,} comments; "
          f"{respondents:,} respondents of {invited:,} asked, {len(team_rows)} teams")
    return rid


Timed = Callable[[Any], Awaitable[Any]]


async def _timed(db: Database, repeat: int, work: Timed) -> tuple[list[tuple[float, float]], Any]:
    """(wall, CPU) seconds per run of `work(session)`, each computed afresh; CPU time counts
    every thread of this process."""
    from bot.reports import service

    times, out = [], None
    for _ in range(repeat):
        service._CACHE.clear()  # the first computation is what is measured, never a cache hit
        t0, c0 = time.perf_counter(), time.process_time()
        async with db.session() as s:
            out = await work(s)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times, out


def _line(what: str, times: list[tuple[float, float]], target: float | None = None) -> str:
    wall = [w for w, _ in times]
    cpu = [c for _, c in times]
    verdict = "" if target is None else \
        f" (target < {target:g} s: {'met' if min(wall) < target else 'NOT met'})"
    return (f"{what}: best {min(wall):.3f} s, median {statistics.median(wall):.3f} s wall over "
            f"{len(times)} runs; CPU best {min(cpu):.3f} s{verdict}")


async def measure(url: str, round_id: str, repeat: int, trend: int, answers: int) -> None:
    from bot.reports import service
    from bot.reports.anonymity import ALL, team_key

    db = Database(url)
    try:
        async with db.session() as s:
            info = await service.round_info(s, round_id)
            assert info is not None
            qid = info.question_ids[0]

        async def results(s: Any) -> Any:
            info = await service.round_info(s, round_id)
            return await service.round_results(s, info)

        await _timed(db, 1, results)  # warm: statements compiled, modules imported
        times, res = await _timed(db, repeat, results)
        shown = sum(g.shown for g in res.groups.values())
        print(f"groups: {len(res.groups)} ({shown} shown), questions per group: {len(KINDS)}")
        target = 0.1 if answers <= 1_000_000 else 0.2
        what = "all group results for one round" + (" (against the previous)" if trend > 1 else "")
        print(_line(what, times, target))
        if trend > 1:
            for group in (ALL, team_key("team-1")):
                async def chat(s: Any, group: str = group) -> Any:
                    return await service.trend(s, "bench", qid, group, last=trend)


                await _timed(db, 1, chat)
                times, t = await _timed(db, repeat, chat)
                assert len(t.points) == trend, t
                print(_line(f"{trend}-round trend of one question for {group}, as chat asks", times, 0.2))
    finally:
        await db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=1_000_000, help="answers per round")
    ap.add_argument("--teams", type=int, default=300)
    ap.add_argument("--trend", type=int, default=1, help="closed rounds, and time a trend over them")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="keep (or reuse) the database at this path")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = args.keep or str(Path(d) / "bench.db")
        url = f"sqlite+svinline:///{path}"
        if not Path(path).exists():
            asyncio.run(migrate(url))
            t0 = time.perf_counter()
            rid = fill(path, args.answers, args.teams, max(1, args.trend))
            print(f"fill took {time.perf_counter() - t0:.1f} s")
        else:
            rid = sqlite3.connect(path).execute(
                "SELECT id FROM pulse_rounds ORDER BY number DESC LIMIT 1").fetchone()[0]
        asyncio.run(measure(url, rid, args.repeat, max(1, args.trend), args.answers))
    # The machine is shared: CPU time shows what the work costs when the cores are free.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
