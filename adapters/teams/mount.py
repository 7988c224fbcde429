"""`POST /api/messages` on the shared aiohttp server: verify, translate, hand to the core."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import TurnContext
from microsoft_agents.hosting.core.authorization import ClaimsIdentity
from sqlalchemy.exc import SQLAlchemyError

from adapters import readiness
from adapters.teams import config as teams_config
from adapters.teams import references as refs
from adapters.teams.agent import INBOUND, SEEN, TeamsAgent
from adapters.teams.auth import AuthError, KeysUnavailable, TokenValidator
from adapters.teams.connector import (
    ConnectorPool,
    CredentialsUnusable,
    PooledClientFactory,
    TokenProvider,
)
from adapters.teams.port import TeamsPort
from bot.core import Core
from bot.secrets import FORWARDING_HEADERS
from storage.db import OPENED

log = logging.getLogger("staffvoice.teams")
MAX_BODY = 256 * 1024
ANONYMOUS_BANNER = (
    "!!! TEAMS ANONYMOUS MODE: /api/messages accepts requests WITHOUT authentication. "
    "Anyone who can reach {host} can pose as any user. For local tools only "
    "(Microsoft 365 Agents Playground); never expose this server. !!!"
)


class _NoPayloadInLogs(logging.Filter):
    """Drop the SDK's ERROR for an invalid activity: it carries the payload (personal text) and
    a traceback; the endpoint answers 400 and logs the failure's kind itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Validation error for Activity")


logging.getLogger("microsoft_agents.activity.activity").addFilter(_NoPayloadInLogs())


class _NoTokenPayloadInLogs(logging.Filter):
    """Drop MsalAuth's ERROR with Entra's whole answer: the pool logs one line that says
    which setting to fix (adapters.teams.connector.token_failure)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to acquire token")


logging.getLogger("microsoft_agents.authentication.msal.msal_auth").addFilter(_NoTokenPayloadInLogs())


def _unauthorized() -> web.Response:
    return web.json_response({"error": "Unauthorized"}, status=401)


def _loopback_connection(request: web.Request) -> bool:
    """Both ends of the connection are loopback addresses, and no reverse proxy on this
    machine forwarded the request from elsewhere (anonymous mode's only door)."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    local = sock[0] if isinstance(sock, tuple) and sock else ""
    return (teams_config.is_loopback(str(local)) and teams_config.is_loopback(request.remote or "")
            and not any(h in request.headers for h in FORWARDING_HEADERS))


def well_formed(activity: dict[str, Any]) -> bool:
    """The parts the agent reads have the types Teams sends (the SDK's model allows any JSON)."""
    for key in ("channelData", "from", "conversation", "recipient"):
        if key in activity and activity[key] is not None and not isinstance(activity[key], dict):
            return False
    entities = activity.get("entities")
    if entities is not None and not (isinstance(entities, list)
                                     and all(isinstance(e, dict) for e in entities)):
        return False
    data = activity.get("channelData") or {}
    return all(isinstance(data.get(k) or {}, dict) for k in ("team", "tenant", "channel"))


class TeamsEndpoint:
    """The request handler: auth first, then the SDK's CloudAdapter runs our agent."""

    def __init__(self, core: Core, cfg: teams_config.TeamsConfig, port: TeamsPort,
                 pool: ConnectorPool, validator: TokenValidator | None) -> None:
        self.core = core
        self.cfg = cfg
        self.port = port
        self.pool = pool
        self.validator = validator
        self.agent = TeamsAgent(core, port)
        self.adapter = CloudAdapter(channel_service_client_factory=PooledClientFactory(pool))
        self.adapter.on_turn_error = self._on_turn_error
        self._probe: asyncio.Task[None] | None = None

    async def _on_turn_error(self, context: TurnContext, error: Exception) -> None:
        # The SDK's default posts the exception text into the chat; we never do.
        log.error("teams turn failed", exc_info=(type(error), error, error.__traceback__))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "too large"}, status=413)
        try:
            raw = await request.read()
            if len(raw) > MAX_BODY:
                return web.json_response({"error": "too large"}, status=413)
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not an activity
            body = None
        activity = body if isinstance(body, dict) else {}
        if self.validator is not None:
            try:
                claims = await self.validator.validate(
                    request.headers.get("Authorization"),
                    activity.get("serviceUrl") if isinstance(activity.get("serviceUrl"), str) else None,
                    activity.get("channelId") if isinstance(activity.get("channelId"), str) else None,
                )
            except AuthError as e:
                log.warning("teams request refused", extra={"reason": str(e)})
                return _unauthorized()
            except KeysUnavailable:
                log.error("teams signing keys unavailable")
                return web.json_response({"error": "try again later"}, status=503)
        else:
            if not _loopback_connection(request):
                # `serve --host` may differ from STAFFVOICE_HOST: check the socket itself too.
                log.warning("anonymous teams request from a non-loopback connection refused")
                return _unauthorized()
            claims = ClaimsIdentity()  # anonymous (opt-in, loopback only)
        if body is None or not activity or not well_formed(activity):
            return web.json_response({"error": "body must be a JSON activity"}, status=400)
        db = self.core.db
        try:
            # One read serves as the readiness check and saves the turn two lookups. Its
            # transaction is handed on to the event's admission (storage.db.Opened): one
            # transaction for both; given back before any call to the Bot Connector.
            ahead = await db.begin_ahead()
            try:
                assert ahead.conn is not None
                seen = await refs.seen(db, activity, ahead.conn)
            except BaseException:
                await ahead.release()
                raise
        except Exception as e:
            # The SDK answers 202 even when our turn fails: refuse up front so the activity is
            # delivered again rather than acknowledged and lost.
            if isinstance(e, SQLAlchemyError | OSError | TimeoutError):
                log.warning("teams activity deferred: database unavailable",
                            extra={"error": type(e).__name__})
            else:  # our bug, not an outage: say where, still ask for the activity again
                log.exception("teams activity deferred: the pre-turn read failed")
            return web.json_response({"error": "try again later"}, status=503,
                                     headers={"Retry-After": "5"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK looks the identity up by this plain key
            request["claims_identity"] = claims
        token = SEEN.set(seen)
        parsed = INBOUND.set(activity)
        opened = OPENED.set(ahead)
        try:
            response = await self.adapter.process(request, self.agent)
        except CredentialsUnusable:
            # Our credentials, not the caller's activity: the pool has said why, once. 503
            # makes the Bot Connector deliver it again; a 400 would lose it.
            return web.json_response({"error": "try again later"}, status=503,
                                     headers={"Retry-After": "30"})
        except (ValueError, TypeError) as e:
            # pydantic's ValidationError is a ValueError: a malformed activity, not our failure.
            log.warning("teams activity rejected", extra={"error": type(e).__name__})
            return web.json_response({"error": "not a valid activity"}, status=400)
        finally:
            SEEN.reset(token)
            INBOUND.reset(parsed)
            OPENED.reset(opened)
            await ahead.release()  # if nothing took it (a dialog's fetch, a typing activity)
        return response or web.Response(status=202)

    def readiness(self) -> str | None:
        """What /readyz says of Teams: None when fine."""
        problem = self.pool.credentials_problem
        return f"credentials unusable: {problem}" if problem else None

    async def probe(self, _app: web.Application | None = None) -> None:
        """Ask for a token once at start, in the background, so /readyz and the log say at
        once when the credentials do not work (not only at the first message)."""
        if self.pool.tokens is None:
            return

        async def check() -> None:
            try:
                await self.pool.token()
            except CredentialsUnusable:
                pass  # said in the log and on /readyz

        self._probe = asyncio.get_running_loop().create_task(check())

    async def close(self, _app: web.Application | None = None) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.pool.close()
        if self.validator is not None:
            await self.validator.close()


def build(
    core: Core, cfg: teams_config.TeamsConfig, *, tokens: TokenProvider | None = None,
    pool: ConnectorPool | None = None, env: Mapping[str, str] | None = None,
) -> TeamsEndpoint:
    """Wire port, pool and validator for one config (tests pass their own tokens and pool)."""
    if pool is None:
        if tokens is None and not cfg.anonymous:
            from microsoft_agents.activity import load_configuration_from_env
            from microsoft_agents.authentication.msal import MsalConnectionManager

            # The SDK reads its own variables (secret, certificate, authority...) itself.
            sdk = load_configuration_from_env(dict(env or {}))
            tokens = MsalConnectionManager(**sdk).get_default_connection()
        pool = ConnectorPool(None if cfg.anonymous else tokens)
    port = TeamsPort(core.db, pool, core.clock, cfg.app_id)
    validator = None if cfg.anonymous else TokenValidator(
        cfg.app_id, cfg.metadata_urls, cfg.issuers
    )
    return TeamsEndpoint(core, cfg, port, pool, validator)


def mount(app: web.Application, core: Core, env: Mapping[str, str], **kw: Any) -> str | None:
    """Add POST /api/messages when Teams is configured; None (nothing added) otherwise."""
    cfg = teams_config.load(env)
    if cfg is None:
        return None
    endpoint = build(core, cfg, env=env, **kw)
    core.add_port(endpoint.port)
    app.router.add_post("/api/messages", endpoint.handle)
    app.on_startup.append(endpoint.probe)
    app.on_cleanup.append(endpoint.close)
    readiness.add(app, "teams", endpoint.readiness)
    app[TEAMS_KEY] = endpoint
    if cfg.anonymous:
        banner = ANONYMOUS_BANNER.format(host=cfg.host)
        log.warning(banner)
        print(banner, file=sys.stderr, flush=True)
        return f"teams: ANONYMOUS (local tools only) at /api/messages on {cfg.host}"
    return f"teams: /api/messages, JWT-validated for app {cfg.app_id}"


TEAMS_KEY: web.AppKey[TeamsEndpoint] = web.AppKey("teams_endpoint", TeamsEndpoint)
