"""Server time of each dashboard page: 1,000,000 pulse answers, 300 teams, 500 milestones and
10,000 feedback items; p50 and p95 per page on SQLite and, with --pg URL, PostgreSQL.

    .venv/bin/python bench/dashboard.py [--answers 1000000] [--teams 300] [--milestones 500]
        [--feedback 10000] [--rounds 3] [--requests 30] [--pg postgresql+asyncpg://...]

Builds a scratch database (migrated like production; a PostgreSQL URL must name a scratch
database: its schema is dropped), fills it with fictional data through SQLAlchemy Core (a
closed round keeps its answers as counts per reporting cell and sums per group, as the pulse
feature's close leaves them, see bench/seed.py), serves the real application (`staffvoice.serve.app.build_app`) on
loopback, signs in as a leader, a team lead, the change team and a safeguarding lead with
one-time links, and requests every page they may see. "Server time" is measured by a
middleware around the whole application (sessions, guard, page, template), so client and
network time are not in it. Target (issue 19): p95 under 150 ms on both databases.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402

from bench import seed  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from staffvoice.tables import import_all_tables  # noqa: E402
from storage.base import Base, new_id  # noqa: E402
from storage.db import Database  # noqa: E402

KINDS = ["likert5"] * 6 + ["enps", "text"]
ROLES = ["practitioner"] * 90 + ["change_team", "leader"] + ["safeguarding_lead"] * 2
THEMES = ["workload", "supervision", "recording", "tools", "family-networks"]
STATUSES = ["on_track", "at_risk", "off_track", "done", "not_started"]
NOW = datetime.now(UTC)


def T(name: str) -> Any:
    return Base.metadata.tables[name]


async def _insert(conn: Any, table: str, rows: list[dict[str, Any]], batch: int = 5000) -> None:
    for i in range(0, len(rows), batch):
        await conn.execute(insert(T(table)), rows[i:i + batch])


async def fill(db: Database, args: argparse.Namespace) -> dict[str, str]:
    """The fictional programme; returns the emails to sign in as, by role."""
    rng = random.Random(7)
    per_person = len(KINDS)
    respondents = args.answers // per_person // args.rounds
    invited = int(respondents * 1.1)
    teams = seed.team_tree(args.teams, min_areas=2)
    leaves = seed.leaf_teams(teams, min_areas=2)
    people = [(new_id(), f"person{i}@bench.example", f"Person {i}", rng.choice(leaves)) for i in range(invited)]
    roles = {pid: rng.choice(ROLES) for pid, *_ in people}
    leads: dict[str, str] = {}
    for pid, _e, _n, team in people:
        leads.setdefault(team, pid)
    parents = {t: p for t, _, p in teams}
    async with db.engine.begin() as conn:
        await _insert(conn, "teams", [{"id": t, "name": n, "parent_id": p, "source": "programme"}
                                      for t, n, p in teams])
        await _insert(conn, "people", [{"id": pid, "email": e, "display_name": n, "team_id": t,
                                        "from_programme": True, "source": "programme"}
                                       for pid, e, n, t in people])
        await _insert(conn, "person_roles", [{"person_id": pid, "role": r, "granted_in_chat": False}
                                             for pid, r in roles.items() if r != "practitioner"])
        for team, pid in leads.items():
            await conn.execute(T("teams").update().where(T("teams").c.id == team).values(lead_person_id=pid))
        await _insert(conn, "themes", [{"id": t, "name": t.replace("-", " ").capitalize(), "description": ""}
                                       for t in THEMES])
        await conn.execute(insert(T("settings")), [{"key": "programme", "value": {
            "name": "Bench programme", "vision": "A fictional vision for the benchmark.",
            "timezone": "Europe/London", "anonymity": {"min_group": 5, "min_comments": 10}}}])
        # pulse: one survey, `rounds` closed rounds kept as counts, as the close leaves them
        await _insert(conn, "pulse_surveys", [{"id": "bench", "title": "Bench pulse", "intro": "",
                      "audience": {"everyone": True}, "schedule": {"every": "weekly", "day": "mon", "time": "10:00"},
                      "timezone": "Europe/London", "remind_after_min": 2880, "close_after_min": 6180,
                      "anonymity": "anonymous", "paused": False, "active": True, "source": "programme"}])
        qids = [(new_id(), k) for k in KINDS]
        await _insert(conn, "pulse_questions", [{"id": q, "survey_id": "bench", "key": f"q{i}", "position": i,
                                                 "kind": k, "text": f"Question {i}", "options": {}, "active": True}
                                                for i, (q, k) in enumerate(qids)])
        main = {pid: ("team_lead" if leads.get(team) == pid else roles[pid]) for pid, _e, _n, team in people}
        where = seed.cells_of([(pid, team, main[pid]) for pid, _e, _n, team in people], parents)
        answering = [pid for pid, *_ in people[:respondents]]
        for r in range(args.rounds):
            rid = new_id()
            await _insert(conn, "pulse_rounds", [seed.round_row(
                rid, r + 1, NOW - timedelta(weeks=args.rounds - r), [q for q, _ in qids],
                invited=invited, respondents=respondents)])
            for table, rows in seed.closed_round(rng, rid, where, answering, qids, parents).items():
                await _insert(conn, table, rows)
        # roadmap: 500 milestones, owners, 5 updates each, early wins
        ms = []
        for i in range(args.milestones):
            ms.append({"id": f"m-{i}", "title": f"Milestone {i}", "description": "", "team_id": rng.choice(leaves),
                       "due": date.today() + timedelta(days=rng.randint(-60, 400)), "status": rng.choice(STATUSES),
                       "progress": rng.randint(0, 100), "position": i, "created_at": NOW - timedelta(days=90),
                       "stale_since": NOW if rng.random() < 0.1 else None})
        await _insert(conn, "milestones", ms)
        await _insert(conn, "milestone_owners", [{"milestone_id": m["id"], "person_id": rng.choice(people)[0],
                                                  "position": 0} for m in ms])
        await _insert(conn, "milestone_updates", [{"id": new_id(), "milestone_id": m["id"], "person_id": rng.choice(people)[0],
                                                   "at": NOW - timedelta(days=7 * k), "status": m["status"],
                                                   "progress": m["progress"], "prev_status": m["status"],
                                                   "prev_progress": m["progress"], "note": "Fictional update."}
                                                  for m in ms for k in range(5)])
        await _insert(conn, "early_wins", [{"id": f"w-{i}", "title": f"Early win {i}", "status": "delivered",
                                            "delivered_on": date.today() - timedelta(days=i), "position": i}
                                           for i in range(20)])
        # feedback: 10,000 items, 2% urgent with alerts to two leads, some answered
        sg_leads = [pid for pid, r in roles.items() if r == "safeguarding_lead"][:2]
        items = [{"id": new_id(), "day": date.today() - timedelta(days=rng.randint(0, 365)),
                  "theme_id": rng.choice(THEMES), "text": "Fictional feedback about the change.",
                  "status": rng.choice(["new", "read", "in_progress", "done", "closed"]),
                  "urgent": rng.random() < 0.02, "concerns": [],
                  "released": True} for _ in range(args.feedback)]  # past days' releases
        await _insert(conn, "feedback_items", items)
        await _insert(conn, "feedback_alerts", [{"item_id": it["id"], "person_id": lead, "status": "sent", "attempts": 1}
                                                for it in items if it["urgent"] for lead in sg_leads])
        await _insert(conn, "feedback_responses", [{"id": new_id(), "theme_id": t, "title": f"We acted on {t}",
                                                    "text": "Fictional response.", "day": date.today()} for t in THEMES])
        # broadcasts: 10 recent, 1,000 deliveries each
        author = next(pid for pid, r in roles.items() if r == "change_team")
        for b in range(10):
            bid = new_id()
            await _insert(conn, "broadcasts", [{"id": bid, "author_person_id": author, "title": f"Broadcast {b}",
                                                "text": "Fictional.", "audience": {"everyone": True}, "state": "done",
                                                "created_at": NOW - timedelta(days=b), "total": 1000}])
            await _insert(conn, "broadcast_deliveries", [{"id": new_id(), "broadcast_id": bid, "recipient": f"r{k}",
                                                          "state": "sent" if k % 50 else "final_failed",
                                                          "error": None if k % 50 else "user not found",
                                                          "next_attempt_at": NOW} for k in range(1000)])
    email = {pid: e for pid, e, _n, _t in people}
    return {
        "leader": email[next(p for p, r in roles.items() if r == "leader")],
        "change team": email[author],
        "safeguarding lead": email[sg_leads[0]],
        "team lead": email[next(iter(leads.values()))],
    }


PAGES = {
    "leader": ["/app/", "/app/roadmap", "/app/roadmap/m-1", "/app/pulse", "/app/pulse/export.csv"],
    "team lead": ["/app/team", "/app/pulse", "/app/roadmap?team=area-0"],
    "change team": ["/app/feedback", "/app/feedback?status=all", "/app/broadcasts"],
    "safeguarding lead": ["/app/safeguarding"],
}

# Downloads sent as they are written: the server's time to its first byte (the whole is the
# server time above) and the client's (in this process and event loop: on SQLite, whose reads
# run on the loop, it waits for the server to pause), and the size.
STREAMED: dict[str, list[tuple[float, float, int]]] = {"/app/pulse/export.csv": []}


async def measure(url: str, people: dict[str, str], requests: int, tune: bool = True) -> dict[str, list[float]]:
    import aiohttp
    from aiohttp import web

    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health
    from staffvoice.serve.lifecycle import tune_gc, untune_gc
    from staffvoice.web.auth import create_login_link

    db = Database(url)
    core = Core(db, settings=Settings(database_url=url, secret_key="bench-" * 8), clock=SystemClock())
    await core.start()
    app, _ = build_app(core, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(core))
    times: dict[str, list[float]] = {}
    results: dict[str, list[float]] = {}

    @web.middleware
    async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
        t0 = request["t0"] = time.perf_counter()
        resp = await handler(request)
        if resp.status == 200:
            times.setdefault(request.path_qs, []).append(time.perf_counter() - t0)
        return resp

    async def headers_sent(request: web.Request, resp: web.StreamResponse) -> None:
        if request.path_qs in STREAMED:  # a download's headers go just before its first bytes
            first_byte[request.path_qs] = time.perf_counter() - request["t0"]

    first_byte: dict[str, float] = {}
    app.middlewares.insert(0, timed)
    app.on_response_prepare.append(headers_sent)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    # As `staffvoice serve` does once it is up (staffvoice/serve/lifecycle.py): without it,
    # full collections walk every module and mapper (and this process's seeding leftovers) and
    # make the tail, which a served dashboard does not have. --untuned-gc measures without.
    threshold = gc.get_threshold()
    if tune:
        tune_gc()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for role, email in people.items():
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                link = await create_login_link(core, email, base)
                page = await (await http.get(link)).text()
                csrf = page.split('name="csrf" value="')[1].split('"')[0]
                await http.post(f"{base}/app/auth/link", data={"csrf": csrf, "token": link.split("token=")[1]})
                times.clear()  # the sign-in itself is not a page
                for path in PAGES[role]:
                    for _ in range(requests):
                        t0 = time.perf_counter()
                        resp = await http.get(base + path)
                        assert resp.status == 200, (role, path, resp.status)
                        size = len(await resp.content.readany())
                        first = time.perf_counter() - t0
                        while chunk := await resp.content.readany():
                            size += len(chunk)
                        if path in STREAMED:
                            STREAMED[path].append((first_byte.pop(path), first, size))
                    results[f"{role}: {path}"] = times.pop(path)
    finally:
        if tune:
            untune_gc(threshold)
        await runner.cleanup()
        await db.dispose()
    return results


def _pct(ts: list[float], p: float) -> float:
    return ts[min(len(ts) - 1, int(round(p * (len(ts) - 1))))]


def report(name: str, times: dict[str, list[float]]) -> None:
    print(f"\n{name}: server time per page, ms (p50 / p95 / max over {len(next(iter(times.values())))} requests)")
    worst = 0.0
    for page, ts in times.items():
        ts = sorted(ts)
        p95 = _pct(ts, 0.95)
        if page.split(": ", 1)[1] not in STREAMED:  # a download is not a page
            worst = max(worst, p95)
        print(f"  {page:<48} {statistics.median(ts) * 1000:8.1f} {p95 * 1000:8.1f} {ts[-1] * 1000:8.1f}")
    for path, seen in STREAMED.items():
        if seen:
            server = sorted(f for f, _, _ in seen)
            client = sorted(c for _, c, _ in seen)
            print(f"  {path}: first byte, ms p50 / p95 / max: server "
                  + " / ".join(f"{_pct(server, p) * 1000:.1f}" for p in (0.5, 0.95, 1.0))
                  + ", client " + " / ".join(f"{_pct(client, p) * 1000:.1f}" for p in (0.5, 0.95, 1.0))
                  + f" ({seen[-1][2] / 1e6:.1f} MB)")
            seen.clear()
    print(f"  worst p95 of the pages: {worst * 1000:.1f} ms (target < 150 ms: {'met' if worst < 0.150 else 'NOT met'}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


async def run(url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    import_all_tables()
    db = Database(url)
    try:
        if not db.is_sqlite:
            async with db.engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await db.upgrade()
        t0 = time.perf_counter()
        people = await fill(db, args)
        if not db.is_sqlite:
            async with db.engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
        print(f"filled in {time.perf_counter() - t0:.1f} s: {args.answers:,} answers in {args.rounds} rounds, "
              f"{args.teams} teams, {args.milestones} milestones, {args.feedback:,} feedback items")
    finally:
        await db.dispose()
    return await measure(url, people, args.requests, tune=not args.untuned_gc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=1_000_000)
    ap.add_argument("--teams", type=int, default=300)
    ap.add_argument("--milestones", type=int, default=500)
    ap.add_argument("--feedback", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--untuned-gc", action="store_true",
                    help="leave the garbage collector as Python starts it (serve tunes it)")
    ap.add_argument("--pg", default="", help="a scratch PostgreSQL database URL (its schema is dropped)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        report("SQLite", asyncio.run(run(f"sqlite+svinline:///{d}/bench.db", args)))
    if args.pg:
        report("PostgreSQL", asyncio.run(run(args.pg, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
