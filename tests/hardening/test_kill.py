"""The process is killed (SIGKILL) in the middle of a pulse round and of a broadcast; a new
process picks up; we count what everyone received."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.broadcasts.tables import Broadcast
from bot.core import Core
from bot.people.tables import Person
from bot.programme.core_sections import get_setting
from bot.pulse.tables import PulseParticipation
from bot.workhours import Pattern, is_working_moment
from tests.conftest import MONDAY_10, ROOT
from tests.fakes.ratelimited_platform import PlatformConfig, RateLimitedPlatform
from tests.test_broadcast_engine import everyone_count, open_dms, publish


@pytest.fixture
async def platform() -> AsyncIterator[RateLimitedPlatform]:
    # Slow enough (30 ms a send) that a kill lands in the middle of the work.
    p = RateLimitedPlatform(PlatformConfig(workspace_rate=2000, conversation_rate=2000, burst=50,
                                           latency_s=0.03))
    await p.start()
    yield p
    await p.stop()


async def start(mode: str, db_url: str, platform: RateLimitedPlatform,
                epoch: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.hardening.runner", mode, db_url, platform.url, str(epoch),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"started", line + (await proc.stderr.read() if proc.stderr else b"")
    return proc


async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.wait()


async def test_killed_during_a_pulse_round_nobody_is_missed(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    await open_dms(loaded)
    epoch = time.time()
    # After 6 invitations the platform holds further sends in flight, so the kill always lands
    # mid-round with requests outstanding (a fast machine once sent all 24 before the kill).
    platform.hold_after = 6
    first = await start("pulse", db_url, platform, epoch)
    await until(lambda: platform.held >= 1)
    await kill(first)
    killed_after = len(platform.deliveries)
    platform.release()  # what was in flight reaches the platform; the answers are lost

    second = await start("pulse", db_url, platform, epoch)
    assert second.stdout is not None
    try:
        assert (await asyncio.wait_for(second.stdout.readline(), 60)).strip() == b"done"
        await second.wait()
    finally:
        if second.returncode is None:  # never leave it running after a failure
            await kill(second)

    async with loaded.db.session() as s:
        parts = (await s.execute(select(PulseParticipation))).scalars().all()
        prog = await get_setting(s, "programme", {})
        at_work = {p.id for p in (await s.execute(select(Person))).scalars()
                   if is_working_moment(Pattern.from_settings(prog, p.tz, p.work_pattern), MONDAY_10)}
    invited = [p for p in parts if p.invited_at is not None]
    per_conversation = Counter(d.conversation for d in platform.deliveries
                               if "question 1 of 7" in d.text)
    assert 0 < killed_after < len(invited), "the kill landed in the middle of the round"
    assert {p.person_id for p in invited} == {p.person_id for p in parts if p.person_id in at_work}, \
        "everyone at work was invited"
    assert len(per_conversation) == len(invited), "every invitation reached its DM"
    # Invitations go through the delivery ledger: the ones in flight when the process died are
    # looked up by their key before being sent again, so none is sent twice, none is missed.
    twice = sum(per_conversation.values()) - len(per_conversation)
    assert twice == 0, per_conversation
    print(f"pulse kill: {killed_after} sent before the kill, {len(invited)} invited, {twice} twice")


async def test_killed_during_a_broadcast_the_next_process_finishes_it_without_duplicates(
    loaded: Core, db_url: str, platform: RateLimitedPlatform
) -> None:
    from adapters.fake.http_port import HttpPort

    await open_dms(loaded)
    hp = HttpPort(platform.url)
    loaded.add_port(hp)  # the audience is everyone on the connected platforms
    try:
        bid = await publish(loaded)
    finally:
        await hp.close()
    n = await everyone_count(loaded)
    epoch = time.time()
    first = await start("broadcast", db_url, platform, epoch)
    await until(lambda: len(platform.keyed()) >= 6)
    await kill(first)
    killed_after = len(platform.keyed())
    assert killed_after < n, "the kill landed in the middle of the broadcast"

    second = await start("broadcast", db_url, platform, epoch)
    try:
        await until(lambda: len(platform.keys()) >= n, timeout=90)

        async def state() -> str:
            async with loaded.db.session() as s:
                return str((await s.get(Broadcast, bid)).state)  # type: ignore[union-attr]

        deadline = time.monotonic() + 30
        while await state() != "done":
            assert time.monotonic() < deadline, await state()
            await asyncio.sleep(0.05)
    finally:
        await kill(second)
    assert len(platform.keys()) == n and platform.duplicates() == 0
