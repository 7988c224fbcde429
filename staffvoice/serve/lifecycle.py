"""Start-up, serving and a clean stop: the life of one `staffvoice serve` process.

Start-up: migrations, the server key, the programme file (if set), the platform adapters (each
mounts itself when configured), the scheduler (leader only) and every router worker (the
send-ledger drain, the feedback counts' flusher). SIGTERM: stop accepting, stop scheduling, let
workers finish in-flight sends and write the feedback counts they hold, dispose the database.

Every process is a whole replica: run several (sharing the port with `reuse_port`, or behind a
load balancer) and they share the work through the database. One holds the scheduler's lock;
every one drains the send ledger, under per-workspace send leases that keep the deployment
as a whole within each platform's rate limit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import stopping
from bot import flusher
from bot.config import Settings
from bot.core import Core
from bot.feedback.service import settle_notices
from bot.router import Router
from bot.scheduling.scheduler import Scheduler
from bot.secrets import missing_key_problem
from staffvoice.serve import migrate
from staffvoice.serve.app import build_app
from staffvoice.serve.health import Health
from staffvoice.tables import import_all_tables
from storage.db import STARTUP_LOCK, Database, DatabaseUnavailable

log = logging.getLogger("staffvoice.server")

# How long SIGTERM waits, in all, for work in progress: the workers' sends, the adapters' work
# after their acks, reply notices. What the flushers hold is written after it, whatever is
# left unfinished (the orchestrator's grace must exceed this: docs/deploy.md).
DRAIN_S = float(os.environ.get("STAFFVOICE_SHUTDOWN_GRACE", "20"))
# What a request still in progress when the deadline has passed gets to end once cut.
LAST_CUT_S = 0.05
# The last flush's time when the steps before it spent the whole grace (a stuck tick).
LAST_FLUSH_S = 2.0
GC_YOUNG = 50_000  # allocations between young collections (CPython's default: 700)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _load_programme(core: Core, path: str) -> bool:
    from bot.programme import loader
    from bot.programme.schema import ProgrammeError

    try:
        loaded = await loader.load(core.db, Path(path).read_text(encoding="utf-8"), core.router)
    except OSError as e:
        log.error("cannot read the programme file", extra={"path": path, "reason": e.strerror})
        return False
    except ProgrammeError as e:
        log.error("the programme file has problems; nothing was loaded",
                  extra={"path": path, "problems": "; ".join(str(p) for p in e.problems)[:2000]})
        return False
    from bot.audit import trail

    await trail.record(core.db, trail.Who(None, "serve"), "programme.load", surface="serve",
                       now=core.clock.now(), target=Path(path).name,
                       detail={"sections": len(loaded)})
    log.info("programme loaded", extra={"path": path, "sections": ",".join(loaded)})
    return True


async def _supervise(name: str, fn: Any, core: Core, stop: asyncio.Event) -> None:
    """Run a worker until `stop`; restart it after a pause if it crashes."""
    while not stop.is_set():
        try:
            await fn(core, stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker crashed; restarting", extra={"worker": name})
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except TimeoutError:
                pass


def tune_gc(young: int = GC_YOUNG) -> None:
    """Collect garbage less often, and never walk what start-up built.

    A request allocates thousands of short-lived containers: CPython's default (a young
    collection every 700 net allocations) ran about 60 collections a second at 150 requests/s,
    1.4-1.8 s of collection in a 20 s load run, and each full collection walked every module,
    mapper and cache (pauses of 160-300 ms). What is alive once the server is up is moved out
    of the collector's sight (gc.freeze), and young collections wait for `young` allocations;
    reference counting still frees almost everything at once."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def untune_gc(threshold: tuple[int, int, int]) -> None:
    """Undo `tune_gc` (serve() run inside another program, such as the tests)."""
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def serve(settings: Settings, host: str, port: int, env: Mapping[str, str] | None = None,
                router: Router | None = None, *, reuse_port: bool = False) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean shutdown, 2 when start-up is impossible.

    `reuse_port`: share the port with other `serve` processes on this machine (SO_REUSEPORT;
    the kernel spreads new connections among them)."""
    env = os.environ if env is None else env
    problem = missing_key_problem(settings.secret_key, host)
    if problem:  # a generated key would sit beside the data it protects, in its backups
        log.error(problem)
        return 2
    import_all_tables()
    db = Database(settings.database_url)
    core = Core(db, settings=settings, router=router)
    heads = await _start_core(core, settings)
    if heads is None:
        await db.dispose()
        return 2

    health = Health(core, heads=heads)
    # What is bound, not STAFFVOICE_HOST: adapters that must stay on loopback check this.
    env = {**env, "STAFFVOICE_BOUND_HOSTS": host}
    try:
        app, lines = build_app(core, env, health)
    except Exception:
        log.exception("an adapter could not start; check its configuration")
        await db.dispose()
        return 2
    # Requests in progress at SIGTERM (a Teams turn sends its answers inside its request) get
    # the grace, not aiohttp's 60 s: past it they are cut, and the last flush still runs.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=DRAIN_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot listen", extra={"host": host, "port": port, "reason": e.strerror})
        await runner.cleanup()
        await db.dispose()
        return 2
    for line in lines:
        log.info(line)
    threshold = gc.get_threshold()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)

    scheduler = Scheduler(core)
    health.scheduler = scheduler
    if not await scheduler.leadership.ensure():
        log.info("another replica runs the scheduler; this one serves and drains the send ledger")
    scheduler.start()
    worker_stop = asyncio.Event()
    # Every replica drains the send ledger: rows are claimed under leases (FOR UPDATE SKIP
    # LOCKED) and each workspace's sends under a send lease, so N replicas neither send twice
    # nor exceed a platform's rate limit together.
    workers = [asyncio.create_task(_supervise(n, fn, core, worker_stop), name=f"worker:{n}")
               for n, fn in core.router.workers.items()]
    bound = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple))
    log.info("serving", extra={"address": bound, "workers": len(workers),
                               "scheduler": scheduler.leadership.kind, "pid": os.getpid()})
    print(f"staffvoice listening on {bound}", flush=True)

    await stop.wait()
    # A second SIGTERM or Ctrl-C while stopping (a process manager that repeats it, a second
    # Ctrl-C) must not end the process before its last flush: with the handlers removed, the
    # default actions did (SIGTERM ended it at once, SIGINT raised KeyboardInterrupt inside the
    # shutdown), losing what the flushers hold (N4, N21, N25). The shutdown is bounded by
    # STAFFVOICE_SHUTDOWN_GRACE; SIGKILL is there for whoever cannot wait.
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _already_stopping)
    try:
        await _shutdown(health, [site], runner, scheduler, worker_stop, workers)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    untune_gc(threshold)
    return 0


async def _shutdown(health: Health, sites: list[web.BaseSite], runner: web.AppRunner,
                    scheduler: Scheduler, worker_stop: asyncio.Event,
                    workers: list[asyncio.Task[None]]) -> None:
    log.info("shutting down: no new requests, finishing in-flight work")
    # One deadline for every wait below: each used to have DRAIN_S of its own, and Slack's
    # work after its acks none at all (a stuck piece kept the process up until SIGKILL).
    deadline = asyncio.get_running_loop().time() + DRAIN_S
    if stopping.KEY in runner.app:  # the adapters' on_cleanup hooks bound their drains by it
        runner.app[stopping.KEY].at = deadline
    health.stopping = True
    for site in sites:
        await site.stop()  # stop accepting; requests in progress finish
    try:  # waits for a tick in progress; shielded: it stops ticking even with no time left
        await asyncio.wait_for(asyncio.shield(scheduler.stop()), _left(deadline))
    except TimeoutError:
        # Jobs derive what is due from their tables (docs/deploy.md): the next leader does
        # what this tick left undone.
        log.warning("a scheduler tick did not finish in time; stopping without it")
    worker_stop.set()
    if workers:
        done, pending = await asyncio.wait(workers, timeout=_left(deadline))
        for task in pending:
            # Past the grace period: a send cut here stays 'sending' in the ledger and its lease
            # expires, so another replica retries it; nothing is lost or marked sent wrongly.
            log.warning("worker did not stop in time; cancelling", extra={"worker": task.get_name()})
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    # Requests in progress get what is left of the deadline, not a fresh DRAIN_S: aiohttp
    # counts its shutdown_timeout from here, after the tick and the workers may have used all
    # of it (up to twice the grace before the last flush, past a 30 s SIGKILL with the default
    # 20). Never 0, which aiohttp reads as no limit at all (helpers.ceil_timeout).
    runner._shutdown_timeout = max(_left(deadline), LAST_CUT_S)
    # The adapters finish the events they had taken (on_cleanup), until the deadline.
    await runner.cleanup()
    # The notices to authors of replies and "you said, we did" (bot/feedback/service.py),
    # after the adapters: an event they finished just now (a change-team reply) starts one,
    # and one still on its way when the process ends is never sent (the author never hears).
    try:
        await asyncio.wait_for(settle_notices(), timeout=_left(deadline))
    except TimeoutError:
        log.warning("reply notices still being sent at shutdown were dropped")
    # What those events held after the workers' last flush (links, routes, an enrolment,
    # notice rows, counts) is written now, or it would be lost with the process (N21):
    # within what is left of the deadline, never less than LAST_FLUSH_S (the steps above may
    # have spent it all), so a hung database cannot keep the process up until SIGKILL.
    await flusher.flush_all(health.core, within=max(_left(deadline), LAST_FLUSH_S))
    await health.core.db.dispose()
    log.info("stopped cleanly")


def _already_stopping() -> None:
    log.warning("already stopping: the last flush runs within STAFFVOICE_SHUTDOWN_GRACE "
                "of the first signal (SIGKILL to end at once, losing it)")


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def _start_core(core: Core, settings: Settings) -> set[str] | None:
    """Migrations, the server key, then the programme file (if set); the migration heads
    applied, or None (logged) when start-up is impossible. Replicas starting at once take
    turns (an advisory lock on PostgreSQL): the first migrates and syncs the programme, the
    others find it done."""
    try:
        await core.db.check()
    except DatabaseUnavailable as e:
        log.error("start-up failed: %s", e)
        return None
    try:
        async with core.db.exclusive(STARTUP_LOCK):
            heads = await migrate.upgrade(core.db)  # in a child process: Alembic stays out of this one
            await core.start()  # creates the stored server key if there is none yet
            if settings.programme_file and not await _load_programme(core, settings.programme_file):
                return None
            return heads
    except Exception:
        log.exception("start-up failed")
        return None
