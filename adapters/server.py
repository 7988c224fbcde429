"""`staffvoice serve`: one aiohttp process hosting the adapters, health, metrics and the scheduler.

Start-up: migrations, the programme file (if set), the platform adapters (each mounts itself
when configured), the scheduler (leader only) and every router worker (the send-ledger drain).
SIGTERM: stop accepting, stop scheduling, let workers finish in-flight sends, dispose the DB.

`--workers N` (N > 1): the parent does the one-off start-up (migrations, the programme file),
binds the listening socket and forks N serving processes that share it; each runs its own event
loop, database pool and scheduler candidate (one leader among them, as among replicas). Only
worker 0 runs the router workers. The parent forwards SIGTERM/SIGINT, waits, and replaces a
worker that dies unexpectedly.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from adapters import readiness
from bot.config import Settings
from bot.core import Core, HandleResult
from bot.router import Router
from bot.scheduling.scheduler import Scheduler
from storage.base import Base
from storage.db import Database

log = logging.getLogger("staffvoice.server")

MOUNTS = ("adapters.slack.mount", "adapters.teams.mount")
# How long SIGTERM waits for workers to finish the sends they have started.
DRAIN_S = float(os.environ.get("STAFFVOICE_SHUTDOWN_GRACE", "20"))
LEDGER_TABLE = "broadcast_deliveries"
GC_YOUNG = 50_000  # allocations between young collections (CPython's default: 700)
# --workers: pause before replacing a worker that died, and how long past the shutdown grace the
# parent waits for its workers before killing them.
RESPAWN_S = 1.0  # the first pause before a dead worker is replaced; doubles up to RESPAWN_MAX_S
RESPAWN_MAX_S = 30.0
STEADY_S = 60.0  # a worker that lived this long resets its pause
KILL_AFTER_S = DRAIN_S + 10
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Health:
    """What /readyz and /metrics report; shared between the routes and the lifecycle."""

    core: Core
    scheduler: Scheduler | None = None
    stopping: bool = False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)


def mount_adapters(app: web.Application, core: Core, env: Mapping[str, str]) -> list[str]:
    """Let each platform adapter add its routes; returns one status line per adapter."""
    lines = []
    for name in MOUNTS:
        platform = name.split(".")[1]
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            log.info("adapter not available", extra={"adapter": platform, "reason": str(e)[:200]})
            lines.append(f"{platform}: not available in this build")
            continue
        status = module.mount(app, core, env)
        lines.append(status or f"{platform}: not configured")
    return lines


@asynccontextmanager
async def attached_ports(core: Core, env: Mapping[str, str]) -> AsyncIterator[list[str]]:
    """The adapters' ports attached to `core` without listening (for `schedule run-due`)."""
    app = web.Application()
    lines = mount_adapters(app, core, env)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs the adapters' start-up hooks, which add their ports
    try:
        yield lines
    finally:
        await runner.cleanup()


def count_events(core: Core, registry: CollectorRegistry) -> None:
    """Wrap `core.handle` so every adapter's events are counted by kind and outcome."""
    handled = Counter("staffvoice_events_handled_total", "Inbound events handled",
                      ["kind", "outcome"], registry=registry)
    errors = Counter("staffvoice_event_errors_total", "Inbound events that failed on our side",
                     ["kind"], registry=registry)
    inner = core.handle

    async def handle(event: Any, port: Any) -> HandleResult:
        kind = type(event).__name__
        try:
            result = await inner(event, port)
        except Exception:
            errors.labels(kind).inc()
            raise
        outcome = ("duplicate" if result.duplicate else "form_errors" if result.form_errors
                   else result.error or "ok")
        handled.labels(kind, outcome).inc()
        if result.error == "internal":
            errors.labels(kind).inc()
        return result

    core.handle = handle  # type: ignore[method-assign]


class SchedulerCollector(Collector):
    """Scheduler figures read at scrape time (bot/ stays free of prometheus)."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Any]:
        sch = self.health.scheduler
        leader = GaugeMetricFamily("staffvoice_scheduler_leader", "1 when this replica runs the scheduler")
        lag = GaugeMetricFamily("staffvoice_scheduler_lag_seconds",
                                "How late the last scheduled tick started")
        last = GaugeMetricFamily("staffvoice_scheduler_last_tick_timestamp_seconds",
                                 "Wall-clock time of the last tick this replica ran (0: none)")
        runs = CounterMetricFamily("staffvoice_scheduler_job_runs", "Job runs by outcome",
                                   labels=["job", "outcome"])
        leader.add_metric([], 1.0 if sch and sch.is_leader else 0.0)
        lag.add_metric([], sch.lag_s if sch else 0.0)
        last.add_metric([], (sch.last_tick_at or 0.0) if sch else 0.0)
        for (job, outcome), n in sorted((sch.job_runs if sch else {}).items()):
            runs.add_metric([job, outcome], n)
        yield from (leader, lag, last, runs)


async def ledger_states(db: Database) -> dict[str, int] | None:
    """Rows of the broadcast send ledger by state; None when the broadcasts feature is absent."""
    if LEDGER_TABLE not in Base.metadata.tables:
        return None
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(text(f"SELECT state, count(*) FROM {LEDGER_TABLE} GROUP BY state"))
            return {str(state): int(n) for state, n in rows}
    except Exception:
        return None


def build_app(core: Core, env: Mapping[str, str], health: Health) -> tuple[web.Application, list[str]]:
    """The one web application: adapters' routes plus health, readiness and metrics."""
    app = web.Application()
    count_events(core, health.registry)
    health.registry.register(SchedulerCollector(health))
    ledger = Gauge("staffvoice_send_ledger", "Broadcast deliveries by state", ["state"],
                   registry=health.registry)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": os.getpid()})

    async def readyz(request: web.Request) -> web.Response:
        body: dict[str, Any] = {"database": "unreachable", "migrations": "unknown"}
        ok = False
        if await core.db.ping():
            body["database"] = "ok"
            try:
                applied, expected = await core.db.current_heads()
                ok = applied == expected
                body["migrations"] = "current" if ok else "behind"
            except Exception:
                body["migrations"] = "unreadable"
        for name, problem in readiness.problems(request.app).items():
            body[name], ok = problem or "ok", ok and problem is None
        if health.stopping:
            ok, body["status"] = False, "stopping"
        else:
            body["status"] = "ready" if ok else "not ready"
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        states = await ledger_states(core.db)
        for state, n in (states or {}).items():
            ledger.labels(state).set(n)
        return web.Response(body=generate_latest(health.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    lines = mount_adapters(app, core, env)
    return app, lines


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
                router: Router | None = None, *, sockets: list[socket.socket] | None = None,
                worker: int = 0) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean shutdown, 2 when start-up is impossible.

    With `sockets`, this is worker `worker` forked by `run`: the parent has applied the
    migrations, loaded the programme file and announced the address, so this process only
    serves on the inherited sockets (router workers in worker 0 only)."""
    env = os.environ if env is None else env
    forked = sockets is not None
    db = Database(settings.database_url)
    core = Core(db, settings=settings, router=router)
    if not await _start_core(core, settings, first=not forked):
        await db.dispose()
        return 2

    health = Health(core)
    # What is bound, not STAFFVOICE_HOST: adapters that must stay on loopback check this.
    env = {**env, "STAFFVOICE_BOUND_HOSTS": host if sockets is None else ",".join(
        str(sock.getsockname()[0]) for sock in sockets)}
    try:
        app, lines = build_app(core, env, health)
    except Exception:
        log.exception("an adapter could not start; check its configuration")
        await db.dispose()
        return 2
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sites: list[web.BaseSite] = ([web.SockSite(runner, sock) for sock in sockets]
                                 if sockets is not None else [web.TCPSite(runner, host, port)])
    for site in sites:
        await site.start()
    if worker == 0:
        for line in lines:
            log.info(line)
    threshold = gc.get_threshold()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if forked and _signalled:
        stop.set()  # stopped while starting: shut down at once, cleanly

    scheduler = Scheduler(core)
    health.scheduler = scheduler
    if not await scheduler.leadership.ensure():
        log.info("another replica runs the scheduler; this one serves and drains the send ledger"
                 if worker == 0 else "another process runs the scheduler; this one serves requests")
    scheduler.start()
    worker_stop = asyncio.Event()
    # Forked workers: only worker 0 drains the send ledger, since each drain paces itself to the
    # platform's whole rate limit (N drains in one deployment would send N times too fast).
    workers = [asyncio.create_task(_supervise(n, fn, core, worker_stop), name=f"worker:{n}")
               for n, fn in core.router.workers.items()] if worker == 0 else []
    bound = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple))
    log.info("serving", extra={"address": bound, "workers": len(workers),
                               "scheduler": scheduler.leadership.kind,
                               **({"worker": worker} if forked else {})})
    if not forked:
        print(f"staffvoice listening on {bound}", flush=True)

    await stop.wait()
    if not forked:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    # A forked worker keeps its handlers: the same SIGTERM or Ctrl-C often arrives twice (from
    # the terminal or the service manager, and forwarded by the parent); the parent kills a
    # worker that does not stop in time.
    await _shutdown(health, sites, runner, scheduler, worker_stop, workers)
    untune_gc(threshold)
    return 0


async def _shutdown(health: Health, sites: list[web.BaseSite], runner: web.AppRunner,
                    scheduler: Scheduler, worker_stop: asyncio.Event,
                    workers: list[asyncio.Task[None]]) -> None:
    log.info("shutting down: no new requests, finishing in-flight work")
    health.stopping = True
    for site in sites:
        await site.stop()  # stop accepting; requests in progress finish
    await scheduler.stop()  # waits for a tick in progress
    worker_stop.set()
    if workers:
        done, pending = await asyncio.wait(workers, timeout=DRAIN_S)
        for task in pending:
            # Past the grace period: a send cut here stays 'sending' in the ledger and its lease
            # expires, so another replica retries it; nothing is lost or marked sent wrongly.
            log.warning("worker did not stop in time; cancelling", extra={"worker": task.get_name()})
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await runner.cleanup()
    await health.core.db.dispose()
    log.info("stopped cleanly")


# -- --workers N: a parent forking N serving processes ------------------------------------------

_signalled = False  # a forked worker got SIGTERM/SIGINT before its event loop took them over


def _note_signal(_sig: int, _frame: Any) -> None:
    global _signalled
    _signalled = True


async def _start_core(core: Core, settings: Settings, *, first: bool) -> bool:
    """The server key; and, `first` (once per start of `serve`), migrations before it and the
    programme file after. False (logged) when start-up is impossible."""
    try:
        if first:
            await core.db.upgrade()
        await core.start()  # creates the stored server key if there is none yet
        return not first or not settings.programme_file or await _load_programme(
            core, settings.programme_file)
    except Exception:
        log.exception("start-up failed")
        return False


async def _prepare(settings: Settings, router: Router | None) -> bool:
    """The once-per-start work of `serve`, done by the parent before it forks the workers."""
    db = Database(settings.database_url)
    try:
        return await _start_core(Core(db, settings=settings, router=router), settings, first=True)
    finally:
        await db.dispose()


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address `host` names (as aiohttp's TCPSite does), one port."""
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Port 0: the first socket picks a free port and every other address uses the same.
            sock.bind((addr[0], port or (socks[0].getsockname()[1] if len(socks) > 1 else 0),
                       *addr[2:]))
            sock.listen(128)
            sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the parent dies (even by SIGKILL), so none is orphaned."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(index: int, parent: int, settings: Settings, env: Mapping[str, str] | None,
            router: Router | None, socks: list[socket.socket], mask: set[int]) -> None:
    """The forked child: serve until stopped, then leave without running the parent's exit code."""
    code = 1
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _note_signal)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _die_with_parent()
        if os.getppid() != parent:
            _note_signal(signal.SIGTERM, None)  # the parent died before prctl took effect
        code = asyncio.run(serve(settings, "", 0, env, router, sockets=socks, worker=index))
    except BaseException:
        log.exception("worker failed", extra={"worker": index})
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(settings: Settings, host: str, port: int, workers: int = 1,
        env: Mapping[str, str] | None = None, router: Router | None = None) -> int:
    """`serve` in this process (workers == 1), or in `workers` forked processes sharing one socket.

    Must be called with no event loop running: the workers are forked from this thread."""
    if workers <= 1:
        return asyncio.run(serve(settings, host, port, env, router))
    if settings.database_url.startswith("sqlite"):
        # SQLite has no row locks (FOR UPDATE is ignored), so work claimed that way, such as
        # an urgent safeguarding alert, could be sent by two workers.
        log.error("--workers needs PostgreSQL: SQLite serves from one process")
        print("staffvoice serve: --workers needs PostgreSQL (STAFFVOICE_DATABASE_URL); "
              "SQLite serves from one process.", file=sys.stderr)
        return 2
    if not asyncio.run(_prepare(settings, router)):
        return 2
    for name in MOUNTS:  # imported once here, shared by the workers' memory and start-up time
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # each worker says so when it mounts the adapters
    socks = _listen(host, port)
    bound = ", ".join(f"http://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in socks)
    try:
        return _supervise_workers(settings, bound, workers, env, router, socks)
    finally:
        for sock in socks:
            sock.close()


def _supervise_workers(settings: Settings, bound: str, n: int, env: Mapping[str, str] | None,
                       router: Router | None, socks: list[socket.socket]) -> int:
    # Signals wait in the mask and are read with sigtimedwait: no handler runs at a bad moment.
    watched = {*STOP_SIGNALS, signal.SIGCHLD}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    children: dict[int, int] = {}  # pid -> worker index
    respawn: dict[int, float] = {}  # worker index -> when to start it again
    started: dict[int, float] = {}  # worker index -> when its current process was forked
    pause: dict[int, float] = {}  # worker index -> the wait before its next replacement
    began = time.monotonic()  # exit code 2 (start-up impossible) is fatal in the first minute
    parent = os.getpid()

    def fork(index: int) -> None:
        if threading.active_count() > 1:
            log.warning("forking with other threads running",
                        extra={"threads": ",".join(t.name for t in threading.enumerate())})
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # what the parent built stays in pages shared with the workers
        pid = os.fork()
        if pid == 0:
            _worker(index, parent, settings, env, router, socks, mask)  # never returns
        children[pid] = index
        started[index] = time.monotonic()

    def stop_accepting() -> None:
        # The workers close their copies as they stop; without closing ours the kernel would
        # keep queueing connections nobody serves until this process exits.
        for sock in socks:
            sock.close()

    try:
        for i in range(n):
            fork(i)
        log.info("serving", extra={"address": bound, "processes": n, "pid": parent})
        print(f"staffvoice listening on {bound}", flush=True)
        stopping_since: float | None = None
        result = 0
        while children or (respawn and stopping_since is None):
            info = signal.sigtimedwait(watched, 0.5)
            if info is not None and info.si_signo in STOP_SIGNALS:
                if stopping_since is None:
                    log.info("stopping the workers", extra={"signal": signal.Signals(info.si_signo).name})
                    stopping_since = time.monotonic()
                    respawn.clear()
                    stop_accepting()
                    _signal_all(children, signal.SIGTERM)
                else:  # asked twice: stop now
                    _signal_all(children, signal.SIGKILL)
            for pid, status in _reap():
                index = children.pop(pid, None)
                if index is None:
                    continue
                code = os.waitstatus_to_exitcode(status)
                if stopping_since is not None:
                    if code != 0:
                        log.warning("worker stopped uncleanly", extra={"worker": index, "exit": code})
                    continue
                lived = time.monotonic() - started.get(index, 0.0)
                if code == 2 and time.monotonic() - began < STEADY_S:  # as `serve` alone: give up
                    log.error("a worker could not start; stopping", extra={"worker": index})
                    stopping_since, result = time.monotonic(), 2
                    respawn.clear()
                    stop_accepting()
                    _signal_all(children, signal.SIGTERM)
                    continue
                wait = RESPAWN_S if lived >= STEADY_S else min(pause.get(index, RESPAWN_S / 2) * 2,
                                                               RESPAWN_MAX_S)
                pause[index] = wait
                log.error("worker died; starting a replacement",
                          extra={"worker": index, "pid": pid, "exit": code, "in_s": wait})
                respawn[index] = time.monotonic() + wait
            now = time.monotonic()
            if stopping_since is None:
                for index, at in sorted(respawn.items()):
                    if at <= now:
                        del respawn[index]
                        fork(index)
            elif now - stopping_since > KILL_AFTER_S and children:
                log.warning("workers did not stop in time; killing them",
                            extra={"pids": ",".join(map(str, children))})
                _signal_all(children, signal.SIGKILL)
                stopping_since = now
        if result == 0:
            log.info("stopped cleanly", extra={"pid": parent})
        return result
    finally:
        for pid in children:  # only reached on an error in this loop
            _kill_quietly(pid, signal.SIGKILL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _reap() -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, status))


def _signal_all(children: dict[int, int], sig: int) -> None:
    for pid in children:
        _kill_quietly(pid, sig)


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _at_least_one(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def cli(settings: Settings, argv: list[str]) -> int:
    """`staffvoice serve [--host H] [--port P] [--workers N]`."""
    ap = argparse.ArgumentParser(prog="staffvoice serve",
                                 description="Serve the chat adapters, health, metrics and the scheduler.")
    ap.add_argument("--host", default=settings.host, help=f"address to listen on (default {settings.host})")
    ap.add_argument("--port", type=int, default=settings.port,
                    help=f"port (default {settings.port}; 0 picks a free one)")
    ap.add_argument("--workers", type=_at_least_one, default=1, metavar="N",
                    help="serving processes sharing the port, to use N CPU cores (default 1: this "
                         "process). One of them runs the scheduler; worker 0 alone drains the send "
                         "ledger, since each drain paces itself to the platform's whole rate limit")
    args = ap.parse_args(argv)
    return run(settings, args.host, args.port, args.workers)
