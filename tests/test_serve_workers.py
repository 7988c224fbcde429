"""`staffvoice serve --workers N`: N forked processes share one port, stop together on SIGTERM,
and a worker that dies is replaced. Started as a real subprocess, as tests/test_serve.py does."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from tests.conftest import PG_URL, TEST_SECRET
from tests.test_serve import _start as start_serve

LISTENING = re.compile(r"staffvoice listening on (http://\S+)")


async def _start(db_url: str, tmp: Path, workers: int) -> tuple[asyncio.subprocess.Process, str, Path]:
    return await start_serve(db_url, tmp, "serve", "--workers", str(workers))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    # The workers get SIGTERM when their parent dies (PR_SET_PDEATHSIG): none is left behind.
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        out |= {int(p) for p in f.read_text().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _healthz_pids(base: str, want: int, exclude: set[int] = frozenset(),  # type: ignore[assignment]
                        rounds: int = 50) -> set[int]:
    """Ask /healthz on fresh connections, 10 at a time, until `want` pids outside `exclude` have
    answered; every request must succeed."""
    seen: set[int] = set()
    conn = aiohttp.TCPConnector(force_close=True)  # a new connection each time: any worker may take it
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def one() -> int:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                body = await r.json()
                assert body["status"] == "ok"
                return int(body["pid"])

        for _ in range(rounds):
            seen |= set(await asyncio.gather(*(one() for _ in range(10))))
            if len(seen - exclude) >= want:
                return seen
            await asyncio.sleep(0.05)
    raise AssertionError(f"only these pids answered: {seen} (excluding {exclude})")


async def _stop(proc: asyncio.subprocess.Process, err: Path, workers: set[int]) -> list[dict]:
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), 10)
    text = err.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    for pid in workers:
        for _ in range(50):  # reaped by the parent before it exited; this is only belt and braces
            if not _alive(pid):
                break
            await asyncio.sleep(0.1)
        assert not _alive(pid), f"worker {pid} outlived its parent"
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


needs_pg = pytest.mark.skipif(not PG_URL, reason="--workers needs PostgreSQL")


@needs_pg
async def test_two_workers_share_the_port_and_stop_together_on_sigterm(
        db_url: str, tmp_path: Path) -> None:
    proc, base, err = await _start(db_url, tmp_path, 2)
    try:
        pids = await _healthz_pids(base, 2)
        assert pids == _children(proc.pid) and len(pids) == 2  # the parent serves nothing itself
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
            assert r.status == 200, await r.text()
    except BaseException:
        await _kill(proc)
        raise
    logs = await _stop(proc, err, pids)
    assert sum(r["msg"] == "stopped cleanly" for r in logs) == 3  # two workers and the parent
    assert sum(r["msg"] == "programme loaded" for r in logs) == 1  # by the parent alone
    # The send-ledger drain (the router workers) runs in worker 0 only.
    serving = {r["worker"]: r["workers"] for r in logs if r["msg"] == "serving" and "worker" in r}
    assert serving[0] >= 1 and serving[1] == 0, serving


@needs_pg
async def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(
        db_url: str, tmp_path: Path) -> None:
    proc, base, err = await _start(db_url, tmp_path, 2)
    try:
        first = await _healthz_pids(base, 2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # The survivor answers at once; the replacement (a new pid) after a short pause.
        seen = await _healthz_pids(base, 1, exclude=first)
        assert victim not in _children(proc.pid)
        replacement = _children(proc.pid) - first
        assert len(replacement) == 1 and replacement <= seen
        assert len(_children(proc.pid)) == 2
    except BaseException:
        await _kill(proc)
        raise
    logs = await _stop(proc, err, _children(proc.pid) | first)
    died = [r for r in logs if r["msg"] == "worker died; starting a replacement"]
    assert len(died) == 1 and died[0]["pid"] == victim and died[0]["exit"] == -signal.SIGKILL


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_workers_below_one_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from adapters import server

    with pytest.raises(SystemExit) as e:
        server.cli(Settings(secret_key=TEST_SECRET), ["--workers", value])
    assert e.value.code == 2
    assert "argument --workers: must be" in capsys.readouterr().err


def test_workers_on_sqlite_are_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite ignores FOR UPDATE: two workers could both send work claimed that way (an urgent
    safeguarding alert among it). One process serves SQLite."""
    from adapters import server

    db = tmp_path / "refused.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db}", secret_key=TEST_SECRET)
    assert server.run(settings, "127.0.0.1", 0, workers=2) == 2
    assert "--workers needs PostgreSQL" in capsys.readouterr().err
    assert not db.exists()  # nothing was migrated, bound or forked
