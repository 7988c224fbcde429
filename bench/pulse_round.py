"""Pulse round bench: a round for 50,000 people in 400 teams, invitations exactly once, with kills.

    .venv/bin/python bench/pulse_round.py --db postgresql+asyncpg://postgres@127.0.0.1/sv_bench
    .venv/bin/python bench/pulse_round.py --db ... --people 2000      # a quick check

Two local rate-limited fake platforms (tests/fakes/ratelimited_platform.py) stand in for a
Slack workspace and a Teams tenant, enforcing the limits in DESIGN.md: Slack about 5 sends/s per
workspace and 1/s per conversation, Teams 30/s per tenant and 7/s per conversation; over them
they answer 429 + Retry-After, and they do not deduplicate. Whole teams are on one platform or
the other, in proportion to the platforms' rates (1 team in 7 on Slack), so both finish
together. Time is compressed by `--scale` (default 3): the fakes' rates and the sender's pacing
are multiplied by it, so 50,000 invitations take about 8 minutes instead of 24.

A sender process (as a `serve` replica runs it) is told to go at Monday 10:00 bench time: it runs
the pulse ticker, which opens the weekly round for everyone (participation in one bulk insert),
queues one ledger row per person in one transaction and starts sending; then it keeps draining
the ledger. It is SIGKILLed at `--kills` random moments after the first invitation, and a
pre-started standby under the same sender id takes over (as the restarted replica would; its
start-up is not counted, the time between kill and takeover is).

Printed: invitations delivered, duplicates, lost, share of the platforms' allowed rate (from the
first invitation to the last), time from "go" to the first invitation (opening the round and
queueing every row included), and the sender processes' peak memory (the largest of them).
Targets from issue 22: 50,000 / 0 / 0 / >= 0.95 / < 10 s / < 400 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from children import Child, ready_then_go, takeover_gaps  # noqa: E402
from scratch import emptied  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from adapters.fake.http_port import HttpPort  # noqa: E402
from bot.broadcasts.ledger import OPEN  # noqa: E402
from bot.broadcasts.tables import Delivery  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.model import ConversationRef  # noqa: E402
from bot.people.tables import Identity, Person, Team  # noqa: E402
from bot.pulse.tables import PulseParticipation, PulseQuestion, PulseRound, PulseSurvey  # noqa: E402
from storage.db import Database  # noqa: E402
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform  # noqa: E402

MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # the round's fire time (London = UTC)
SENDER_ID = "bench-pulse-sender"
# DESIGN.md: Slack chat.postMessage ~1/s per channel plus a workspace cap (we pace at 5/s);
# Teams 7/s per conversation, about 30/s per app per tenant.
PLATFORMS = {"slack": ("T-northbridge", 5.0, 1.0), "teams": ("tenant-northbridge", 30.0, 7.0)}
SURVEY = "bench-pulse"


class BenchClock:
    """Monday 10:00 at wall-clock `epoch`, moving on in real time (the same in every process)."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch

    def now(self) -> datetime:
        return MONDAY_10 + timedelta(seconds=time.time() - self.epoch)


def platform_of_team(j: int) -> str:
    """Teams alternate so both platforms' people are spread through the ledger (1 in 7 Slack)."""
    slack, teams = PLATFORMS["slack"][1], PLATFORMS["teams"][1]
    every = round((slack + teams) / slack)
    return "slack" if j % every == 0 else "teams"


# -- the sender process -------------------------------------------------------------------


async def sender_main(a: argparse.Namespace) -> None:
    os.nice(10)  # a standby shares the two cores with the active sender until it takes over
    os.environ["STAFFVOICE_SENDER_ID"] = SENDER_ID
    os.environ["STAFFVOICE_BROADCAST_LIMITS"] = ";".join(
        f"{p}:workspace={ws * a.scale},conversation={conv * a.scale},burst=1"
        for p, (_w, ws, conv) in PLATFORMS.items())
    from bot.broadcasts.sender import Sender

    clock = BenchClock(a.epoch)
    core = Core(Database(a.db), settings=Settings(database_url=a.db, secret_key="bench-secret"),
                clock=clock)
    urls = dict(zip(PLATFORMS, a.platforms.split(","), strict=True))
    ports = [HttpPort(urls[p], platform=p, workspace=w, timeout_s=5.0)
             for p, (w, _r, _c) in PLATFORMS.items()]
    for port in ports:
        core.add_port(port)
    await core.start()
    sender = Sender(core, send_timeout_s=2.0)
    # Warm up like a running replica: pooled DB and HTTP connections, compiled statements.
    await sender.warm()
    for port in ports:
        await port.find_sent(ConversationRef(port.platform, port.workspace, "D-warmup"), "warmup")
    await ready_then_go()
    t0 = time.monotonic()
    stop = asyncio.Event()

    async def scheduler() -> None:
        # The scheduler's pulse tick: opens the round, queues every invitation, sends.
        await core.router.tickers["pulse"](core, clock.now())
        if a.verbose:
            print(f"pulse tick done after {time.monotonic() - t0:.1f}s", file=sys.stderr,
                  flush=True)
        while not stop.is_set():
            if not await unsettled(core):
                stop.set()
            await asyncio.sleep(0.25)

    # As in `serve`: the scheduler and the sender worker run side by side (one limiter); the
    # worker first takes back, in doubt, the rows our previous incarnation left in flight.
    await asyncio.gather(scheduler(), sender.run(stop, poll_s=0.1))
    for port in ports:
        await port.close()
    await core.db.dispose()


async def unsettled(core: Core) -> int:
    async with core.db.session() as s:
        return int(await s.scalar(select(func.count()).where(
            Delivery.kind == "pulse", Delivery.state.in_(OPEN))) or 0)


# -- the conductor ----------------------------------------------------------------------------


async def prepare(db_url: str, n: int, n_teams: int) -> dict[str, set[str]]:
    """People, teams, identities with known DMs, a weekly survey; the DMs expected per platform."""
    db = await emptied(Database(db_url))
    await db.upgrade()
    expected: dict[str, set[str]] = {p: set() for p in PLATFORMS}
    teams = [{"id": f"team-{j:03d}", "name": f"Team {j}", "parent_id": None} for j in range(n_teams)]
    people, idents = [], []
    for i in range(n):
        j = i % n_teams
        platform = platform_of_team(j)
        ws = PLATFORMS[platform][0]
        pid, uid = f"p{i:06d}", f"U{i:06d}"
        people.append({"id": pid, "email": f"staff{i}@northbridge.example",
                       "display_name": f"Staff {i}", "team_id": f"team-{j:03d}"})
        idents.append({"platform": platform, "workspace": ws, "user_id": uid, "person_id": pid,
                       "reachable": True,
                       "dm": {"platform": platform, "workspace": ws, "conversation_id": f"D-{uid}",
                              "is_direct": True, "data": []}})
        expected[platform].add(f"D-{uid}")
    async with db.session() as s:
        await s.execute(insert(Team), teams)
        for i in range(0, n, 5000):
            await s.execute(insert(Person), people[i : i + 5000])
            await s.execute(insert(Identity), idents[i : i + 5000])
        s.add(PulseSurvey(id=SURVEY, title="Weekly pulse", intro="", audience={"everyone": True},
                          schedule={"every": "weekly", "day": "mon", "time": "10:00"},
                          timezone="Europe/London", remind_after_min=2 * 24 * 60,
                          close_after_min=4 * 24 * 60 + 7 * 60, anonymity="anonymous"))
        await s.flush()
        for pos, (key, text) in enumerate([
            ("vision", "I understand the shared vision for how we work with families."),
            ("voice", "I can say what is and is not working."),
            ("support", "I get the support I need to work in the new way."),
        ]):
            s.add(PulseQuestion(survey_id=SURVEY, key=key, position=pos, kind="likert5",
                                text=text, options={}))
    await db.dispose()
    return expected


def child_args(a: argparse.Namespace, urls: str) -> list[str]:
    return (["--db", a.db, "--platforms", urls, "--scale", str(a.scale), "--epoch", str(a.epoch)]
            + (["--verbose"] if a.verbose else []))


async def round_counts(db_url: str) -> tuple[int, int, int]:
    """(people asked, ledger rows, participation rows invited) of the open round."""
    db = Database(db_url)
    async with db.session() as s:
        rid = await s.scalar(select(PulseRound.id).where(PulseRound.survey_id == SURVEY))
        asked = await s.scalar(select(func.count()).where(PulseParticipation.round_id == rid))
        rows = await s.scalar(select(func.count()).where(Delivery.subject == rid))
        invited = await s.scalar(select(func.count()).where(
            PulseParticipation.round_id == rid, PulseParticipation.invited_at.is_not(None)))
    await db.dispose()
    return int(asked or 0), int(rows or 0), int(invited or 0)


async def conductor(a: argparse.Namespace) -> None:
    print(f"preparing {a.people:,} people in {a.teams} teams in {a.db.split('://')[0]} ...",
          flush=True)
    expected = await prepare(a.db, a.people, a.teams)
    fakes: dict[str, RateLimitedPlatform] = {}
    for p, (_ws, rate, conv) in PLATFORMS.items():
        fakes[p] = RateLimitedPlatform(PlatformConfig(
            workspace_rate=rate * a.scale, conversation_rate=conv * a.scale, burst=a.burst,
            extra_429=a.inject_429, extra_429_retry_after=a.retry_after / a.scale, seed=a.seed))
        await fakes[p].start()
    allowed = sum(r for _w, r, _c in PLATFORMS.values()) * a.scale
    for p, (_ws, rate, conv) in PLATFORMS.items():
        print(f"  {p}: {len(expected[p]):,} people; {rate}/s per workspace, {conv}/s per "
              f"conversation, x{a.scale} = {rate * a.scale:.0f}/s allowed", flush=True)
    urls = ",".join(fakes[p].url for p in PLATFORMS)
    a.epoch = time.time()  # bench time: Monday 10:00 now, in every process
    n = a.people
    pace = n / allowed
    rng = random.Random(a.seed)
    current = await Child.start(__file__, child_args(a, urls))
    standby = await Child.start(__file__, child_args(a, urls))

    def delivered() -> int:
        return sum(len(f.keys()) for f in fakes.values())

    t0 = time.monotonic()
    current.go()
    while delivered() == 0:
        assert current.proc.returncode is None, "the sender stopped before inviting anyone"
        await asyncio.sleep(0.01)
    first_at = min(d.at for f in fakes.values() for d in f.keyed())
    to_first = first_at - t0
    if a.open_only:
        await current.kill()
        await standby.kill()
        asked, rows, _invited = await round_counts(a.db)
        for f in fakes.values():
            await f.stop()
        print(f"  time to first invitation {to_first:.2f}s for {asked:,} asked ({rows:,} rows "
              f"queued); peak memory so far "
              f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
        return
    kill_at = sorted(to_first + rng.uniform(0.03, 0.85) * pace for _ in range(a.kills))
    kills = 0
    killed_at: list[float] = []
    for at in kill_at:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
        if current.proc.returncode is not None:
            break
        await current.kill()
        killed_at.append(time.monotonic())
        current, standby = standby, None  # type: ignore[assignment]
        current.go()
        kills += 1
        print(f"  killed the sender at {time.monotonic() - t0:6.1f}s "
              f"({delivered():,} delivered so far); a new one took over", flush=True)
        standby = await Child.start(__file__, child_args(a, urls))
    await current.proc.wait()
    await standby.kill()
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    asked, rows, invited = await round_counts(a.db)
    last_at = max(d.at for f in fakes.values() for d in f.keyed())
    got = {p: {d.conversation for d in f.keyed()} for p, f in fakes.items()}
    dups = sum(f.duplicates() for f in fakes.values())
    per_conv = sum(len(f.keyed()) for f in fakes.values()) - sum(len(c) for c in got.values())
    lost = sum(len(expected[p] - got[p]) for p in PLATFORMS)
    total = delivered()
    span = last_at - first_at
    sends = sorted(d.at for f in fakes.values() for d in f.keyed())
    gaps = takeover_gaps(killed_at, sends)
    for f in fakes.values():
        await f.stop()

    print(f"\npulse round: {n:,} people in {a.teams} teams, {kills} kills, "
          f"{a.db.split('://')[0]}, time scale x{a.scale}")
    print(f"  invitations delivered  {total:,} (asked {asked:,}, ledger rows {rows:,}, "
          f"participation invited {invited:,})")
    print(f"  duplicates             {dups} (same person twice: {per_conv})")
    print(f"  lost                   {lost}")
    for p, f in fakes.items():
        keyed = f.keyed()
        if len(keyed) > 1:
            s = max(d.at for d in keyed) - min(d.at for d in keyed)
            lim = PLATFORMS[p][1] * a.scale
            print(f"  {p:<22} {len(keyed):,} in {s:.1f}s = {len(keyed) / s / lim:.3f} of its "
                  f"{lim:.0f}/s; 429s {f.rejected_429}")
    print(f"  share of allowed rate  {total / span / allowed:.3f} ({total / span:.1f}/s of "
          f"{allowed:.0f}/s, first to last invitation: {span:.1f}s scaled, "
          f"{span * a.scale / 60:.1f} min real-world)")
    if gaps:
        print(f"  takeover after a kill  {sum(gaps) / len(gaps):.2f}s on average to the next "
              f"invitation (longest {max(gaps):.2f}s)")
    print(f"  time to first         {to_first:.2f}s (go -> round opened, rows queued, first sent)")
    print(f"  peak memory            {peak_mb:.0f} MB (largest sender process)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "_sender"])
    ap.add_argument("--db", default=os.environ.get("STAFFVOICE_BENCH_DATABASE_URL",
                                                    "sqlite+svinline:////tmp/staffvoice-pulse-bench.db"))
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--teams", type=int, default=400)
    ap.add_argument("--scale", type=float, default=3.0, help="time compression")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--burst", type=float, default=10.0,
                    help="sends the platform lets through back to back")
    ap.add_argument("--inject-429", type=float, default=0.0,
                    help="probability of an extra 429 (another app spending the budget)")
    ap.add_argument("--retry-after", type=float, default=2.0, help="real-world seconds")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--verbose", action="store_true", help="the senders say what they did")
    ap.add_argument("--open-only", action="store_true",
                    help="stop at the first invitation (time to open the round only)")
    # child options
    ap.add_argument("--platforms")
    ap.add_argument("--epoch", type=float, default=time.time())
    a = ap.parse_args()
    if a.db.startswith("sqlite") and a.mode == "run":
        Path(a.db.split(":///", 1)[1]).unlink(missing_ok=True)
    asyncio.run(sender_main(a) if a.mode == "_sender" else conductor(a))


if __name__ == "__main__":
    main()
