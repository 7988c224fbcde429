"""Ack latency of /slack/events under 200 concurrent signed requests, next to bare slack-bolt.

    .venv/bin/python bench/slack_ack.py [--concurrency 200] [--rounds 5]

Starts, each in its own process: the fake Slack Web API; a bare slack-bolt AsyncApp whose
listener only acks (Bolt's defaults, and again with process_before_response=True); and the
staffvoice server (adapters.slack.mount on aiohttp, SQLite, example programme loaded) whose
listeners ack and then run the core in the background. The load generator (this process)
sends `rounds` bursts of `concurrency` signed DM events at once to each and prints p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-signing-secret"
PEOPLE = [f"practitioner{i}@northbridge.example" for i in range(1, 16)]


async def serve_fake() -> None:
    from tests.fakes.slack_api import FakeSlack

    fake = FakeSlack()
    url = await fake.start()
    users = {email: fake.add_user(email).id for email in PEOPLE}
    for uid in users.values():
        fake.dm_of(uid)
    print(json.dumps({"url": url, "users": users, "team": fake.team}), flush=True)
    await asyncio.Event().wait()


async def serve_bare(before_response: bool) -> None:
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    api = os.environ["SLACK_API_URL"]
    bolt = AsyncApp(signing_secret=SECRET, client=AsyncWebClient(token="xoxb-fake-bot-token", base_url=api),
                    process_before_response=before_response)

    @bolt.event("message")
    async def on_message(ack):  # type: ignore[no-untyped-def]
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", events)
    await _run(app)


async def serve_ours() -> None:
    from aiohttp import web

    from adapters.slack.mount import mount
    from bot.config import Settings
    from bot.core import Core
    from bot.programme import loader
    from storage.db import Database

    db_path = Path(tempfile.mkdtemp()) / "bench.db"
    os.environ.setdefault("STAFFVOICE_SECRET_FILE", str(db_path.with_suffix(".key")))
    url = f"sqlite+svinline:///{db_path}"
    db = Database(url)
    await db.upgrade()
    core = Core(db, settings=Settings(database_url=url, secret_key="bench"))
    await core.start()
    await loader.load(db, (ROOT / "examples" / "programme.yaml").read_text(), core.router)
    app = web.Application()
    mount(app, core, {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-fake-bot-token",
                      "SLACK_API_URL": os.environ["SLACK_API_URL"]})
    await _run(app)


async def _run(app: object) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"url": f"http://127.0.0.1:{port}/slack/events"}), flush=True)
    await asyncio.Event().wait()


def spawn(kind: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, object]]:
    log = open(Path(tempfile.gettempdir()) / f"slack_ack_{kind}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE,
                            stderr=log, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{kind} server did not start")
    return proc, json.loads(line)


def signed(body: str) -> dict[str, str]:
    import hashlib
    import hmac

    ts = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={sig}"}


def event_body(n: int, team: str, user: str, text: str) -> str:
    channel = "D" + user[1:]
    return json.dumps({
        "type": "event_callback", "team_id": team, "api_app_id": "A0BENCH", "event_id": f"Ev{n:012d}",
        "event_time": int(time.time()),
        "event": {"type": "message", "channel": channel, "user": user, "text": text,
                  "ts": f"{int(time.time())}.{n:06d}", "channel_type": "im"},
    })


async def burst(session: aiohttp.ClientSession, url: str, bodies: list[str]) -> list[float]:
    async def one(body: str) -> float:
        headers = signed(body)
        start = time.perf_counter()
        async with session.post(url, data=body.encode(), headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"{url} answered {resp.status}")
        return (time.perf_counter() - start) * 1000

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def load(targets: dict[str, str], fake: dict[str, object], concurrency: int, rounds: int) -> None:
    users = list(dict(fake["users"]).values())  # type: ignore[call-overload]
    team = str(fake["team"])
    counter = iter(range(1, 10**9))
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        results: dict[str, list[float]] = {name: [] for name in targets}
        # Warm-up (not counted): connections opened, Bolt's auth.test cached, people known.
        for url in targets.values():
            await burst(session, url, [event_body(next(counter), team, u, "whoami") for u in users])
            await burst(session, url, [event_body(next(counter), team, users[i % len(users)], "whoami")
                                       for i in range(concurrency)])
        await asyncio.sleep(2.0)
        for _ in range(rounds):
            for name, url in targets.items():
                bodies = [event_body(next(counter), team, users[i % len(users)], "whoami")
                          for i in range(concurrency)]
                results[name] += await burst(session, url, bodies)
                await asyncio.sleep(1.0)  # let background work settle between bursts
    print(f"{concurrency} concurrent signed message.im events x {rounds} rounds, ack time in ms")
    print(f"{'server':44} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    for name, values in results.items():
        print(f"{name:44} {pct(values, 50):8.1f} {pct(values, 99):8.1f} {max(values):8.1f} "
              f"{statistics.fmean(values):8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", choices=["fake", "bare", "bare-pbr", "ours"])
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.serve == "fake":
        asyncio.run(serve_fake())
    elif args.serve == "bare":
        asyncio.run(serve_bare(False))
    elif args.serve == "bare-pbr":
        asyncio.run(serve_bare(True))
    elif args.serve == "ours":
        asyncio.run(serve_ours())
    else:
        procs = []
        try:
            fake_proc, fake = spawn("fake")
            procs.append(fake_proc)
            env = {"SLACK_API_URL": str(fake["url"])}
            targets = {}
            for kind, label in (("bare", "bare slack-bolt AsyncApp (ack only, defaults)"),
                                ("bare-pbr", "bare slack-bolt, process_before_response=True"),
                                ("ours", "staffvoice /slack/events (ack, core in bg)")):
                proc, info = spawn(kind, env)
                procs.append(proc)
                targets[label] = str(info["url"])
            asyncio.run(load(targets, fake, args.concurrency, args.rounds))
        finally:
            for p in procs:
                p.terminate()
                p.wait()


if __name__ == "__main__":
    main()
