"""`serve`'s shutdown (staffvoice/serve/lifecycle.py, `_shutdown`) and what is still running
while it waits: a reply notice started by an event the adapters finish during their drain is
sent before the process ends, and a request still in progress (a Teams turn, sent and
answered inside its request) is cut at STAFFVOICE_SHUTDOWN_GRACE. Order and counts; a grace
of a second or two here is a test timeout, nothing is asserted about how long anything took."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot import flusher
from bot.config import Settings
from bot.core import Core
from bot.feedback import service as fb
from bot.model import ConversationRef, Message, MessageRef
from bot.router import Router
from bot.scheduling.scheduler import Scheduler
from staffvoice.serve import lifecycle
from staffvoice.serve.health import Health
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import TEST_SECRET
from tests.test_feedback_helpers import CHANGE, PRACTITIONER, give, ref_for, release

NOTICE = "The change team answered your feedback."
# How many turns of the event loop the platform takes to answer the author's DM: far more
# than the shutdown takes from the adapters' drain to its last flush, none of it wall time.
PLATFORM_TURNS = 200


async def test_a_reply_finished_during_the_adapters_drain_reaches_its_author_before_the_last_flush(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The change team's reply was taken by an adapter before SIGTERM and finishes while the
    adapters drain (aiohttp's on_cleanup); its notice to the author goes in the background.

    Before: the notices were settled before the drain, so this one was still on its way
    when the last flush ran and the process ended: the author never heard of the reply."""
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled in my team.",
                      replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list all")
    ref = ref_for(d.seen(CHANGE)[-1], "Supervision keeps")
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert d.form(CHANGE) is not None

    author = d.conv(PRACTITIONER).conversation_id
    send = d.port.send

    async def slow_platform(conversation: ConversationRef, message: Message) -> MessageRef:
        if conversation.conversation_id == author:
            for _ in range(PLATFORM_TURNS):
                await asyncio.sleep(0)
        return await send(conversation, message)

    d.port.send = slow_platform  # type: ignore[method-assign]
    d.wait_for_notices = False  # the driver no longer waits for the notice itself

    app = web.Application()

    async def adapter_drains(_app: web.Application) -> None:
        assert await d.submit(CHANGE, {"text": "Which days are worst?"}) is None
        assert fb.NOTICES  # the notice is on its way

    app.on_cleanup.append(adapter_drains)
    runner = web.AppRunner(app)
    await runner.setup()

    at_last_flush: list[tuple[int, bool]] = []
    flush_all = flusher.flush_all

    async def last_flush(core: Core, within: float | None = None) -> list[str]:
        at_last_flush.append((len(fb.NOTICES), NOTICE in "\n".join(d.seen(PRACTITIONER))))
        return await flush_all(core, within)

    monkeypatch.setattr(flusher, "flush_all", last_flush)
    await lifecycle._shutdown(Health(loaded), [], runner, Scheduler(loaded), asyncio.Event(), [])
    assert at_last_flush == [(0, True)]  # sent before the last flush, the process's end


async def test_a_request_still_in_progress_at_the_grace_is_cut_and_the_shutdown_ends(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose handler never ends (a Teams turn whose connector send waits on a hung
    Bot Connector, or on the database) is in progress when SIGTERM arrives.

    Before: aiohttp waited for it 60 s (its own default), whatever the grace, so with a grace
    of 20 s and Kubernetes' 30 s the replica was SIGKILLed before the last flush."""
    said: list[str] = []
    hung = asyncio.Event()  # never set
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def turn(_request: web.Request) -> web.Response:
        said.append("turn started")
        os.kill(os.getpid(), signal.SIGTERM)  # the orchestrator stops the replica mid-turn
        try:
            await hung.wait()
        except asyncio.CancelledError:
            said.append("turn cut")
            raise
        return web.Response()

    build_app = lifecycle.build_app

    def with_turn(*args: Any) -> tuple[web.Application, list[str]]:
        app, lines = build_app(*args)
        app.router.add_post("/test/turn", turn)
        return app, lines

    def heard(line: str, **_: Any) -> None:
        listening.set_result(line.rsplit(" ", 1)[1])

    monkeypatch.setattr(lifecycle, "build_app", with_turn)
    monkeypatch.setattr(lifecycle, "print", heard, raising=False)
    monkeypatch.setattr(lifecycle, "DRAIN_S", 1.0)  # a short grace for the test
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET)
    serving = asyncio.create_task(lifecycle.serve(settings, "127.0.0.1", 0, env={}, router=Router()))
    base = await asyncio.wait_for(listening, 60)
    async with aiohttp.ClientSession() as http:

        async def post() -> None:
            async with http.post(f"{base}/test/turn") as resp:
                await resp.read()

        posting = asyncio.create_task(post())
        assert await asyncio.wait_for(serving, 30) == 0  # (the test's own limit; 60 s before)
        with pytest.raises(aiohttp.ClientError):  # the connection closed unanswered
            await posting
    assert said == ["turn started", "turn cut"]


async def test_a_scheduler_tick_stuck_at_sigterm_does_not_keep_the_last_flush_from_running(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick is in progress and never ends (a job waiting on a hung database or platform);
    an account linked here is held for the flusher. SIGTERM.

    Before: the shutdown waited for the tick without end (Scheduler.stop), so it never
    reached the last flush and the held link was lost with the process at SIGKILL."""
    from bot.people import held
    from bot.scheduling import scheduler as scheduling

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "status")  # a first contact: link and DM route held here
    assert held.held(loaded)
    hung = asyncio.Event()  # never set
    running: list[str] = []

    async def stuck(*_args: Any, **_kw: Any) -> list[Any]:
        running.append("tick")
        await hung.wait()
        return []

    monkeypatch.setattr(scheduling, "run_due", stuck)
    scheduler = Scheduler(loaded)
    ticking = asyncio.create_task(scheduler.tick())
    while not running:  # the tick has begun (it holds the scheduler's lock)
        await asyncio.sleep(0)
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    monkeypatch.setattr(lifecycle, "DRAIN_S", 1.0)  # a short grace for the test
    try:
        await asyncio.wait_for(  # (the test's own limit: without the bound, never)
            lifecycle._shutdown(Health(loaded), [], runner, scheduler, asyncio.Event(), []), 30)
        assert not held.held(loaded)  # written by the last flush
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)


async def test_requests_in_progress_get_what_is_left_of_the_one_deadline_not_a_fresh_grace(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler tick stuck at SIGTERM uses the whole grace. Then aiohttp waits for the
    requests in progress (a Teams turn on the same hung database) for its shutdown_timeout,
    counted from then.

    Before: that was DRAIN_S again (AppRunner(shutdown_timeout=DRAIN_S)), so the last flush
    came up to twice the grace after SIGTERM (40 s with the default 20: past Kubernetes'
    30 s SIGKILL); and with STAFFVOICE_SHUTDOWN_GRACE=0, aiohttp's 0 meant no limit."""
    from bot.scheduling import scheduler as scheduling

    hung = asyncio.Event()  # never set
    running: list[str] = []

    async def stuck(*_args: Any, **_kw: Any) -> list[Any]:
        running.append("tick")
        await hung.wait()
        return []

    monkeypatch.setattr(scheduling, "run_due", stuck)
    monkeypatch.setattr(lifecycle, "DRAIN_S", 1.0)  # a short grace for the test
    scheduler = Scheduler(loaded)
    ticking = asyncio.create_task(scheduler.tick())
    while not running:
        await asyncio.sleep(0)
    runner = web.AppRunner(web.Application(), shutdown_timeout=lifecycle.DRAIN_S)
    await runner.setup()
    assert runner.server is not None
    waits: list[float | None] = []
    shutdown = runner.server.shutdown

    async def requests_waited(timeout: float | None = None) -> None:
        waits.append(timeout)
        await shutdown(timeout)

    runner.server.shutdown = requests_waited  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(
            lifecycle._shutdown(Health(loaded), [], runner, scheduler, asyncio.Event(), []), 30)
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
    assert len(waits) == 1 and waits[0] is not None
    assert 0 < waits[0] < lifecycle.DRAIN_S / 2, waits  # what was left: nothing, or almost


async def test_a_second_sigterm_or_ctrl_c_while_stopping_does_not_end_the_process_before_its_last_flush(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM mid-turn; while the shutdown runs (the turn being cut) a Ctrl-C and another
    SIGTERM arrive, as from a process manager that repeats it or a second Ctrl-C.

    Before: serve removed its handlers at the first signal, so the second SIGTERM ended the
    process at once (here: the test run) and a Ctrl-C raised KeyboardInterrupt inside the
    shutdown; either way the last flush never ran."""
    said: list[str] = []
    hung = asyncio.Event()  # never set
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def turn(_request: web.Request) -> web.Response:
        said.append("turn started")
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await hung.wait()
        except asyncio.CancelledError:
            said.append("turn cut")
            os.kill(os.getpid(), signal.SIGINT)  # while stopping
            os.kill(os.getpid(), signal.SIGTERM)
            raise
        return web.Response()

    build_app = lifecycle.build_app

    def with_turn(*args: Any) -> tuple[web.Application, list[str]]:
        app, lines = build_app(*args)
        app.router.add_post("/test/turn", turn)
        return app, lines

    def heard(line: str, **_: Any) -> None:
        listening.set_result(line.rsplit(" ", 1)[1])

    flush_all = flusher.flush_all

    async def last_flush(core: Core, within: float | None = None) -> list[str]:
        said.append("last flush")
        return await flush_all(core, within)

    monkeypatch.setattr(lifecycle, "build_app", with_turn)
    monkeypatch.setattr(lifecycle, "print", heard, raising=False)
    monkeypatch.setattr(lifecycle, "DRAIN_S", 1.0)  # a short grace for the test
    monkeypatch.setattr(flusher, "flush_all", last_flush)
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET)
    serving = asyncio.create_task(lifecycle.serve(settings, "127.0.0.1", 0, env={}, router=Router()))
    base = await asyncio.wait_for(listening, 60)
    async with aiohttp.ClientSession() as http:

        async def post() -> None:
            async with http.post(f"{base}/test/turn") as resp:
                await resp.read()

        posting = asyncio.create_task(post())
        assert await asyncio.wait_for(serving, 30) == 0
        with pytest.raises(aiohttp.ClientError):
            await posting
    assert said == ["turn started", "turn cut", "last flush"]


async def test_a_last_flush_that_hangs_is_cut_at_the_deadline_and_named_in_the_log(
        loaded: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An account linked here is held for the flusher; one holder's flush hangs at shutdown
    (its database never answers). Before: `flush_all` waited for it without any bound, so the
    process stayed up until SIGKILL and nobody was told what was never written. Now it is cut
    at the deadline and named; the holders before it were written."""
    import logging

    from bot.people import held

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "status")  # a first contact: link and DM route held here
    assert held.held(loaded)
    hung = asyncio.Event()  # never set

    async def stuck(_core: Core) -> int:
        await hung.wait()
        return 0

    monkeypatch.setattr(flusher, "_FLUSHES", [
        *flusher._FLUSHES, (stuck, logging.getLogger("staffvoice.test"), "the test's holder")])
    monkeypatch.setattr(lifecycle, "DRAIN_S", 0.5)  # a short grace for the test
    monkeypatch.setattr(lifecycle, "LAST_FLUSH_S", 0.5)
    caplog.set_level(logging.WARNING)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    await asyncio.wait_for(  # (the test's own limit: without the bound, never)
        lifecycle._shutdown(Health(loaded), [], runner, Scheduler(loaded), asyncio.Event(), []),
        10)
    assert not held.held(loaded)  # the holders before the hung one were written
    assert [r.getMessage() for r in caplog.records if "the test's holder" in r.getMessage()] == [
        "the test's holder not written at shutdown: the flush was cut at the deadline (0.5 s)"]
