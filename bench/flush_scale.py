"""What one flush costs at 100,000 and 200,000 staff (issue 22, target 6; docs/invariants.md
N4, N18, N21).

Each flusher hides which rows it wrote by giving every live row of its table a new version:
held account links, routes and time zones (bot/people/held.py: every `identities` row, and
every `people` row when a time zone is written), privacy notice rows (bot/privacy/notice.py:
on PostgreSQL every row deleted and laid down again) and the daily feedback counters
(bot/feedback/counts.py: since N40, the day's one sealed row, opened, added to and sealed
again). This seeds a scratch database with N people, one account each (with a DM route), a
notice row for every account but a reserve, and N/10 counters of the day in the day's row (a tenth of the staff sending feedback in one day is already far more
than any council sees), then calls each holder's own `flush` with 1 and with `--held` writes
held, and prints for each:

- seconds per flush (median of `--repeat` for 1 held; median and max of the series);
- rows the flush gave a new version (its table's live rows) and how many it wrote;
- PostgreSQL: WAL bytes (`pg_current_wal_lsn()` before and after; the server is shared, so
  another database's writes in the same seconds count too: the median is the figure to read),
  dead tuples and table size (heap, and with its indexes) after a series of `--flushes`
  flushes `--interval` seconds apart with autovacuum as the server has it (pgstattuple counts
  the dead tuples exactly; the autovacuum count comes from pg_stat_user_tables);
- SQLite: the file's size, and the write-ahead log's.

    .venv/bin/python bench/flush_scale.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/SCRATCH
        [--sizes 100000,200000] [--held 500] [--flushes 20] [--interval 5] [--fillfactor 100]
    .venv/bin/python bench/flush_scale.py --url sqlite+aiosqlite:////tmp/flush_scale.db ...

The `--url` database is emptied first. A quick check that it runs: `--sizes 2000 --flushes 3
--interval 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench.scratch import emptied  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.feedback import counts, sealed  # noqa: E402
from bot.feedback.counts import STAFF  # noqa: E402
from bot.people import held  # noqa: E402
from bot.privacy import notice  # noqa: E402
from storage.db import Database  # noqa: E402

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday at 9:00, in UTC as the programme's zone
WORKSPACE = "T0NORTHBRIDGE"


@dataclass
class _Clock:
    def now(self) -> datetime:
        return NOW


@dataclass(eq=False)
class BenchCore:
    """What the holders' `flush` functions use of a Core: its database, clock and settings."""

    db: Database
    clock: _Clock = field(default_factory=_Clock)
    settings: Settings = field(default_factory=Settings)
    secret: bytes = b"bench server key, not a real one"  # seals the day's counters

    def __hash__(self) -> int:
        return id(self)


def _uid(i: int) -> str:
    return f"U{i:08d}"


def _dm(i: int) -> str:
    return json.dumps({"platform": "slack", "workspace": WORKSPACE,
                       "conversation_id": f"D{i:08d}", "thread_id": None, "is_direct": True,
                       "data": []})


async def seed(db: Database, n: int, reserve: int) -> None:
    """n people with one account each (DM route stored), `reserve` more people with no
    account yet (first contacts), a notice row for every account but the last `reserve`, and
    n/10 counters of the day, in its one sealed row."""
    day = NOW.date()
    if not db.is_sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO people (id, email, display_name, tz, from_programme, source) "
                "SELECT 'p' || lpad(i::text, 8, '0'), 'person' || i || '@northbridge.example', "
                "'Staff Member ' || i, 'Europe/London', false, 'import' "
                "FROM generate_series(0, :m - 1) i"), {"m": n + reserve})
            await conn.execute(text(
                "INSERT INTO identities (platform, workspace, user_id, person_id, dm, reachable) "
                "SELECT 'slack', CAST(:w AS varchar), 'U' || lpad(i::text, 8, '0'), "
                "'p' || lpad(i::text, 8, '0'), "
                "json_build_object('platform', 'slack', 'workspace', CAST(:w AS varchar), "
                "'conversation_id', 'D' || lpad(i::text, 8, '0'), 'thread_id', null, "
                "'is_direct', true, 'data', json_build_array()), true "
                "FROM generate_series(0, :n - 1) i"), {"n": n, "w": WORKSPACE})
            await conn.execute(text(
                "INSERT INTO privacy_notices_shown (platform, workspace, user_id) "
                "SELECT 'slack', :w, 'U' || lpad(i::text, 8, '0') "
                "FROM generate_series(0, :n - 1) i ORDER BY random()"),
                {"n": n - reserve, "w": WORKSPACE})
            await conn.execute(text(_COUNTERS), _counters(n, day))
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for t in ("people", "identities", "privacy_notices_shown", "feedback_daily_counts"):
                await conn.execute(text(f"VACUUM ANALYZE {t}"))
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        return
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO people (id, email, display_name, tz, from_programme, source) "
            "VALUES (:id, :email, :name, 'Europe/London', 0, 'import')"),
            [{"id": f"p{i:08d}", "email": f"person{i}@northbridge.example",
              "name": f"Staff Member {i}"} for i in range(n + reserve)])
        await conn.execute(text(
            "INSERT INTO identities (platform, workspace, user_id, person_id, dm, reachable) "
            "VALUES ('slack', :w, :u, :p, :dm, 1)"),
            [{"w": WORKSPACE, "u": _uid(i), "p": f"p{i:08d}", "dm": _dm(i)} for i in range(n)])
        await conn.execute(text(
            "INSERT INTO privacy_notices_shown (platform, workspace, user_id) "
            "VALUES ('slack', :w, :u)"), [{"w": WORKSPACE, "u": _uid(i)}
                                          for i in range(n - reserve)])
        await conn.execute(text(_COUNTERS), _counters(n, day))


_COUNTERS = "INSERT INTO feedback_daily_counts (day, stamp, sealed) VALUES (:d, :s, :b)"


def _counters(n: int, day: date) -> dict[str, Any]:
    """The day's one counters row: n/10 people's counts, sealed (bot/feedback/sealed.py)."""
    return {"d": day, "s": "seeded", "b": sealed.seal(
        BenchCore.secret, f"{STAFF.name}|{day.isoformat()}",
        {f"{i:064x}": 1 for i in range(n // 10)})}


@dataclass
class Scenario:
    name: str
    tables: tuple[str, ...]  # the tables the flush gives a new version of every row
    hold: Callable[[BenchCore, int], None]  # hold k writes
    flush: Callable[[BenchCore], Awaitable[int]]


class Feeder:
    """Hands out what each scenario holds: new accounts (reserve people), time zones and
    notices (reserve accounts) and counts, never the same twice."""

    def __init__(self, n: int, reserve: int) -> None:
        self.n, self.reserve = n, reserve
        self.next_new = n  # reserve people without an account
        self.next_told = n - reserve  # accounts without a notice row
        self.next_tz = 0

    def links(self, core: BenchCore, k: int) -> None:
        h = held.held(core)  # type: ignore[arg-type]
        for i in range(self.next_new, self.next_new + k):
            account = ("slack", WORKSPACE, f"N{i:08d}")
            h.links[account] = f"p{i:08d}"
            h.route(account, {"platform": "slack", "workspace": WORKSPACE,
                              "conversation_id": f"D{i:08d}", "thread_id": None,
                              "is_direct": True, "data": []})
        self.next_new += k

    def zones_changed(self, core: BenchCore, k: int) -> None:
        h = held.held(core)  # type: ignore[arg-type]
        for i in range(self.next_tz, self.next_tz + k):
            h.tz[f"p{i:08d}"] = "Europe/Paris"
        self.next_tz += k

    def told(self, core: BenchCore, k: int) -> None:
        due = notice.unwritten(core)  # type: ignore[arg-type]
        for i in range(self.next_told, self.next_told + k):
            due.add(("slack", WORKSPACE, _uid(i)))
        self.next_told += k

    def sent(self, core: BenchCore, k: int) -> None:
        c = STAFF.counts(core)  # type: ignore[arg-type]
        for i in range(k):
            c.due[(NOW.date(), f"{(i * 7919) % max(1, self.n // 10):064x}")] = 1


async def _one(core: BenchCore, s: Scenario, k: int, feed: Callable[[BenchCore, int], None]
               ) -> tuple[float, int, int | None]:
    feed(core, k)
    db = core.db
    lsn = None
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            lsn = (await conn.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar_one()
    t0 = time.perf_counter()
    wrote = await s.flush(core)  # type: ignore[arg-type]
    took = time.perf_counter() - t0
    wal = None
    if lsn is not None:
        async with db.engine.connect() as conn:
            wal = int((await conn.execute(text(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(CAST(:a AS text) AS pg_lsn))"),
                {"a": lsn})).scalar_one())
    return took, wrote, wal


async def _table_facts(db: Database, tables: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async with db.engine.connect() as conn:
        for t in tables:
            if db.is_sqlite:
                live = (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                out[t] = {"live": live}
                continue
            st = (await conn.execute(text(
                "SELECT tuple_count, dead_tuple_count, pg_relation_size(:t), "
                "pg_total_relation_size(:t) FROM pgstattuple(:t)"), {"t": t})).one()
            av = (await conn.execute(text(
                "SELECT autovacuum_count, n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables "
                "WHERE relname = :t"), {"t": t})).one()
            out[t] = {"live": st[0], "dead": st[1], "heap_mb": st[2] / 1e6,
                      "total_mb": st[3] / 1e6, "autovacuums": av[0], "hot_upd": av[1],
                      "upd": av[2]}
    return out


def _sqlite_sizes(url: str) -> str:
    path = url.split(":///", 1)[1]
    size = os.path.getsize(path) / 1e6
    wal = os.path.getsize(path + "-wal") / 1e6 if os.path.exists(path + "-wal") else 0.0
    return f"file {size:.1f} MB, -wal {wal:.1f} MB"


async def run_size(url: str, n: int, k: int, flushes: int, interval: float, repeat: int,
                   fillfactor: int | None, only: str) -> None:
    if url.startswith("sqlite") and ":///" in url:  # a new file for each size
        for end in ("", "-wal", "-shm"):
            Path(url.split(":///", 1)[1] + end).unlink(missing_ok=True)
    db = await emptied(Database(url))
    await db.create_all() if db.is_sqlite else await db.upgrade()
    if fillfactor is not None and not db.is_sqlite:  # as before migration people_fillfactor
        async with db.engine.begin() as conn:
            for t in ("identities", "people"):
                await conn.execute(text(f"ALTER TABLE {t} SET (fillfactor = {fillfactor})"))
    reserve = k * (flushes + repeat + 2) + repeat
    t0 = time.perf_counter()
    await seed(db, n, reserve)
    print(f"\n== {n:,} people ({db.engine.dialect.name}); seeded in "
          f"{time.perf_counter() - t0:.1f} s; reserve {reserve:,} first contacts")
    core = BenchCore(db)
    feed = Feeder(n, reserve)
    scenarios = [
        (Scenario("links: new accounts + routes (held.py)", ("identities",),
                  feed.links, held.flush), feed.links),
        (Scenario("time zones (held.py)", ("people",),  # a zone alone: no identity row
                  feed.zones_changed, held.flush), feed.zones_changed),
        (Scenario("privacy notices (notice.py)", ("privacy_notices_shown",),
                  feed.told, notice.flush), feed.told),
        (Scenario("feedback counters (counts.py)", ("feedback_daily_counts",),
                  feed.sent, counts.flush), feed.sent),
    ]
    for s, fn in scenarios:
        if only and not any(word in s.name for word in only.split(",")):
            continue
        ones = [await _one(core, s, 1, fn) for _ in range(repeat)]
        secs1 = statistics.median(o[0] for o in ones)
        wal1 = [o[2] for o in ones if o[2] is not None]
        series: list[tuple[float, int, int | None]] = []
        if not db.is_sqlite:
            await asyncio.sleep(11)  # the single flushes' statistics reach the view first
        before = await _table_facts(db, s.tables)
        for i in range(flushes):
            started = time.monotonic()
            series.append(await _one(core, s, k, fn))
            if i < flushes - 1:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        if not db.is_sqlite:
            await asyncio.sleep(11)  # a backend's table statistics reach the view within 10 s
        facts = await _table_facts(db, s.tables)
        secs = [o[0] for o in series]
        wals = [o[2] for o in series if o[2] is not None]
        rows = sum(f["live"] for f in facts.values())
        print(f"-- {s.name}")
        print(f"   1 held:   {secs1:.3f} s, rows given a new version {rows:,}"
              + (f", WAL {statistics.median(wal1) / 1e6:.1f} MB" if wal1 else ""))
        print(f"   {k} held: median {statistics.median(secs):.3f} s, max {max(secs):.3f} s, "
              f"wrote {series[-1][1]} per flush"
              + (f", WAL median {statistics.median(wals) / 1e6:.1f} MB, "
                 f"max {max(wals) / 1e6:.1f} MB" if wals else ""))
        for t, f in facts.items():
            if db.is_sqlite:
                print(f"   after {flushes} flushes {interval:g} s apart: {t} {f['live']:,} rows")
                continue
            print(f"   after {flushes} flushes {interval:g} s apart: {t} live {f['live']:,}, "
                  f"dead {f['dead']:,}, heap {f['heap_mb']:.1f} MB, with indexes "
                  f"{f['total_mb']:.1f} MB (before: {before[t]['heap_mb']:.1f} / "
                  f"{before[t]['total_mb']:.1f}), autovacuums "
                  f"{f['autovacuums'] - before[t]['autovacuums']}, HOT updates "
                  f"{f['hot_upd'] - before[t]['hot_upd']:,} of "
                  f"{f['upd'] - before[t]['upd']:,} ")
        if s.tables == ("feedback_daily_counts",):  # the day's one row opens to every count
            day = (await STAFF.every(core)).get(NOW.date(), {})  # type: ignore[arg-type]
            sends = 1 * repeat + k * flushes
            assert sum(day.values()) == n // 10 + sends, (sum(day.values()), n // 10, sends)
            async with db.engine.connect() as conn:
                size = (await conn.execute(text(
                    "SELECT length(sealed) FROM feedback_daily_counts"))).scalar_one()
            print(f"   the day's row opened: {len(day):,} counters, {sum(day.values()):,} sends "
                  f"(seeded {n // 10:,} + {sends:,} flushed), sealed {size / 1e6:.2f} MB")
        if db.is_sqlite:
            print(f"   {_sqlite_sizes(url)}")
    await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="a scratch database (emptied first)")
    ap.add_argument("--sizes", default="100000,200000")
    ap.add_argument("--held", type=int, default=500)
    ap.add_argument("--flushes", type=int, default=20)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="scenarios whose name holds one of these words "
                    "(comma-separated: links,zones,notices,counters)")
    ap.add_argument("--fillfactor", type=int, default=None,
                    help="PostgreSQL: identities and people pages filled to this (100: as "
                         "before migration people_fillfactor; default: as migrated, 45)")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; fillfactor "
          f"{a.fillfactor or 'as migrated'}")
    for n in (int(x) for x in a.sizes.split(",")):
        await run_size(a.url, n, a.held, a.flushes, a.interval, a.repeat, a.fillfactor, a.only)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
