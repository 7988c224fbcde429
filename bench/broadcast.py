"""Broadcast bench: 10,000 recipients against a local rate-limited platform, with kills.

    .venv/bin/python bench/broadcast.py --db postgresql+asyncpg://postgres@127.0.0.1/sv_bench

The fake platform enforces `--rate` sends/s per workspace (Teams: about 30/s per tenant),
answers 429 + Retry-After over it, and injects extra 429s with probability `--inject-429`
(another app spending the tenant's budget). Time is compressed by `--scale`: rates are
multiplied and every wait (Retry-After, Company Communicator's 660 s pause) divided by it.

Our run: one sender process at a time; it is SIGKILLed at `--kills` random moments and a new
one takes over (a pre-started standby, as another replica would; its start-up is not counted
against us, the time between kill and takeover is). Printed: delivered, duplicates, lost, and
the achieved rate as a share of the allowed rate.

Company Communicator's policy: the same sender, pacing and platform, except that any 429
pauses everything for 660 s (scaled) instead of waiting Retry-After for that workspace. It runs
without kills (kinder to it), capped at `--cc-cap` seconds; its rate share and the ratio are
printed, with the projected time to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from children import Child, Trace, read_trace, ready_then_go, takeover_gaps  # noqa: E402
from scratch import emptied  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402

from adapters.fake.http_port import HttpPort  # noqa: E402
from bot.broadcasts import service  # noqa: E402
from bot.broadcasts.limiter import Limiter, Limits  # noqa: E402
from bot.broadcasts.liveness import NAMESPACE  # noqa: E402
from bot.broadcasts.tables import Broadcast, Delivery  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.model import ConversationRef  # noqa: E402
from bot.people.tables import Identity, Person  # noqa: E402
from storage.db import Database  # noqa: E402
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform  # noqa: E402

WS = "T-bench"
# Broadcast DMs wait for working hours: the bench's time runs from a Monday 10:00, from the
# moment the conductor started, in every process alike (as the kill tests do).
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class BenchClock:
    """Monday 10:00 at wall-clock `epoch`, moving on in real time."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch

    def now(self) -> datetime:
        return MONDAY_10 + timedelta(seconds=time.time() - self.epoch)


# -- the sender process -------------------------------------------------------------------


async def sender_main(a: argparse.Namespace) -> None:
    os.nice(10)  # a standby shares the two cores with the active sender until it takes over
    trace = Trace(a.trace)
    if a.log:
        import logging

        logging.basicConfig(filename=f"{a.log}.{os.getpid()}", level=logging.INFO,
                            format="%(created).3f %(name)s %(levelname)s %(message)s")
    from bot.broadcasts.sender import Sender

    core = Core(Database(a.db), settings=Settings(database_url=a.db, secret_key="bench"),
                clock=BenchClock(a.epoch))
    port = HttpPort(a.platform, workspace=WS, timeout_s=5.0)
    core.add_port(port)
    await core.start()
    limiter = Limiter({"fakehttp": Limits(workspace_per_s=a.rate * a.scale,
                                          conversation_per_s=7 * a.scale, burst=1,
                                          max_in_flight=16)})
    # Each process is a replica of its own (as `serve` replicas are by default): a standby is
    # told to go as soon as it is ready and waits in the sender's own code; when the active
    # sender is killed the standby learns it from PostgreSQL and takes over by itself.
    sender = Sender(core, sender_id=f"bench-sender-{os.getpid()}", limiter=limiter, batch=50,
                    send_timeout_s=2.0, pause_all_on_429_s=(660 / a.scale) if a.cc else None)
    # Warm up like a running replica: pooled DB and HTTP connections, compiled statements.
    await sender.warm()
    await port.find_sent(ConversationRef("fakehttp", WS, "D-warmup"), "warmup")
    traced(trace, sender, port)
    await ready_then_go()
    trace.note("go")
    stop = asyncio.Event()

    async def until_settled() -> None:
        while not stop.is_set():
            async with core.db.session() as s:
                state = await s.scalar(select(Broadcast.state).where(Broadcast.id == a.broadcast))
            if state not in ("sending", "retracting"):
                stop.set()
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(until_settled())
    await sender.run(stop)
    await watcher
    print(f"sender stats: {sender.stats}", file=sys.stderr, flush=True)
    await port.close()
    await core.db.dispose()


def traced(trace: Trace, sender: Any, port: HttpPort) -> None:
    """Note the first time the sender is at each step of a takeover."""
    from bot.broadcasts import leases, ledger

    def wrap(obj: Any, name: str, what: str, when: Any = None) -> None:
        inner = getattr(obj, name)

        async def noted(*args: Any, **kw: Any) -> Any:
            out = await inner(*args, **kw)
            if when is None or when(out):
                trace.note(what, once=True)
            return out

        setattr(obj, name, noted)

    wrap(leases, "take_over", "taken")
    wrap(sender, "_workspaces", "leased", lambda held: bool(held))
    wrap(ledger, "claim", "claimed", lambda rows: bool(rows))
    wrap(sender, "_acquire", "paced")


# -- the conductor ----------------------------------------------------------------------------


async def prepare(db_url: str, n: int) -> None:
    db = await emptied(Database(db_url))
    await db.upgrade()
    people, idents = [], []
    for i in range(n):
        pid = f"p{i:06d}"
        uid = f"U{i:06d}"
        people.append({"id": pid, "email": f"staff{i}@northbridge.example",
                       "display_name": f"Staff {i}"})
        idents.append({"platform": "fakehttp", "workspace": WS, "user_id": uid, "person_id": pid,
                       "reachable": True,
                       "dm": {"platform": "fakehttp", "workspace": WS, "conversation_id": f"D-{uid}",
                              "is_direct": True, "data": []}})
    async with db.session() as s:
        for i in range(0, n, 2000):
            await s.execute(insert(Person), people[i : i + 2000])
            await s.execute(insert(Identity), idents[i : i + 2000])
    await db.dispose()


async def publish(db_url: str, platform_url: str, title: str, epoch: float) -> str:
    core = Core(Database(db_url), settings=Settings(database_url=db_url, secret_key="bench"),
                clock=BenchClock(epoch))
    port = HttpPort(platform_url, workspace=WS)
    core.add_port(port)
    await core.start()
    bid = await service.publish_to_staff(core, "p000000", title=title,
                                         text="Family network meetings now run in every team.")
    await port.close()
    await core.db.dispose()
    return bid


async def counts(db_url: str, bid: str) -> dict[str, int]:
    db = Database(db_url)
    async with db.session() as s:
        from bot.broadcasts import ledger

        c = await ledger.counts(s, bid)
        keys = set((await s.execute(select(Delivery.id).where(
            Delivery.broadcast_id == bid))).scalars())
    await db.dispose()
    c["_keys"] = len(keys)
    return c


def child_args(a: argparse.Namespace, bid: str, url: str, cc: bool) -> list[str]:
    return (["--db", a.db, "--platform", url, "--broadcast", bid, "--rate", str(a.rate),
             "--scale", str(a.scale), "--epoch", str(a.epoch), "--trace", a.trace]
            + (["--log", a.log] if a.log else [])
            + (["--cc"] if cc else []))


STEPS = [("taken", "the standby took the dead sender's lease and rows over"),
         ("leased", "it holds the workspace's lease"), ("claimed", "its first rows claimed"),
         ("paced", "its first send paced")]


def takeovers(a: argparse.Namespace, platform: RateLimitedPlatform, t0: float,
              killed: list[tuple[float, int]]) -> list[float]:
    """Print where each takeover's time went; returns the gaps (kill to next delivery)."""
    sends = sorted(d.at for d in platform.keyed())
    gaps = takeover_gaps([k for k, _ in killed], sends)
    steps: dict[int, dict[str, float]] = {}
    for at, pid, what in read_trace(a.trace):
        steps.setdefault(pid, {}).setdefault(what, at)
    allowed = a.rate * a.scale
    print("\ntakeovers (seconds from the kill; 'delivered' is the platform's next delivery; "
          "'1 s after' is deliveries in the second after it, of "
          f"{allowed:.0f} allowed):")
    print("  " + " ".join(f"{w:>9}" for w, _ in STEPS) + "  delivered  1 s after")
    for (k, pid), gap in zip(killed, gaps, strict=True):
        got = steps.get(pid, {})
        cells = [f"{got[w] - k:9.3f}" if w in got else f"{'-':>9}" for w, _ in STEPS]
        after = sum(1 for x in sends if k + gap < x <= k + gap + 1.0)
        print("  " + " ".join(cells) + f"  {gap:9.3f}  {after:9d}")
    print("  (" + "; ".join(f"{w}: {d}" for w, d in STEPS) + ")")
    return gaps


async def waiting_on_a_lock(db: Database) -> bool:
    """Does a sender wait on another's liveness lock (bot/broadcasts/liveness.py)?"""
    async with db.session() as s:
        return bool(await s.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = :n AND objsubid = 2"), {"n": NAMESPACE}))


async def run_ours(a: argparse.Namespace, platform: RateLimitedPlatform) -> dict[str, float]:
    bid = await publish(a.db, platform.url, "Early win (staffvoice policy)", a.epoch)
    allowed = a.rate * a.scale
    expected = a.recipients / allowed
    db = Database(a.db)
    rng = random.Random(a.seed)
    kill_at = sorted(rng.uniform(0.03, 0.85) * expected for _ in range(a.kills))
    current = await Child.start(__file__, child_args(a, bid, platform.url, cc=False))
    standby = await Child.start(__file__, child_args(a, bid, platform.url, cc=False))
    t0 = time.monotonic()
    current.go()

    async def standing_by() -> None:
        # The standby goes once the active sender holds the workspace (it sends), and waits.
        n = len(platform.keyed())
        while len(platform.keyed()) <= n and current.proc.returncode is None:
            await asyncio.sleep(0.01)
        standby.go()
        # ... and waits on the active one's liveness lock (a kill before that would leave the
        # takeover to the leases running out, as for a replica that was not watching yet).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not await waiting_on_a_lock(db):
            await asyncio.sleep(0.02)

    await standing_by()
    killed: list[tuple[float, int]] = []
    for at in kill_at:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
        if current.proc.returncode is not None:
            break
        killed.append((time.monotonic(), standby.proc.pid))
        await current.kill()
        current, standby = standby, None  # type: ignore[assignment]
        print(f"  killed the sender at {time.monotonic() - t0:6.1f}s "
              f"({len(platform.keys()):,} delivered so far); the standby takes over", flush=True)
        standby = await Child.start(__file__, child_args(a, bid, platform.url, cc=False))
        await standing_by()
    await current.proc.wait()
    await standby.kill()
    await db.dispose()
    c = await counts(a.db, bid)
    # The fake runs in this process, so its clock is ours: from "go" to the last delivery.
    sends = sorted(d.at for d in platform.keyed())
    elapsed = sends[-1] - t0
    delivered = len(platform.keys())
    gaps = takeovers(a, platform, t0, killed)
    if a.log:
        with open(f"{a.log}.sends", "w") as f:
            f.writelines(f"{x - t0:.4f}\n" for x in sends)
            f.writelines(f"kill {k - t0:.4f} {pid}\n" for k, pid in killed)
            f.writelines(f"429 {x - t0:.4f} {inj}\n" for x, inj in platform.rejections)
    injected = sum(1 for _, inj in platform.rejections if inj)
    # Time the platform told us to wait after an injected 429 (another app spent the budget):
    # the windows [429, 429 + Retry-After], merged.
    told, until = 0.0, 0.0
    for at, _ in sorted(r for r in platform.rejections if r[1]):
        end = at + a.retry_after / a.scale
        told += end - max(at, until)
        until = max(until, end)
    return {"broadcast": bid, "kills": len(killed), "delivered": delivered,  # type: ignore[dict-item]
            "duplicates": platform.duplicates(), "lost": c["_keys"] - delivered,
            "final_failed": c["final_failed"], "skipped": c["skipped"], "elapsed": elapsed,
            "rate": delivered / elapsed, "share": delivered / elapsed / allowed,
            "rejected_429": platform.rejected_429, "injected_429": injected,
            "told_to_wait": told, "first": sends[0] - t0, "takeover": sum(gaps),
            "takeover_mean": sum(gaps) / len(gaps) if gaps else 0.0,
            "takeover_max": max(gaps, default=0.0)}


async def run_cc(a: argparse.Namespace, platform: RateLimitedPlatform) -> dict[str, float]:
    bid = await publish(a.db, platform.url, "Early win (Company Communicator policy)", a.epoch)
    allowed = a.rate * a.scale
    child = await Child.start(__file__, child_args(a, bid, platform.url, cc=True))
    t0 = time.monotonic()
    child.go()
    try:
        await asyncio.wait_for(child.proc.wait(), a.cc_cap)
    except TimeoutError:
        await child.kill()
    elapsed = time.monotonic() - t0
    delivered = len(platform.keys())
    pauses = platform.rejected_429
    rate = delivered / elapsed
    return {"delivered": delivered, "elapsed": elapsed, "rate": rate, "share": rate / allowed,
            "pauses": pauses, "duplicates": platform.duplicates()}


async def conductor(a: argparse.Namespace) -> None:
    print(f"preparing {a.recipients:,} recipients in {a.db.split('://')[0]} ...", flush=True)
    await prepare(a.db, a.recipients)
    allowed = a.rate * a.scale
    cfg = PlatformConfig(workspace_rate=allowed, conversation_rate=7 * a.scale, burst=a.burst,
                         extra_429=a.inject_429, extra_429_retry_after=a.retry_after / a.scale,
                         seed=a.seed)
    print(f"platform: {a.rate}/s per workspace x time scale {a.scale} = {allowed:.0f}/s allowed "
          f"(burst {a.burst:.0f}); "
          f"injected 429 probability {a.inject_429} with Retry-After {a.retry_after}s "
          f"(scaled {a.retry_after / a.scale:.2f}s)", flush=True)

    platform = RateLimitedPlatform(cfg)
    await platform.start()
    ours = await run_ours(a, platform)
    await platform.stop()
    print("\nstaffvoice policy (wait Retry-After for that workspace only):")
    print(f"  recipients      {a.recipients:,}")
    print(f"  kills           {ours['kills']}")
    print(f"  delivered       {ours['delivered']:,}")
    print(f"  duplicates      {ours['duplicates']}")
    print(f"  lost            {ours['lost']}  (final_failed {ours['final_failed']}, "
          f"skipped {ours['skipped']})")
    print(f"  429s answered   {ours['rejected_429']}")
    print(f"  elapsed         {ours['elapsed']:.1f}s (scaled; {ours['elapsed'] * a.scale:.0f}s real-world)")
    print(f"  achieved rate   {ours['rate']:.1f}/s = {ours['share']:.3f} of the allowed {allowed:.0f}/s"
          " (from go to the last delivery)")
    ideal = ours["delivered"] / allowed
    pauses = ours["told_to_wait"]
    print(f"  time lost       {ours['elapsed'] - ideal:.1f}s over the ideal {ideal:.1f}s: "
          f"first delivery {ours['first']:.2f}s after go; takeovers {ours['takeover']:.1f}s "
          f"({ours['takeover_mean']:.2f}s each on average, longest {ours['takeover_max']:.2f}s); "
          f"{pauses:.1f}s waiting out the Retry-After of {ours['injected_429']} injected "
          f"429s; the rest ({ours['elapsed'] - ideal - ours['first'] - ours['takeover'] - pauses:.1f}s)"
          " pacing below the limit (CPU, the other 429s, restarting after a pause)")
    if pauses:
        print(f"  of the time the platform allowed sends (without the {pauses:.1f}s it told us to "
              f"wait after the injected 429s): {ours['delivered'] / (ours['elapsed'] - pauses):.1f}/s"
              f" = {ours['delivered'] / (ours['elapsed'] - pauses) / allowed:.3f}")

    if a.skip_cc:
        return
    platform = RateLimitedPlatform(PlatformConfig(**{**cfg.__dict__}))
    await platform.start()
    cc = await run_cc(a, platform)
    await platform.stop()
    remaining = a.recipients - cc["delivered"]
    projected = cc["elapsed"] + (remaining / cc["rate"] if cc["rate"] else float("inf"))
    print(f"\nCompany Communicator policy (any 429 pauses everything {660 / a.scale:.0f}s scaled = 660s real):")
    print(f"  ran for         {cc['elapsed']:.1f}s (capped at {a.cc_cap}s), 429s {int(cc['pauses'])}")
    print(f"  delivered       {cc['delivered']:,} of {a.recipients:,}, duplicates {cc['duplicates']}")
    print(f"  achieved rate   {cc['rate']:.1f}/s = {cc['share']:.3f} of the allowed {allowed:.0f}/s")
    print(f"  projected total {projected:.0f}s scaled = {projected * a.scale / 3600:.1f} h real-world "
          f"(staffvoice: {ours['elapsed'] * a.scale / 60:.1f} min)")
    ratio = ours["share"] / cc["share"] if cc["share"] else float("inf")
    print(f"\nratio of achieved rates, staffvoice / Company Communicator: {ratio:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "_sender"])
    ap.add_argument("--db", default=os.environ.get("STAFFVOICE_BENCH_DATABASE_URL",
                                                    "sqlite+svinline:////tmp/staffvoice-bench.db"))
    ap.add_argument("--recipients", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=30.0, help="allowed sends/s per workspace")
    ap.add_argument("--scale", type=float, default=3.0, help="time compression")
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--burst", type=float, default=10.0, help="sends the platform lets through back to back")
    ap.add_argument("--inject-429", type=float, default=0.001)
    ap.add_argument("--retry-after", type=float, default=2.0, help="real-world seconds")
    ap.add_argument("--cc-cap", type=float, default=120.0)
    ap.add_argument("--skip-cc", action="store_true")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    # child options
    ap.add_argument("--platform")
    ap.add_argument("--broadcast")
    ap.add_argument("--cc", action="store_true")
    ap.add_argument("--epoch", type=float, default=time.time(), help="wall-clock start of bench time")
    ap.add_argument("--trace", default=None, help="where the senders note their steps")
    ap.add_argument("--log", default=None, help="senders log to LOG.PID; the deliveries, kills and 429s (seconds from go) "
                         "go to LOG.sends")
    a = ap.parse_args()
    if a.db.startswith("sqlite") and a.mode == "run":
        Path(a.db.split(":///", 1)[1]).unlink(missing_ok=True)
    if a.mode == "run":
        a.trace = a.trace or f"/tmp/staffvoice-broadcast-trace-{os.getpid()}.txt"
        Path(a.trace).unlink(missing_ok=True)
    asyncio.run(sender_main(a) if a.mode == "_sender" else conductor(a))


if __name__ == "__main__":
    main()
