"""/metrics: events by kind and outcome (a core middleware), the scheduler, the send ledger.

/metrics shares the public port with the chat endpoints and the web pages, so who may read it is
checked here: with STAFFVOICE_METRICS_TOKEN set, a request carrying it (`Authorization: Bearer`);
without, a connection from this machine or a private network that no reverse proxy forwarded
(docs/deploy.md, "Behind a reverse proxy")."""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from bot.core import Core, HandleResult, Next
from bot.model import Event, FormSubmitEvent
from bot.port import Port
from bot.secrets import FORWARDING_HEADERS
from staffvoice.serve.health import Health
from storage.base import Base
from storage.db import Database

LEDGER_TABLE = "broadcast_deliveries"
TOKEN_ENV = "STAFFVOICE_METRICS_TOKEN"
# Where a scraper without the token may be: loopback, the private networks and link-local,
# named here rather than `is_private`, which also says yes to addresses the internet reaches
# (Teredo's 2001::/32, and on some Python versions 6to4's 2002::/16) and varies between versions.
LOCAL_NETWORKS = tuple(ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10"))


def count_events(core: Core, registry: CollectorRegistry) -> None:
    """Count every adapter's events by kind and outcome, as a middleware of the core."""
    handled = Counter("staffvoice_events_handled_total", "Inbound events handled",
                      ["kind", "outcome"], registry=registry)
    errors = Counter("staffvoice_event_errors_total", "Inbound events that failed on our side",
                     ["kind"], registry=registry)

    async def counted(event: Event, port: Port, call_next: Next) -> HandleResult:
        kind = type(event).__name__
        try:
            result = await call_next()
        except Exception:
            errors.labels(kind).inc()
            raise
        outcome = ("duplicate" if result.duplicate else "form_errors" if result.form_errors
                   else result.error or "ok")
        if not (outcome == "ok" and isinstance(event, FormSubmitEvent)):
            # A sent form is not counted: a count that rises between two scrapes (and its
            # series' `_created` time) would date the only feedback item of a quiet morning
            # (docs/invariants.md N24); the feedback release logs how many items came.
            handled.labels(kind, outcome).inc()
        if result.error == "internal":
            errors.labels(kind).inc()
        return result

    core.use(counted)


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


def may_scrape(request: web.Request, token: str) -> web.Response | None:
    """None when `request` may read /metrics, else the refusal (no figures in it)."""
    if token:
        sent = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(sent, f"Bearer {token}".encode()):
            return None
        return web.Response(status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"})
    try:
        ip = ip_address((request.remote or "").split("%")[0])
    except ValueError:
        ip = None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    local = ip is not None and any(ip in net for net in LOCAL_NETWORKS)
    if local and not any(h in request.headers for h in FORWARDING_HEADERS):
        return None
    return web.Response(status=403, text="forbidden\n")


def add_metrics_route(app: web.Application, health: Health, env: Mapping[str, str] | None = None) -> None:
    """GET /metrics, and the counting of events it reports."""
    core = health.core
    count_events(core, health.registry)
    health.registry.register(SchedulerCollector(health))
    ledger = Gauge("staffvoice_send_ledger", "Send ledger rows (broadcasts, pulse invitations) by state", ["state"],
                   registry=health.registry)

    token = (env or {}).get(TOKEN_ENV, "").strip()

    async def metrics(request: web.Request) -> web.Response:
        refused = may_scrape(request, token)
        if refused is not None:
            return refused
        states = await ledger_states(core.db)
        for state, n in (states or {}).items():
            ledger.labels(state).set(n)
        return web.Response(body=generate_latest(health.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
