"""`staffvoice schedule list` and `staffvoice schedule run-due`."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.config import Settings
from bot.core import Core
from bot.scheduling import plan as cli
from bot.scheduling.leader import Always, for_database
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tables import JobRecord
from staffvoice.cli import main
from storage.db import Database
from tests.test_scheduler_week import at, programme_router


async def test_list_shows_each_jobs_next_time_in_local_time(loaded: Core, clock: FakeClock) -> None:
    core = loaded
    r = programme_router()

    async def sweep(core: Core, now: datetime) -> int:
        """Tidy old events."""
        return 0

    r.ticker("sweep", sweep)
    core.router = r
    clock.set(at(24, 8))
    rows = await cli.plan(core, clock.now())
    assert [(p.job, p.next_at) for p in rows] == [
        ("round", at(24, 9)), ("checkin", at(24, 9, 30)), ("digest", at(24, 12)), ("sweep", None)]
    text = cli.render(rows, clock.now(), "Europe/London", 30)
    assert "times in Europe/London (now Thu 24 Dec 08:00 GMT)" in text
    lines = {line.split()[0]: line for line in text.splitlines()[3:]}
    assert "Thu 24 Dec 09:30 GMT" in lines["checkin"] and "never" in lines["checkin"]
    assert "every tick (30 s)" in lines["sweep"] and "Tidy old events." in lines["sweep"]

    await Scheduler(core, Always()).tick()
    rows = {p.job: p for p in await cli.plan(core, clock.now())}
    assert rows["sweep"].last_run_at == at(24, 8) and rows["sweep"].last_outcome == "ok"


def test_run_due_runs_every_job_once_and_stands_aside_for_a_running_scheduler(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "list"], settings=settings) == 0
    out = capsys.readouterr().out
    assert "Scheduled work, times in Europe/London" in out and "pulse" in out

    assert main(["schedule", "run-due"], settings=settings) == 0
    out = capsys.readouterr().out
    assert "pulse: ok" in out

    async def records() -> dict[str, str]:
        db = Database(settings.database_url)
        try:
            async with db.session() as s:
                return {j.name: j.last_outcome for j in (await s.execute(select(JobRecord))).scalars()}
        finally:
            await db.dispose()

    assert asyncio.run(records())["pulse"] == "ok"

    async def hold_and_run() -> str:
        # As if `staffvoice serve` were leading on this database (lock file or advisory lock).
        db = Database(settings.database_url)
        serving = for_database(db)
        try:
            assert await serving.ensure()
            return await asyncio.to_thread(lambda: str(main(["schedule", "run-due"], settings=settings)))
        finally:
            await serving.release()
            await db.dispose()

    assert asyncio.run(hold_and_run()) == "0"
    err = capsys.readouterr().err
    assert "another staffvoice process is running the scheduler; nothing was run" in err
