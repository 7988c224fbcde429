"""Load on the public families page: form submissions at a fixed rate against `staffvoice serve`.

    .venv/bin/python bench/families_load.py [--rate 200] [--seconds 30] [--database-url URL]

Starts `staffvoice serve` on loopback (SQLite in a scratch directory unless --database-url; the
example programme loaded with `families.daily_limit` raised so one test address is not limited),
then POSTs /families and /young-people forms at a fixed rate (open loop: a slow answer does not
slow the sending). Each form carries a fresh signed token, minted here with the server's key as
the page would (fetching the page first would measure the GET too; `--with-get` does that).
The mix: 2 in 100 look like disclosures (alerts to the leads, who have no platform here), 5 in
100 ask to be contacted (sealed), 2 in 100 fill the honeypot. Prints p50, p99, max latency,
errors (anything but the thanks page, or no answer in 10 s), and what was stored.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "bench-families-secret-key-not-for-production"
TIMEOUT = aiohttp.ClientTimeout(total=10)
TOKEN = re.compile(r'name="token" value="([^"]+)"')
CONCERN = "My mum hits me when she is angry and I am scared to go home."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mint(audience: str) -> str:
    from bot.families.service import issue_token

    return issue_token(hashlib.sha256(KEY.encode()).digest(), audience, datetime.now(UTC))


def form(i: int) -> tuple[str, dict[str, str]]:
    audience = "young_people" if i % 3 == 0 else "families"
    data = {"rating": str(i % 5 + 1), "working": f"The worker listens to us (form {i}).",
            "better": "Meetings are in school time.", "theme": "family-networks"}
    if i % 50 == 7:
        data["better"] = CONCERN
    if i % 20 == 3:
        data.update(contact="yes", name="A Parent", how="parent@example.org")
    if i % 50 == 11:
        data["website"] = "http://spam.example"
    return audience, data


async def one(session: aiohttp.ClientSession, base: str, i: int, with_get: bool,
              lat: list[float], errors: list[str]) -> None:
    audience, data = form(i)
    path = "/families" if audience == "families" else "/young-people"
    start = time.perf_counter()
    try:
        if with_get:
            async with session.get(base + path) as r:
                m = TOKEN.search(await r.text())
                data["token"] = m.group(1) if m else ""
        else:
            data["token"] = mint(audience)
        async with session.post(base + path, data=data, headers={"Origin": base}) as r:
            body = await r.text()
            if r.status != 200 or ("Thank you" not in body):
                errors.append(f"{r.status}")
                return
    except Exception as e:  # noqa: BLE001 - every failure is an error figure
        errors.append(type(e).__name__)
        return
    lat.append(time.perf_counter() - start)


async def run(base: str, rate: int, seconds: float, with_get: bool) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    errors: list[str] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=TIMEOUT) as session:
        # Warm up: the first request compiles templates and patterns.
        await one(session, base, 10_000_000, with_get, [], [])
        tasks = []
        t0 = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, base, i, with_get, lat, errors)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - t0
    return lat, errors, took


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=200, help="submissions per second (default 200)")
    ap.add_argument("--seconds", type=float, default=30, help="how long (default 30)")
    ap.add_argument("--database-url", default="", help="default: SQLite in a scratch directory")
    ap.add_argument("--with-get", action="store_true", help="fetch the page for its token first")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db_file = Path(d) / "families.db"
        url = args.database_url or f"sqlite+svinline:///{db_file}"
        port = free_port()
        env = {**os.environ, "STAFFVOICE_DATABASE_URL": url, "STAFFVOICE_SECRET_KEY": KEY,
               "STAFFVOICE_HOST": "127.0.0.1", "STAFFVOICE_PORT": str(port),
               "STAFFVOICE_LOG_LEVEL": "WARNING"}
        prog = yaml.safe_load((ROOT / "examples" / "programme.yaml").read_text(encoding="utf-8"))
        prog.setdefault("families", {})["daily_limit"] = 10_000
        prog_file = Path(d) / "programme.yaml"
        prog_file.write_text(yaml.safe_dump(prog, allow_unicode=True), encoding="utf-8")
        exe = [sys.executable, "-m", "staffvoice.cli"]
        subprocess.run([*exe, "programme", "load", str(prog_file)], env=env, check=True,
                       stdout=subprocess.DEVNULL, cwd=d)
        server = subprocess.Popen([*exe, "serve"], env=env, cwd=d, stdout=subprocess.DEVNULL,
                                  stderr=open(Path(d) / "serve.log", "w"))  # noqa: SIM115
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            cpu0 = cpu_seconds(server.pid)
            lat, errors, took = asyncio.run(run(base, args.rate, args.seconds, args.with_get))
            cpu = cpu_seconds(server.pid) - cpu0
        finally:
            server.terminate()
            server.wait(10)
        sent = int(args.rate * args.seconds)
        print(f"families page: {sent} submissions at {args.rate}/s for {args.seconds:g} s "
              f"({'GET + POST' if args.with_get else 'POST'}; {'SQLite' if not args.database_url else 'given database'})")
        print(f"  took {took:.1f} s ({sent / took:.0f}/s achieved)")
        print(f"  latency ms: p50 {pct(lat, 50):.1f}  p99 {pct(lat, 99):.1f}  max {pct(lat, 100):.1f}")
        print(f"  server CPU: {cpu * 1000 / (sent + 1):.2f} ms per submission "
              f"({cpu / took * 100:.0f}% of one core)")
        print(f"  errors: {len(errors)}" + (f" ({sorted(set(errors))[:5]})" if errors else ""))
        if not args.database_url:
            with sqlite3.connect(db_file) as c:
                stored = c.execute("select count(*) from feedback_items").fetchone()[0]
                urgent = c.execute("select count(*) from feedback_items where urgent").fetchone()[0]
                contacts = c.execute("select count(*) from family_contacts").fetchone()[0]
            print(f"  stored: {stored} items ({urgent} urgent, {contacts} contact requests); "
                  f"expected {sent + 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
