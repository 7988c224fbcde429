"""Anonymous mode is checked against the address `serve` actually binds (`--host` wins over
STAFFVOICE_HOST), not the variable alone (issue 17 item 13)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from adapters.teams import config
from bot.config import Settings
from tests.conftest import ROOT, TEST_SECRET
from tests.test_serve import LISTENING, _env


async def test_serve_on_every_address_refuses_anonymous_mode(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from staffvoice.serve.lifecycle import serve

    settings = Settings(database_url=db_url, secret_key=TEST_SECRET)
    # STAFFVOICE_HOST is unset (it defaults to 127.0.0.1), but --host 0.0.0.0 was asked for.
    rc = await asyncio.wait_for(
        serve(settings, "0.0.0.0", 0, env={"STAFFVOICE_TEAMS_ANONYMOUS": "true"}), 60)
    assert rc == 2
    assert any("loopback" in (r.exc_text or r.getMessage()) for r in caplog.records)


async def test_serve_on_loopback_allows_anonymous_mode_whatever_staffvoice_host_says(
    db_url: str, tmp_path: Path
) -> None:
    err = tmp_path / "serve.err"
    env = _env(db_url, STAFFVOICE_TEAMS_ANONYMOUS="true", STAFFVOICE_HOST="10.1.2.3")
    env.pop("STAFFVOICE_PROGRAMME")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "staffvoice", "serve", "--host", "127.0.0.1", "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=err.open("wb"))
    assert proc.stdout is not None
    try:
        base = ""
        while not base:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            assert line, f"serve exited early: {err.read_text()[-3000:]}"
            m = LISTENING.search(line)
            base = m.group(1) if m else ""
        async with aiohttp.ClientSession() as http, http.post(f"{base}/api/messages", json={}) as r:
            assert r.status == 400  # the anonymous endpoint is there (and wants an activity)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert "ANONYMOUS" in err.read_text()


@pytest.mark.parametrize(("bound", "allowed"), [
    ("127.0.0.1", True), ("::1", True), ("127.0.0.1,::1", True), ("localhost", True),
    ("0.0.0.0", False), ("", False), ("127.0.0.1,10.1.2.3", False), ("::", False),
])
def test_the_check_reads_every_bound_address(bound: str, allowed: bool) -> None:
    env = {"STAFFVOICE_TEAMS_ANONYMOUS": "true", config.BOUND_HOSTS: bound,
           "STAFFVOICE_HOST": "10.1.2.3" if allowed else "127.0.0.1"}
    if allowed:
        cfg = config.load(env)
        assert cfg is not None and cfg.anonymous
    else:
        with pytest.raises(config.TeamsConfigError, match="loopback"):
            config.load(env)
