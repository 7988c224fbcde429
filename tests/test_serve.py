"""`staffvoice serve`: a real process answers health, readiness and metrics, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from bot.router import Router
from tests.conftest import EXAMPLE, PG_URL, ROOT, TEST_SECRET

LISTENING = re.compile(r"staffvoice listening on (http://\S+)")


def _env(db_url: str, **extra: str) -> dict[str, str]:
    # Only what the server needs: no platform credentials leak in from the developer's shell.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(STAFFVOICE_DATABASE_URL=db_url, STAFFVOICE_SECRET_KEY=TEST_SECRET,
               STAFFVOICE_PROGRAMME=str(EXAMPLE), STAFFVOICE_SCHEDULER_INTERVAL="0.5",
               STAFFVOICE_LOG_JSON="1", PYTHONUNBUFFERED="1", **extra)
    return env


async def _start(db_url: str, tmp: Path, name: str, *args: str
                 ) -> tuple[asyncio.subprocess.Process, str, Path]:
    """`staffvoice serve` as a subprocess (`args`: more of its options), once it listens."""
    err = tmp / f"{name}.err"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "staffvoice", "serve", "--host", "127.0.0.1", "--port", "0", *args,
        cwd=ROOT, env=_env(db_url), stdout=asyncio.subprocess.PIPE, stderr=err.open("wb"))
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            if not line:
                raise AssertionError(f"serve exited early: {err.read_text()[-3000:]}")
            m = LISTENING.search(line)
            if m:
                return proc, m.group(1), err
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def _metric(http: aiohttp.ClientSession, base: str, name: str, want: str) -> str:
    """Poll /metrics until `name` shows `want` (the first tick runs just after start-up)."""
    body = ""
    for _ in range(100):
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200
            body = await r.text()
        if f"{name} {want}" in body:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never became {want}:\n{body}")


async def _stop(proc: asyncio.subprocess.Process, err: Path) -> str:
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), 30)
    log = err.read_text()
    assert rc == 0, log[-3000:]
    assert "stopped cleanly" in log and "Traceback" not in log
    return log


async def test_serve_answers_health_readiness_metrics_and_stops_on_sigterm(
        db_url: str, tmp_path: Path) -> None:
    proc, base, err = await _start(db_url, tmp_path, "serve")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(f"{base}/readyz") as r:
                body = await r.json()
                assert r.status == 200, body
                assert body == {"database": "ok", "migrations": "current", "status": "ready"}
            text = await _metric(http, base, "staffvoice_scheduler_leader", "1.0")
            for name in ("staffvoice_events_handled_total", "staffvoice_event_errors_total",
                         "staffvoice_send_ledger",
                         "staffvoice_scheduler_lag_seconds",
                         "staffvoice_scheduler_last_tick_timestamp_seconds"):
                assert f"# TYPE {name.removesuffix('_total')}" in text, name
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    log = await _stop(proc, err)
    assert '"programme loaded"' in log


@pytest.mark.skipif(bool(PG_URL), reason="the one-process rule is SQLite's")
async def test_a_second_process_on_the_same_sqlite_database_says_so_and_does_not_schedule(
        db_url: str, tmp_path: Path) -> None:
    first, base1, err1 = await _start(db_url, tmp_path, "first")
    try:
        second, base2, err2 = await _start(db_url, tmp_path, "second")
        try:
            async with aiohttp.ClientSession() as http:
                await _metric(http, base1, "staffvoice_scheduler_leader", "1.0")
                async with http.get(f"{base2}/healthz") as r:
                    assert r.status == 200  # it still serves requests
                async with http.get(f"{base2}/metrics") as r:
                    assert "staffvoice_scheduler_leader 0.0" in await r.text()
        finally:
            log2 = await _stop(second, err2)
    finally:
        await _stop(first, err1)
    assert "another staffvoice process is already running on this SQLite database" in log2


async def test_sigterm_lets_an_in_flight_send_finish(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from staffvoice.serve import lifecycle as server

    events: list[str] = []

    async def sender(core: object, stop: asyncio.Event) -> None:
        while not stop.is_set():
            events.append("send started")
            os.kill(os.getpid(), signal.SIGTERM)  # the platform stops us mid-send
            await asyncio.sleep(0.2)  # the send in flight
            events.append("send finished")

    r = Router()
    r.worker("sender", sender)
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET)
    rc = await asyncio.wait_for(server.serve(settings, "127.0.0.1", 0, env={}, router=r), 60)
    assert rc == 0
    assert events == ["send started", "send finished"]
