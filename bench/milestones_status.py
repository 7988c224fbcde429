"""CPU per "status" (roadmap overview) and "what's at risk?" request, SQLite.

    .venv/bin/python bench/milestones_status.py [--calls 2000] [--updates 20000] [--out FILE] [--profile FILE]
        [--url postgresql+asyncpg://postgres@127.0.0.1/sv_bench]  (a scratch database: emptied)

Builds a scratch database (migrated like production), loads examples/programme.yaml, records a
few chat updates (so milestones have authored updates), then calls the real handlers
(`bot.milestones.feature.status` and `.at_risk`) `--calls` times each with a minimal context:
the handler's own database work, the service functions and the cards, without the dispatcher
or a platform. Prints ms per call; `--out` writes the rendered replies, to compare two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch import emptied  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bot.clock import FakeClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.milestones import feature, service  # noqa: E402
from bot.model import plain_text  # noqa: E402
from bot.people.tables import Person  # noqa: E402
from bot.programme import loader  # noqa: E402
from storage.db import Database  # noqa: E402

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "programme.yaml"


class StubCtx:
    """What the two handlers use of `bot.core.Ctx`: sessions, a connection, now, reply."""

    def __init__(self, core: Core) -> None:
        self.core, self.now = core, NOW
        self.sent: list[Any] = []

    def session(self) -> Any:
        return self.core.db.session()

    @asynccontextmanager
    async def transaction(self) -> Any:
        async with self.core.db.transaction() as conn:
            yield conn

    async def reply(self, msg: Any) -> None:
        self.sent.append(msg)


async def pile_up(core: Core, n: int) -> None:
    """`n` more updates spread over every milestone and the past year (a long-running roadmap)."""
    import random

    from sqlalchemy import insert

    from bot.milestones.tables import Milestone, MilestoneUpdate

    rnd = random.Random(7)
    async with core.db.session() as s:
        ids = list((await s.execute(select(Milestone.id))).scalars())
    rows = [{"id": f"u{i:08d}", "milestone_id": rnd.choice(ids), "person_id": None,
             "at": NOW - timedelta(days=30 + rnd.random() * 335), "status": "on_track",
             "progress": rnd.randrange(100), "prev_status": "on_track", "prev_progress": 0,
             "note": "", "source": "chat"} for i in range(n)]
    async with core.db.transaction() as conn:
        for i in range(0, n, 5000):
            await conn.execute(insert(MilestoneUpdate), rows[i:i + 5000])


async def build(url: str) -> Core:
    db = await emptied(Database(url))
    await db.upgrade()
    core = Core(db, settings=Settings(database_url=url, secret_key="bench"), clock=FakeClock(NOW))
    await core.start()
    await loader.load(db, EXAMPLE.read_text(), core.router)
    async with db.session() as s:
        by = {p.email: p for p in (await s.execute(select(Person))).scalars()}
        for mid, email, st, prog, note, days in [
            ("recording-templates", "lead.frontdoor@northbridge.example", "at_risk", 75,
             "Templates in test", 3),
            ("family-network-meetings", "changeofficer@northbridge.example", "on_track", 40, "", 9),
            ("recording-templates", "lead.frontdoor@northbridge.example", "off_track", 72,
             "Vendor slipped", 1),
        ]:
            m = await service.get(s, mid)
            assert m is not None
            await service.record_update(s, m, by[email].id, status=st, progress=prog, note=note,
                                        at=NOW - timedelta(days=days))
    return core


async def run(calls: int, out: str | None, profile: str | None, url: str | None,
              updates: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        core = await build(url or f"sqlite+svinline:///{tmp}/bench.db")
        if updates:
            await pile_up(core, updates)
        ctx = StubCtx(core)
        rendered = []
        for name, fn in (("status", feature.status), ("at risk", feature.at_risk)):
            for _ in range(50):  # warm caches (statements, settings)
                await fn(ctx, "")  # type: ignore[arg-type]
            rendered.append(f"== {name}\n{plain_text(ctx.sent[-1])}\n")
            prof = cProfile.Profile() if profile else None
            t0, c0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            for _ in range(calls):
                await fn(ctx, "")  # type: ignore[arg-type]
            if prof:
                prof.disable()
                prof.dump_stats(f"{profile}.{name.replace(' ', '_')}")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            ctx.sent.clear()
            print(f"{name:8s} {calls} calls: {wall / calls * 1000:.3f} ms wall, "
                  f"{cpu / calls * 1000:.3f} ms CPU per call")
        await core.db.dispose()
    if out:
        Path(out).write_text("".join(rendered))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--out")
    ap.add_argument("--profile")
    ap.add_argument("--url", help="a scratch PostgreSQL database (its schema is dropped)")
    ap.add_argument("--updates", type=int, default=0,
                    help="this many more (older) updates spread over the milestones")
    a = ap.parse_args()
    asyncio.run(run(a.calls, a.out, a.profile, a.url, a.updates))


if __name__ == "__main__":
    main()
