"""The broadcasts page's live stream under many open pages: database reads of broadcast progress
per second, and the server's CPU per second, with N streams open on one broadcast that is sending
(its figures not moving, so the streams are idle: what is measured is the cost of following).

Before the one reader per process, every open stream read the progress itself each second, so
reads per second grew with N; now they should stay at about one. Also checks the process cap:
one stream past it is answered 503 with Retry-After.

    .venv/bin/python bench/live_streams.py [--streams 1,40,160] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

from adapters.fake.port import FakePort  # noqa: E402
from bot.broadcasts import service as broadcasts  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.people.tables import Person  # noqa: E402
from bot.programme import loader  # noqa: E402
from staffvoice.tables import import_all_tables  # noqa: E402
from staffvoice.web.pages import broadcasts as page  # noqa: E402
from storage.db import Database  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHANGE = "changelead@northbridge.example"


async def _sign_in(core: Core, base: str) -> aiohttp.ClientSession:
    from staffvoice.web.auth import create_login_link

    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base]))
    link = await create_login_link(core, CHANGE, base)
    html = await (await http.get(link)).text()
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    await http.post(f"{base}/app/auth/link", data={"csrf": csrf, "token": link.split("token=")[1]})
    return http


async def run(counts: list[int], seconds: float) -> None:
    import_all_tables()
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    tmp = tempfile.mkdtemp(prefix="sv-live-")
    url = f"sqlite+svinline:///{tmp}/live.db"
    db = Database(url)
    await db.upgrade()
    core = Core(db, settings=Settings(database_url=url, secret_key="bench-" * 8), clock=SystemClock())
    await core.start()
    core.add_port(FakePort())
    await loader.load(db, (ROOT / "examples" / "programme.yaml").read_text(), core.router)
    async with db.session() as s:
        await s.execute(update(Person).values(work_pattern=None))
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    await broadcasts.publish_to_staff(core, author, title="Bench", text="Following.")  # left sending

    reads = 0
    recent = broadcasts.recent

    async def counted(c: Core, n: int) -> list[Any]:
        nonlocal reads
        reads += 1
        return await recent(c, n)

    broadcasts.recent = counted  # type: ignore[assignment]
    app, _ = build_app(core, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(core))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(f"{'streams':>8} {'reads/s':>8} {'cpu ms/s':>9}")
    try:
        for n in counts:
            per = getattr(page, "MAX_PER_SESSION", 4)  # (before the caps, any number)
            sessions = [await _sign_in(core, base) for _ in range(-(-n // per))]
            streams = [await sessions[i // per].get(f"{base}/app/broadcasts/live")
                       for i in range(n)]
            assert all(r.status == 200 for r in streams), [r.status for r in streams]
            for r in streams:
                await r.content.readuntil(b"\n\n")  # retry:
                await r.content.readuntil(b"\n\n")  # the first figures
            reads, cpu0, t0 = 0, time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            dt = time.monotonic() - t0
            print(f"{n:>8} {reads / dt:>8.1f} {1000 * (time.process_time() - cpu0) / dt:>9.1f}")
            for r in streams:
                r.close()
            for h in sessions:
                await h.close()
        over = getattr(page, "MAX_STREAMS", None)
        if over is None:
            return
        page.MAX_STREAMS = 0
        http = await _sign_in(core, base)
        busy = await http.get(f"{base}/app/broadcasts/live")
        print(f"past the cap ({over}): HTTP {busy.status}, Retry-After {busy.headers.get('Retry-After')}")
        await http.close()
    finally:
        broadcasts.recent = recent  # type: ignore[assignment]
        await runner.cleanup()
        await db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,40,160")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    asyncio.run(run([int(x) for x in args.streams.split(",")], args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
