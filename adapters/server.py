"""`staffvoice serve`: one aiohttp process hosting the adapters, health, metrics and the scheduler.

Start-up: migrations, the programme file (if set), the platform adapters (each mounts itself
when configured), the scheduler (leader only) and every router worker (the send-ledger drain).
SIGTERM: stop accepting, stop scheduling, let workers finish in-flight sends, dispose the DB.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
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
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
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


async def serve(settings: Settings, host: str, port: int, env: Mapping[str, str] | None = None,
                router: Router | None = None) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean shutdown, 2 when start-up is impossible."""
    env = os.environ if env is None else env
    db = Database(settings.database_url)
    core = Core(db, settings=settings, router=router)
    try:
        await db.upgrade()
        await core.start()
        ok = not settings.programme_file or await _load_programme(core, settings.programme_file)
    except Exception:
        log.exception("start-up failed")
        ok = False
    if not ok:
        await db.dispose()
        return 2

    health = Health(core)
    try:
        app, lines = build_app(core, env, health)
    except Exception:
        log.exception("an adapter could not start; check its configuration")
        await db.dispose()
        return 2
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    for line in lines:
        log.info(line)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    scheduler = Scheduler(core)
    health.scheduler = scheduler
    if not await scheduler.leadership.ensure():
        log.info("another replica runs the scheduler; this one serves and drains the send ledger")
    scheduler.start()
    worker_stop = asyncio.Event()
    workers = [asyncio.create_task(_supervise(n, fn, core, worker_stop), name=f"worker:{n}")
               for n, fn in core.router.workers.items()]
    bound = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple))
    log.info("serving", extra={"address": bound, "workers": len(workers),
                               "scheduler": scheduler.leadership.kind})
    print(f"staffvoice listening on {bound}", flush=True)

    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    await _shutdown(health, site, runner, scheduler, worker_stop, workers)
    return 0


async def _shutdown(health: Health, site: web.TCPSite, runner: web.AppRunner, scheduler: Scheduler,
                    worker_stop: asyncio.Event, workers: list[asyncio.Task[None]]) -> None:
    log.info("shutting down: no new requests, finishing in-flight work")
    health.stopping = True
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


def cli(settings: Settings, argv: list[str]) -> int:
    """`staffvoice serve [--host H] [--port P]`."""
    ap = argparse.ArgumentParser(prog="staffvoice serve",
                                 description="Serve the chat adapters, health, metrics and the scheduler.")
    ap.add_argument("--host", default=settings.host, help=f"address to listen on (default {settings.host})")
    ap.add_argument("--port", type=int, default=settings.port,
                    help=f"port (default {settings.port}; 0 picks a free one)")
    args = ap.parse_args(argv)
    return asyncio.run(serve(settings, args.host, args.port))
