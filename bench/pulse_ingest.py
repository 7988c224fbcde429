"""Pulse answers stored per second through the dispatcher: 5,000 people x 5 questions on SQLite.

Every answer is a real ActionEvent through `core.handle` (dedup, person lookup, roles, the
pulse handler, the anonymous upsert, the card edited in place on a FakePort).

    .venv/bin/python bench/pulse_ingest.py [--people 5000] [--concurrency 1] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, insert, select  # noqa: E402

from adapters.fake.port import FakePort  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.model import ActionEvent, ConversationRef, RatingScale, UserRef  # noqa: E402
from bot.people.tables import Identity, Person, Team  # noqa: E402
from bot.pulse import cards, definition  # noqa: E402
from bot.pulse import service as pulse  # noqa: E402
from bot.pulse.tables import PulsePending, PulseRound, PulseTally  # noqa: E402
from staffvoice.tables import import_all_tables  # noqa: E402
from storage.db import Database  # noqa: E402

MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
QUESTIONS = ["shared-vision", "listened-to", "support", "workload", "confidence"]


async def seed(core: Core, port: FakePort, n: int) -> None:
    """n people in 20 teams who have used the bot before (DM known), and a 5-question survey."""
    async with core.db.session() as s:
        await s.execute(insert(Team), [{"id": f"team-{t}", "name": f"Team {t}"} for t in range(20)])
        people = [{"id": f"p{i:06d}", "email": f"worker{i}@bench.example", "display_name": "",
                   "team_id": f"team-{i % 20}", "from_programme": True} for i in range(n)]
        await s.execute(insert(Person), people)
        await s.execute(insert(Identity), [{
            "platform": "fake", "workspace": port.workspace, "user_id": f"U-{p['email']}",
            "person_id": p["id"], "reachable": True, "updated_at": MONDAY_10,
            "dm": {"platform": "fake", "workspace": port.workspace,
                   "conversation_id": port.dm_id(f"U-{p['email']}"), "thread_id": None,
                   "is_direct": True, "data": []},
        } for p in people])
        raw = {"id": "bench", "title": "Bench pulse", "audience": "everyone",
               "schedule": {"every": "weekly", "day": "mon", "time": "10:00"},
               "questions": [{"id": q, "kind": "likert5", "text": f"{q}?"} for q in QUESTIONS]}
        d = definition.check(raw, lambda p, m: print("bad definition:", p, m), teams=set())
        assert d is not None
        await pulse.store_definition(s, d, source="programme")


async def answer_all(core: Core, port: FakePort, n: int, concurrency: int) -> float:
    """Every person taps an answer to each question in turn; returns elapsed seconds."""
    sem = asyncio.Semaphore(concurrency)

    async def person(i: int) -> None:
        email = f"worker{i}@bench.example"
        user = UserRef("fake", port.workspace, f"U-{email}", email=email)
        conv = ConversationRef("fake", port.workspace, port.dm_id(f"U-{email}"))
        async with sem:
            for q in range(len(QUESTIONS)):
                posted = port.messages(conv.conversation_id)[-1]
                scale = next((b for b in posted.message.blocks if isinstance(b, RatingScale)),
                             None)
                if scale is None:
                    raise SystemExit(f"no question to answer; the bot said: {posted.message.plain}")
                await core.handle(ActionEvent(f"bench-{i}-{q}", user, conv,
                                              action_id=scale.action_id, value=str(1 + (i + q) % 5),
                                              message=posted.ref), port)

    # Time spent inside the pulse answer handler itself, apart from the dispatcher around it.
    inside = [0.0]
    act = next(a for a in core.router.actions if a.prefix == cards.ANSWER)

    async def timed(ctx: object) -> None:
        t = time.perf_counter()
        try:
            await act.handler(ctx)  # type: ignore[arg-type]
        finally:
            inside[0] += time.perf_counter() - t

    core.router.actions[core.router.actions.index(act)] = replace(act, handler=timed)
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(person(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    per = 1000 / (n * len(QUESTIONS))
    print(f"per answer: {elapsed * per:.2f} ms in all, {inside[0] * per:.2f} ms in the pulse "
          "handler (check, store, next card), the rest in the dispatcher")
    # CPU seconds of this process (all threads): comparable even on a busy shared machine.
    print(f"cpu {time.process_time() - cpu:.1f} s for {elapsed:.1f} s of wall time")
    return elapsed


async def dispatcher_only(core: Core, port: FakePort, n: int, concurrency: int) -> float:
    """Events/s through core.handle to a handler that does nothing: the floor under any feature."""

    async def noop(ctx: object) -> None:
        return None

    core.router.action("bench.noop", noop)  # type: ignore[arg-type]
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        email = f"worker{i % 5000}@bench.example"
        user = UserRef("fake", port.workspace, f"U-{email}", email=email)
        async with sem:
            await core.handle(ActionEvent(f"noop-{i}", user, None, action_id="bench.noop",
                                          value="1"), port)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def main(n: int, concurrency: int, url: str | None, compare: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(url or f"sqlite+svinline:///{tmp}/bench.db")
        import_all_tables()
        await db.create_all()
        core = Core(db, settings=Settings(secret_key="bench-only"), clock=FakeClock(MONDAY_10))
        port = FakePort()
        core.add_port(port)
        await core.start()
        await seed(core, port, n)
        t0 = time.perf_counter()
        invited = (await core.tick())["pulse"] - 1  # the round opening counts as one
        while (more := (await core.tick())["pulse"]) > 0:  # a tick invites a bounded batch
            invited += more
        print(f"round opened and {invited} people invited in {time.perf_counter() - t0:.1f} s")
        statements = [0]
        event.listen(db.engine.sync_engine, "before_cursor_execute",
                     lambda *a: statements.__setitem__(0, statements[0] + 1))
        elapsed = await answer_all(core, port, n, concurrency)
        print(f"{statements[0] / (n * len(QUESTIONS)):.1f} SQL statements per answer (all of core.handle)")
        async with db.session() as s:
            stored = (await s.execute(select(func.count()).select_from(PulsePending))).scalar_one()
        # Closing opens every sealed answer and writes the round's counts, in one transaction.
        t0 = time.perf_counter()
        async with db.session() as s:
            rnd = (await s.execute(select(PulseRound))).scalar_one()
            await pulse.close_round(s, rnd, MONDAY_10, core.secret)
        closing = time.perf_counter() - t0
        async with db.session() as s:
            kept = (await s.execute(select(func.sum(PulseTally.n)))).scalar_one()
        print(f"round closed in {closing:.2f} s: {kept} answers kept as counts per cell")
        baseline = await dispatcher_only(core, port, min(n, 2000), concurrency) if compare else 0.0
        await db.dispose()
    if baseline:
        print(f"for comparison, core.handle with a handler that does nothing: "
              f"{baseline:.0f} events/s")
    expected = n * len(QUESTIONS)
    print(f"{stored} of {expected} answers stored in {elapsed:.1f} s through core.handle "
          f"(concurrency {concurrency}, {db.engine.dialect.name})")
    print(f"{stored / elapsed:.0f} answers/s")
    if stored != expected:
        raise SystemExit("some answers were not stored")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--url", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--compare", action="store_true",
                    help="also measure core.handle alone (a handler that does nothing)")
    a = ap.parse_args()
    asyncio.run(main(a.people, a.concurrency, a.url, a.compare))
