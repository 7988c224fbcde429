"""Background work takes its turn behind requests (bot/background.py): a request that arrives
while background steps are queued is started before the next of them, and background work
keeps its own order. Order of events only, never time."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from bot import background
from bot.core import Core
from bot.scheduling.leader import Always
from bot.scheduling.scheduler import Scheduler

REQUEST = b"POST /ack HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"


class Clock:
    """background.clock for a test: moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(background, "clock", fake)
    yield fake


async def _server(order: list[str]) -> tuple[web.AppRunner, int]:
    async def ack(_request: web.Request) -> web.Response:
        order.append("request")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/ack", ack)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _connected(port: int) -> socket.socket:
    """A client connection the server has accepted (a Slack or Teams keep-alive connection)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    for _ in range(20):  # the server's accept and connection_made run on this loop
        await asyncio.sleep(0)
    return sock


async def _queued_work(order: list[str], sock: socket.socket, waits: bool,
                       ready: tuple[float | None, ...] = (None, None, None),
                       during_bg1: Callable[[], None] = lambda: None) -> None:
    """Three pieces of background work ready at once (or since `ready`, readings of
    background.clock); the request's bytes arrive during the first one's step (as a request
    arrives while the loop runs a long step)."""

    async def piece(name: str, since: float | None) -> None:
        if waits:
            await background.turn(since)
        order.append(name)
        if name == "bg1":
            sock.send(REQUEST)  # a request arrives while this step runs
            during_bg1()

    await asyncio.gather(*(piece(f"bg{n + 1}", since) for n, since in enumerate(ready)))
    for _ in range(50):
        if "request" in order:
            break
        await asyncio.sleep(0.01)


async def test_a_request_arriving_during_background_work_starts_before_the_rest_of_it() -> None:
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)
    try:
        await _queued_work(order, sock, waits=True)
    finally:
        sock.close()
        await runner.cleanup()
    # The request's handler ran right after the step it arrived in, before bg2 and bg3.
    assert order == ["bg1", "request", "bg2", "bg3"]


async def test_without_turns_queued_background_work_runs_before_the_request() -> None:
    """What happened before: every ready step ran first, the request waited behind them all."""
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)
    try:
        await _queued_work(order, sock, waits=False)
    finally:
        sock.close()
        await runner.cleanup()
    assert order == ["bg1", "bg2", "bg3", "request"]


async def test_turns_are_given_in_the_order_asked() -> None:
    order: list[int] = []

    async def piece(n: int) -> None:
        await background.turn()
        order.append(n)

    await asyncio.gather(*(piece(n) for n in range(8)))
    assert order == list(range(8))


@pytest.mark.parametrize("through", ["serve's scheduler", "Core.tick"])
async def test_scheduled_jobs_each_take_a_turn_behind_arrived_requests(
        loaded: Core, through: str) -> None:
    """`serve` runs the jobs through Scheduler.tick (bot/scheduling/jobs.run_due), the console
    through Core.tick: both ways, a request arriving while a job runs is started before the
    next job (before, in serve: every job of the tick ran first, the request after them all)."""
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)

    def job(name: str):  # type: ignore[no-untyped-def]
        async def ticker(_core: Core, _now: object) -> int:
            order.append(name)
            if name == "job1":
                sock.send(REQUEST)  # a request arrives while this job runs
            return 0
        return ticker

    tickers = loaded.router.tickers
    loaded.router.tickers = {f"job{n}": job(f"job{n}") for n in (1, 2, 3)}
    try:
        if through == "Core.tick":
            names = list(await loaded.tick())
        else:
            results = await Scheduler(loaded, Always(), interval_s=30).tick()
            names = [r.name for r in results or []]
        for _ in range(50):
            if "request" in order:
                break
            await asyncio.sleep(0.01)
    finally:
        loaded.router.tickers = tickers
        sock.close()
        await runner.cleanup()
    assert names == ["job1", "job2", "job3"]
    assert order == ["job1", "request", "job2", "job3"]


async def test_work_waiting_past_the_bound_goes_before_new_arrivals(ticks: Clock) -> None:
    """The ageing rule: bg2 and bg3 have waited MAX_WAIT_S by the time bg1's step ends, so
    they take their turns at once, ahead of the request that arrived during bg1 (in the order
    the loop has them, as before turns), and do not wait a poll each behind new arrivals."""
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)

    def time_passes() -> None:
        ticks.now += background.MAX_WAIT_S

    try:
        await _queued_work(order, sock, waits=True, during_bg1=time_passes)
    finally:
        sock.close()
        await runner.cleanup()
    assert order == ["bg1", "bg2", "bg3", "request"]
    assert background.turns().aged == 2


async def test_only_work_older_than_the_bound_skips_the_arrivals(ticks: Clock) -> None:
    """bg3 became ready just before the request arrived: it still goes behind it; bg2,
    ready since the start, does not."""
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)
    young = background.MAX_WAIT_S / 2

    def time_passes() -> None:
        ticks.now += background.MAX_WAIT_S

    try:
        await _queued_work(order, sock, waits=True, ready=(0.0, 0.0, young),
                           during_bg1=time_passes)
    finally:
        sock.close()
        await runner.cleanup()
    assert order == ["bg1", "bg2", "request", "bg3"]


async def test_without_ageing_old_work_still_waits_behind_arrivals(
        ticks: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_WAIT_S = inf (the switch for an A/B): the order of the twelfth session's turns."""
    monkeypatch.setattr(background, "MAX_WAIT_S", math.inf)
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)

    def time_passes() -> None:
        ticks.now += 3600

    try:
        await _queued_work(order, sock, waits=True, during_bg1=time_passes)
    finally:
        sock.close()
        await runner.cleanup()
    assert order == ["bg1", "request", "bg2", "bg3"]
    assert background.turns().aged == 0


async def test_turns_switched_off_run_work_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "TURNS", False)
    order: list[str] = []
    runner, port = await _server(order)
    sock = await _connected(port)
    try:
        await _queued_work(order, sock, waits=True)
    finally:
        sock.close()
        await runner.cleanup()
    assert order == ["bg1", "bg2", "bg3", "request"]
