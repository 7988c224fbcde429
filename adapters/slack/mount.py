"""Mount Slack on the shared aiohttp server: /slack/events, OAuth install pages, Socket Mode.

Requests are verified before anything reads them: a bad or old signature, or missing headers,
is answered 401 and no listener runs; a payload of the wrong shape is answered 400 (never 500)
and logged without its content.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from adapters import stopping
from adapters.slack import config
from adapters.slack.app import SlackAdapter
from adapters.slack.port import make_client
from bot.core import Core

log = logging.getLogger("staffvoice.slack")

SLACK = web.AppKey("slack", SlackAdapter)
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
MAX_BODY = 1024 * 1024
# The database answered this recently (a ping, or the core storing one of our events): no new
# ping per event. Acked events already wait for their turn (SlackAdapter.queue) longer than
# this before the core writes them.
PING_FRESH_S = 0.25
# What the events endpoint defers (503) when Slack's queue of work after acks is full: Events
# API callbacks, which Slack delivers again (three retries over about five minutes). Nothing
# else: Slack never sends an interaction or a command again, so a refused tap (a pulse answer)
# was lost and showed only a warning sign by its button; forms answer in their ack, and "Open
# the form" skips the queue (its trigger expires in 3 s). People tap at human rates. Of the
# events, only those whose work waits in the queue (SlackAdapter.on_message, on_mention, on_home,
# on_user_change): an uninstall or a revoked token is acted on in its ack and queues nothing,
# and one lost after Slack's three retries would leave its installation stored.
DEFERRABLE = {"event_callback"}
QUEUED_EVENTS = {"message", "app_mention", "app_home_opened", "user_change"}


def mount(app: web.Application, core: Core, env: Mapping[str, str]) -> str | None:
    """Add Slack's routes and lifecycle hooks; None (nothing added) when Slack is not configured."""
    try:
        cfg = config.from_env(env)
    except config.SlackConfigError as e:
        log.error("slack is not started: %s", e)
        return f"slack: off ({e})"
    if cfg is None:
        return None
    adapter = SlackAdapter(core, cfg)
    core.add_port(adapter.port)
    app[SLACK] = adapter
    if cfg.signing_secret:
        app.router.add_post(EVENTS_PATH, EventsEndpoint(adapter).handle)
    if cfg.oauth:
        app.router.add_get(INSTALL_PATH, install_page(adapter))
        app.router.add_get(REDIRECT_PATH, oauth_redirect(adapter))
    socket: list[Any] = []
    deadline = stopping.of(app)

    async def start(_app: web.Application) -> None:
        await adapter.start()
        if cfg.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            handler = AsyncSocketModeHandler(
                adapter.bolt, cfg.app_token, web_client=make_client(cfg, session=adapter.workspaces.session)
            )
            await handler.connect_async()
            socket.append(handler)

    async def stop(_app: web.Application) -> None:
        for handler in socket:
            await close_socket(handler, deadline.left())
        await adapter.close(deadline.left())

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return cfg.describe()


async def close_socket(handler: Any, within: float | None) -> bool:
    """Close the Socket Mode connection, waiting `within` seconds at most (serve's shutdown
    deadline left; None: no limit). A close still waiting then (Slack's end of the WebSocket
    never answering the close frame, a reconnect in progress) is cut and said at WARNING: the
    process is ending, and the deadline is what keeps its last flush ahead of SIGKILL.
    Returns whether it closed in time."""
    try:
        await asyncio.wait_for(handler.close_async(), within)
        return True
    except TimeoutError:
        log.warning("slack socket mode connection not closed by the shutdown deadline; cut",
                    extra={"waited_s": round(within or 0.0, 3)})
        return False


def well_formed(body: Any) -> bool:
    """The three shapes Slack posts: an Events API envelope, an interaction, a slash command."""
    if not isinstance(body, dict):
        return False
    kind = body.get("type")
    if kind == "event_callback":
        ev = body.get("event")
        return isinstance(ev, dict) and isinstance(ev.get("type"), str) and bool(body.get("event_id"))
    if kind == "url_verification":
        return isinstance(body.get("challenge"), str)
    if isinstance(kind, str) and kind:
        return interaction_well_formed(body)  # block_actions, view_submission, shortcut, ...
    return isinstance(body.get("command"), str) or body.get("ssl_check") == "1"


def _dict_or_absent(body: dict[str, Any], key: str) -> bool:
    return key not in body or isinstance(body[key], dict)


def interaction_well_formed(body: dict[str, Any]) -> bool:
    """The parts Bolt and our listeners index into have the types Slack sends."""
    if not all(_dict_or_absent(body, k) for k in ("user", "team", "container", "channel", "message")):
        return False
    if not isinstance(body.get("callback_id", ""), str):  # Bolt matches it with a regex
        return False
    if body["type"] == "block_actions":
        actions = body.get("actions")
        return (isinstance(actions, list) and bool(actions)
                and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions))
    if body["type"] in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not _dict_or_absent(view, "state"):
            return False
        if not isinstance(view.get("callback_id", ""), str):
            return False
        blocks = view.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            return False  # form errors are keyed by the view's input blocks
        values = (view.get("state") or {}).get("values", {})
        return isinstance(values, dict) and all(
            isinstance(block, dict) and all(isinstance(el, dict) for el in block.values())
            for block in values.values())
    return True


class EventsEndpoint:
    """POST /slack/events: verify, check the shape, hand to Bolt."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.verifier = SignatureVerifier(adapter.cfg.signing_secret)
        self.deferred_said = -math.inf  # when the full queue was last logged (once a minute)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413)
        raw = await request.read()
        try:
            valid = self.verifier.is_valid(
                raw,
                request.headers.get("X-Slack-Request-Timestamp"),
                request.headers.get("X-Slack-Signature"),
            )
        except ValueError:  # a body that is not UTF-8, a timestamp that is not a number
            valid = False
        if not valid:
            log.info("slack request refused: bad signature or timestamp")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_req = AsyncBoltRequest(
                body=raw.decode("utf-8"), query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]
            )
            ok = well_formed(bolt_req.body)
        except Exception:  # Bolt's parser trips on odd shapes (a JSON list): refuse, never 500
            ok = False
        if not ok:
            log.warning("slack request refused: malformed payload",
                        extra={"content_type": request.content_type, "size": len(raw)})
            return web.json_response({"error": "malformed payload"}, status=400)
        if (bolt_req.body.get("type") != "url_verification"
                and not self.adapter.database_answered(PING_FRESH_S)
                and not await self.adapter.core.db.ping(fresh_for=PING_FRESH_S)):
            # Listeners ack before the core runs: with the database away the event would be
            # acked and lost. Not acking makes Slack deliver it again (with X-Slack-Retry-Num).
            log.warning("slack request deferred: database unavailable")
            return web.json_response({"error": "try again later"}, status=503,
                                     headers={"Retry-After": "5"})
        if self.adapter.backlog_full() and _queues_work(bolt_req.body):
            # Work acked now would be done seconds from now (SlackAdapter.QUEUE_MAX): not
            # acking makes Slack deliver the event again later.
            if time.monotonic() - self.deferred_said >= 60:
                self.deferred_said = time.monotonic()
                log.warning("slack requests deferred: too much work queued after acks",
                            extra={"queued": self.adapter.queued})
            return web.json_response({"error": "try again later"}, status=503,
                                     headers={"Retry-After": "5"})
        resp = await self.adapter.bolt.async_dispatch(bolt_req)  # verified above, not again
        if resp.status >= 500:
            log.error("slack request failed inside a listener", extra={"status": resp.status})
        return await to_aiohttp_response(resp)


def _queues_work(body: Mapping[str, Any]) -> bool:
    """Whether a request's work would wait in the queue after its ack (and so may be deferred)."""
    event = body.get("event")
    return (body.get("type") in DEFERRABLE and isinstance(event, Mapping)
            and event.get("type") in QUEUED_EVENTS)


def install_page(adapter: SlackAdapter) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        flow = adapter.bolt.oauth_flow
        assert flow is not None
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    return handle


def oauth_redirect(adapter: SlackAdapter) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        flow = adapter.bolt.oauth_flow
        assert flow is not None
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    return handle
