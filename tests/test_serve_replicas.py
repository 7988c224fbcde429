"""Several ordinary `staffvoice serve` processes (replicas) share one port with `--reuse-port`,
each a whole server: all answer, all drain the send ledger, each stops on its own SIGTERM.
Started as real subprocesses, as tests/test_serve.py does (PostgreSQL: SQLite serves from one)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from bot.config import Settings
from staffvoice.cli import main
from storage.db import Database
from tests.conftest import PG_URL, ROOT, TEST_SECRET
from tests.test_serve import LISTENING, _env

needs_pg = pytest.mark.skipif(not PG_URL, reason="replicas share a PostgreSQL database")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _replica(db_url: str, tmp: Path, name: str, port: int, **env: str
                   ) -> tuple[asyncio.subprocess.Process, Path]:
    """`staffvoice serve --reuse-port` on `port`, once it listens."""
    err = tmp / f"{name}.err"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "staffvoice", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--reuse-port", cwd=ROOT, env=_env(db_url, **env), stdout=asyncio.subprocess.PIPE,
        stderr=err.open("wb"))
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            if not line:
                raise AssertionError(f"{name} exited early: {err.read_text()[-3000:]}")
            if LISTENING.search(line):
                return proc, err
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def _healthz_pids(base: str, want: int, rounds: int = 50) -> set[int]:
    """Ask /healthz on fresh connections until `want` different processes have answered."""
    seen: set[int] = set()
    conn = aiohttp.TCPConnector(force_close=True)  # a new connection each time: any replica may take it
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def one() -> int:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                return int((await r.json())["pid"])

        for _ in range(rounds):
            seen |= set(await asyncio.gather(*(one() for _ in range(10))))
            if len(seen) >= want:
                return seen
            await asyncio.sleep(0.05)
    raise AssertionError(f"only these pids answered: {seen}")


async def _stop(proc: asyncio.subprocess.Process, err: Path) -> list[dict]:
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), 30)
    text = err.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _replicas(db_url: str, tmp: Path, n: int) -> tuple[list[tuple[asyncio.subprocess.Process, Path]], str]:
    port = _free_port()
    started = await asyncio.gather(*(_replica(db_url, tmp, f"r{i}", port) for i in range(n)),
                                   return_exceptions=True)
    ok = [r for r in started if not isinstance(r, BaseException)]
    if len(ok) < n:
        for proc, _ in ok:
            proc.kill()
            await proc.wait()
        raise next(r for r in started if isinstance(r, BaseException))
    return ok, f"http://127.0.0.1:{port}"


@needs_pg
async def test_two_replicas_share_the_port_each_drains_the_ledger_and_each_stops_on_sigterm(
        db_url: str, tmp_path: Path) -> None:
    procs, base = await _replicas(db_url, tmp_path, 2)
    try:
        pids = await _healthz_pids(base, 2)
        assert pids == {p.pid for p, _ in procs}  # the kernel spreads connections over both
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
            assert r.status == 200, await r.text()
        first, second = procs
        logs = await _stop(*first)
        # The survivor keeps serving the port alone.
        assert await _healthz_pids(base, 1) == {second[0].pid}
        logs += await _stop(*second)
    except BaseException:
        for p, _ in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        raise
    assert sum(r["msg"] == "stopped cleanly" for r in logs) == 2
    # Every replica drains the send ledger (its router workers run); none is special.
    serving = [r["workers"] for r in logs if r["msg"] == "serving"]
    assert len(serving) == 2 and all(n >= 1 for n in serving), serving
    # One of them leads the scheduler.
    assert sum(r["msg"].startswith("another replica runs the scheduler") for r in logs) == 1


@needs_pg
async def test_replicas_starting_at_once_on_an_empty_database_migrate_it_once(tmp_path: Path) -> None:
    """Start-up (migrations, the server key, the programme) is taken in turns: the first
    replica migrates, the others find it done, and none fails on a half-made schema."""
    url = make_url(PG_URL)
    fresh = url.set(database=f"{url.database}_replicas")
    admin = Database(PG_URL)
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{fresh.database}"')
        await conn.exec_driver_sql(f'CREATE DATABASE "{fresh.database}"')
    try:
        procs, base = await _replicas(fresh.render_as_string(hide_password=False), tmp_path, 3)
        try:
            assert len(await _healthz_pids(base, 3)) == 3
        finally:
            logs = []
            for p in procs:
                logs += await _stop(*p)
        assert sum(r["msg"] == "programme loaded" for r in logs) == 3  # in turns, idempotently
    finally:
        async with admin.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{fresh.database}" WITH (FORCE)')
        await admin.dispose()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_reuse_port_on_sqlite_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """SQLite ignores FOR UPDATE: two processes could both send work claimed that way (an urgent
    safeguarding alert among it). One process serves SQLite."""
    db = tmp_path / "refused.db"
    settings = Settings.from_env({"STAFFVOICE_DATABASE_URL": f"sqlite+svinline:///{db}",
                                  "STAFFVOICE_SECRET_KEY": TEST_SECRET,
                                  "STAFFVOICE_REUSE_PORT": "1" if how == "environment" else ""})
    flag = ["--reuse-port"] if how == "flag" else []
    assert main(["serve", "--port", "0", *flag], settings=settings) == 2
    err = capsys.readouterr().err
    assert err == ("error: --reuse-port needs PostgreSQL (STAFFVOICE_DATABASE_URL); "
                   "SQLite serves from one process\n")
    assert not db.exists()  # nothing was migrated or bound
