"""The served application in-process: events are counted, readiness follows migrations."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.fake.port import FakePort
from bot.core import Core
from bot.model import ConversationRef, MessageEvent, UserRef
from staffvoice.serve.app import build_app
from staffvoice.serve.health import Health
from storage.db import Database

# What reverse proxies and tunnels add to a request they forwarded (one of them is enough).
PROXY_HEADERS = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9",
                 "X-Real-IP": "203.0.113.9", "Via": "1.1 proxy.example",
                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "staffvoice.example",
                 "CF-Connecting-IP": "203.0.113.9", "True-Client-IP": "203.0.113.9"}

EMAIL = "practitioner1@northbridge.example"


async def test_metrics_count_events_by_kind_and_outcome(loaded: Core) -> None:
    core = loaded
    port = FakePort()
    core.add_port(port)
    app, lines = build_app(core, {}, Health(core))
    # (then one line each for the web surfaces: the dashboard, the families pages)
    assert lines[:2] == ["slack: not configured", "teams: not configured"]
    # Counting is a middleware of the core, not a replacement of its method.
    assert "handle" not in vars(core) and len(core.middleware) == 1
    user = UserRef("fake", "W1", "U1", email=EMAIL)
    dm = ConversationRef("fake", "W1", "D-U1")
    async with TestClient(TestServer(app)) as client:
        await core.handle(MessageEvent("ev-1", user, dm, text="help"), port)
        await core.handle(MessageEvent("ev-1", user, dm, text="help"), port)  # a redelivery
        await core.handle(MessageEvent("ev-2", user, dm, text="whoami"), port)
        body = await (await client.get("/metrics")).text()
    assert 'staffvoice_events_handled_total{kind="MessageEvent",outcome="ok"} 2.0' in body
    assert 'staffvoice_events_handled_total{kind="MessageEvent",outcome="duplicate"} 1.0' in body
    assert "staffvoice_scheduler_leader 0.0" in body  # no scheduler in this process
    assert len(port.messages("D-U1")) == 3  # the privacy notice on first contact, two answers


async def test_metrics_are_not_served_to_the_internet(loaded: Core) -> None:
    """/metrics shares the public port: without STAFFVOICE_METRICS_TOKEN it answers a scraper on
    this machine or the private network only, never a request a reverse proxy forwarded; with
    the token, only a request that carries it (Authorization: Bearer)."""
    app, _ = build_app(loaded, {}, Health(loaded))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 200  # a local scraper
        for header, value in PROXY_HEADERS.items():
            resp = await client.get("/metrics", headers={header: value})
            text = await resp.text()
            assert resp.status == 403 and "staffvoice_" not in text, header
    app, _ = build_app(loaded, {"STAFFVOICE_METRICS_TOKEN": "scrape-me-0123456789"}, Health(loaded))
    async with TestClient(TestServer(app)) as client:
        for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me-0123456789"}):
            resp = await client.get("/metrics", headers=sent)
            assert resp.status == 401 and "staffvoice_" not in await resp.text(), sent
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        resp = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789",
                                                      "X-Forwarded-For": "203.0.113.9"})
        assert resp.status == 200 and "staffvoice_scheduler_leader" in await resp.text()


def test_metrics_without_a_token_answer_only_the_documented_networks() -> None:
    """docs/deploy.md names loopback, 10/8, 172.16/12, 192.168/16, fc00::/7 and link-local; a
    Teredo address (2001::/32) is one the internet reaches, though Python calls it private."""
    from aiohttp.test_utils import make_mocked_request

    from staffvoice.serve.metrics import may_scrape

    def status(remote: str) -> int:
        refused = may_scrape(make_mocked_request("GET", "/metrics").clone(remote=remote), "")
        return 200 if refused is None else refused.status

    for local in ("127.0.0.1", "10.1.2.3", "172.20.0.5", "192.168.1.9", "169.254.1.1", "::1",
                  "fd00::7", "fe80::1", "::ffff:10.1.2.3"):
        assert status(local) == 200, local
    for public in ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "203.0.113.9", "100.64.0.1",
                   "::ffff:203.0.113.9", "2001:db8::1", "198.18.0.1", "::"):
        assert status(public) == 403, public


async def test_readyz_says_not_ready_until_migrations_are_applied(tmp_path: Path) -> None:
    db = Database(f"sqlite+svinline:///{tmp_path}/fresh.db")
    core = Core(db)
    app, _ = build_app(core, {}, Health(core))
    try:
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/readyz")
            assert r.status == 503 and (await r.json())["migrations"] == "behind"
            await db.upgrade()
            r = await client.get("/readyz")
            assert r.status == 200 and (await r.json())["status"] == "ready"
            assert (await client.get("/healthz")).status == 200
    finally:
        await db.dispose()


START_UP = """
import asyncio, sys
from bot.config import Settings
from bot.core import Core
from staffvoice.serve.lifecycle import _start_core
from storage.db import Database

async def main(url, secret):
    db = Database(url)
    heads = await _start_core(Core(db), Settings(database_url=url, secret_key=secret))
    await db.dispose()
    print(sorted(heads or ()), sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako"}))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_serve_migrates_in_a_child_process_and_serves_without_alembic(
        db_url: str, tmp_path: Path) -> None:
    """Alembic and Mako (about 11 MB) never enter the serving process: start-up's migrations
    run in a child, and /readyz compares the heads it reported with the version table."""
    import asyncio
    import sys

    from tests.conftest import PG_URL, ROOT, TEST_SECRET

    url = db_url if PG_URL else f"sqlite+svinline:///{tmp_path}/fresh.db"  # SQLite: unmigrated
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", START_UP, url, TEST_SECRET, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    db = Database(url)
    try:
        applied, expected = await db.current_heads()
        assert applied == expected
        assert out.decode().split("\n")[-2] == f"{sorted(expected)} []"  # heads, no Alembic
        core = Core(db)
        async with TestClient(TestServer(build_app(core, {}, Health(core, heads=expected))[0])) as client:
            r = await client.get("/readyz")
            assert r.status == 200 and (await r.json())["migrations"] == "current"
        async with TestClient(TestServer(build_app(core, {}, Health(core, heads={*expected, "f00d"}))[0])) as client:
            r = await client.get("/readyz")  # this code expects a migration the database lacks
            assert r.status == 503 and (await r.json())["migrations"] == "behind"
    finally:
        await db.dispose()


async def test_serve_says_in_one_line_why_its_migrations_failed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The child's failure reaches the log as one line naming the cause, without the URL."""
    import sqlite3

    from bot.config import Settings
    from staffvoice.serve.lifecycle import serve
    from tests.conftest import TEST_SECRET

    path = tmp_path / "elsewhere.db"  # migrated by some other build of staffvoice
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('f00dfeedbeef')")
    settings = Settings(database_url=f"sqlite+svinline:///{path}", secret_key=TEST_SECRET)
    assert await serve(settings, "127.0.0.1", 0, env={}) == 2
    failed = [r for r in caplog.records if r.getMessage() == "start-up failed"]
    assert failed and failed[0].exc_info is not None
    why = str(failed[0].exc_info[1])
    assert why.startswith("migrations failed: ") and "f00dfeedbeef" in why and str(path) not in why


async def test_serve_refuses_to_start_with_a_broken_programme_file(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from bot.config import Settings
    from staffvoice.serve.lifecycle import serve

    bad = tmp_path / "programme.yaml"
    bad.write_text("programme:\n  name: Northbridge\n  timezone: Mars/Olympus\n")
    settings = Settings(database_url=db_url, programme_file=str(bad))
    assert await serve(settings, "127.0.0.1", 0, env={}) == 2
    problems = [r for r in caplog.records if r.getMessage().startswith("the programme file has problems")]
    assert problems and "Mars/Olympus" in getattr(problems[0], "problems", "")


def test_the_server_collects_garbage_rarely_and_never_walks_start_up_objects() -> None:
    import gc

    from staffvoice.serve.lifecycle import GC_YOUNG, tune_gc, untune_gc

    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0  # serve() run by another test undid its tuning
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG, before[1], before[2])
        assert GC_YOUNG > 10 * before[0]
        assert gc.get_freeze_count() > 10_000  # modules, mappers, caches: out of every collection
    finally:
        untune_gc(before)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_the_privacy_notice_is_served_with_no_platform_configured(loaded: Core) -> None:
    """The notice is always reachable (issue 21 point 5), not only when Teams is mounted."""
    app, lines = build_app(loaded, {}, Health(loaded))
    assert lines[:2] == ["slack: not configured", "teams: not configured"]
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/privacy")
        text = await resp.text()
        terms = await client.get("/terms")
    assert resp.status == 200 and "<h1>Privacy notice</h1>" in text
    assert "Pulse answers are stored without your name" in text
    assert terms.status == 200


async def test_every_response_of_the_server_may_not_be_framed_or_sniffed(loaded: Core) -> None:
    """Not only the dashboard's pages: the privacy notice, health, metrics and whatever a
    platform adapter answers cannot be framed by another site (clickjacking) nor read as
    another type than they say; the dashboard keeps its own, stricter policy."""
    app, _ = build_app(loaded, {}, Health(loaded))
    async with TestClient(TestServer(app)) as client:
        for path in ("/privacy", "/terms", "/healthz", "/readyz", "/metrics", "/nowhere"):
            h = (await client.get(path)).headers
            assert h["X-Content-Type-Options"] == "nosniff", path
            assert h["X-Frame-Options"] == "DENY", path
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
            assert h["Referrer-Policy"] == "no-referrer", path
        dashboard = (await client.get("/app/signin")).headers["Content-Security-Policy"]
        assert dashboard.startswith("default-src 'none'; style-src 'self'")
        # A 404 or 405 raised by the router gets them without the deprecated way of returning
        # an HTTPException from a middleware (aiohttp warns on each, and will refuse it).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for resp in (await client.get("/nowhere"), await client.post("/healthz")):
                assert resp.status in (404, 405) and resp.headers["X-Frame-Options"] == "DENY"
        assert [str(w.message) for w in caught if "HTTPException" in str(w.message)] == []


SERVING = """
import asyncio, sys
from datetime import date
from bot.config import Settings
from bot.core import Core
from bot.workhours import is_holiday
from staffvoice.serve.app import build_app
from staffvoice.serve.health import Health
from staffvoice.serve.lifecycle import _start_core
from storage.db import Database

async def main(url, secret, programme):
    db = Database(url)
    core = Core(db)
    heads = await _start_core(core, Settings(database_url=url, secret_key=secret,
                                             programme_file=programme))
    env = {"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-t",
           "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": "app",
           "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET": "x",
           "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__TENANTID": "tenant"}
    app, lines = build_app(core, env, Health(core, heads=heads))
    # what the scheduler and the send ledger ask before each prompt (Christmas 2026, a Friday)
    christmas = is_holiday("GB-ENG", date(2026, 12, 25))
    await db.dispose()
    print(lines[:2], christmas)
    print(" ".join(sorted(sys.modules)))

asyncio.run(main(*sys.argv[1:]))
"""
# What the serving process leaves out until a rare path needs it (bench/README.md, "Memory at
# start"): a chart drawn in chat (Pillow), a near miss of a milestone's or team's name
# (rapidfuzz), the first web page drawn (Jinja), the first dashboard sign-in (joserfc), other
# countries' bank holidays (the `holidays.countries` package imports all of them), migrations
# (Alembic, Mako), the HR file import (openpyxl).
LEFT_OUT = ("PIL", "rapidfuzz", "jinja2", "joserfc", "alembic", "mako", "openpyxl")


async def test_the_serving_process_imports_neither_pillow_nor_rapidfuzz_nor_every_country(
        db_url: str, tmp_path: Path) -> None:
    """Started as `serve` starts, with Slack and Teams mounted and the example programme (bank
    holidays of GB-ENG): the modules only rare paths use stay out, and of `holidays`' countries
    only the programme's region's own is imported, still knowing Christmas."""
    import asyncio
    import sys

    from tests.conftest import PG_URL, ROOT, TEST_SECRET

    url = db_url if PG_URL else f"sqlite+svinline:///{tmp_path}/fresh.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVING, url, TEST_SECRET, str(ROOT / "examples/programme.yaml"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    answer, modules = out.decode().splitlines()[-2:]
    assert answer == ("['slack: HTTP events at /slack/events, single workspace, command /voice', "
                      "'teams: /api/messages, JWT-validated for app app'] True")
    loaded = modules.split()
    assert [m for m in loaded if m.split(".")[0] in LEFT_OUT] == []
    countries = [m for m in loaded if m.startswith("holidays.countries")]
    assert countries == ["holidays.countries", "holidays.countries.united_kingdom"]
