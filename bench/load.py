"""Load on the serving process: signed Slack and Teams traffic at a fixed rate, next to the bare
frameworks measured in the same run.

    .venv/bin/python bench/load.py [--rate 200] [--seconds 20] [--saturate 5] [--concurrency 32]

Processes (each its own, on loopback):
- fakes: the fake Slack Web API and the fake Teams Bot Connector + token issuer (tests/fakes);
- ours: `staffvoice.serve.lifecycle.serve` (health, metrics, scheduler, workers, Slack and Teams mounted),
  SQLite, the example programme loaded. The one change from production: the Teams outbound
  token comes from the fake issuer instead of Entra (no network here);
- bare slack-bolt: an AsyncApp whose message listener only acks (process_before_response=True,
  as ours; and Bolt's defaults), from bench/slack_ack.py;
- bare Agents SDK: CloudAdapter with an echo agent replying to the fake connector (no JWT check).

Traffic for ours is a mix: Slack pulse taps, "status" questions and feedback form submissions,
and the same three over Teams (JWT-signed activities). The bare servers get what they can
answer: signed message events (Bolt) and message activities (SDK). Phase 1 sends at a fixed
rate (open loop) and reports p50/p99 latency and errors; phase 2 saturates with a fixed number of
concurrent clients and reports throughput. Peak memory is the server's VmHWM; with
LOAD_WORKERS=N (ours as `serve --workers N`) it is the PSS summed over the parent and its workers,
sampled through the run. LOAD_DATABASE_URL=postgresql+asyncpg://... serves from PostgreSQL (a
scratch database: emptied first); LOAD_WORKERS needs it.

--stalls: the event loop seen from inside ours and bare-work in each phase (bench/loop_probe.py):
heartbeat lateness, callbacks that used over 5 ms of the loop thread's CPU (with a stack sampled
while they ran) and every collection of the garbage collector (pause, objects walked). Counts
and CPU time, which a busy machine inflates far less than wall-clock latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SECRET = "bench-signing-secret"  # the same as bench/slack_ack.py's bare servers
BOT_TOKEN = "xoxb-fake-bot-token"
TIMEOUT = aiohttp.ClientTimeout(total=10)  # a request slower than this counts as an error
PEOPLE = [f"practitioner{i}@northbridge.example" for i in range(1, 16)]
CHANGE = "changelead@northbridge.example"
# Warm-up: every kind of the mix from every person (their first contact is not what is measured).
WARM_UP = 6 * len(PEOPLE)
WARM_FROM = WARM_UP * 10**5
IDLE_S = 20.0  # --callgrind: the idle rate (timers) is read over this long, before and after
# --callgrind: the router workers that stay (bot/flusher.py's loop), and the flush interval
# they are given. The warm-up's writes are flushed before counting starts (FLUSH_S + 1 s later).
FLUSHERS = {"feedback-counts", "privacy-notices", "people-held"}
FLUSH_S = 5.0


# -- servers (run with --serve KIND) ---------------------------------------------------------

async def serve_fakes() -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.teams_connector import FakeConnector, FakeTeams

    # The bench measures the servers, not the platforms' pacing: its traffic is several
    # messages a second to each person, far over Slack's and Teams' per-conversation limits.
    slack = FakeSlack(tiers=False)
    connector = FakeConnector(FakeTeams(thread_limits=False))
    if os.environ.get("LOAD_RECEIPTS"):
        record_receipts(slack, connector, os.environ["LOAD_RECEIPTS"])
    await slack.start()
    teams = await connector.start()
    slack_users = {e: slack.add_user(e).id for e in [*PEOPLE, CHANGE]}
    for uid in slack_users.values():
        slack.dm_of(uid)  # their DM with the bot exists
    teams_users = {}
    for e in [*PEOPLE, CHANGE]:
        u = teams.add_user(e)
        u.installed = True
        teams_users[e] = u.id
    pem = teams.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    print(json.dumps({"slack_url": slack.url, "team": slack.team, "slack_users": slack_users,
                      "teams_url": teams.url, "service_url": teams.service_url,
                      "metadata_url": teams.metadata_url, "teams_users": teams_users,
                      "tenant": teams.state.tenant_id, "app_id": teams.state.app_id,
                      "bot_id": teams.state.bot_id, "kid": teams.kid, "pem": pem}), flush=True)
    await asyncio.Event().wait()


# What a person sees: the platform calls that show them something, by method (Slack) or by
# route (the Teams connector's send, reply and update).
SHOWN_SLACK = {"chat.postMessage", "chat.update", "chat.postEphemeral", "views.update",
               "views.open", "views.publish"}


def record_receipts(slack: Any, connector: Any, path: str) -> None:
    """Write when each call that shows a person something reached the fakes (time.monotonic,
    one clock for every process here), with the conversation it went to: the user's side of
    a request's time (load.py's "until seen"), since a reply sent after the ack is not in the
    HTTP latency. JSON lines, flushed every 0.2 s."""
    out = open(path, "w", buffering=1 << 16)  # noqa: SIM115 - lives with the process

    def write(t: float, what: str, where: str) -> None:
        out.write(json.dumps([round(t, 6), what, where]) + "\n")

    api = slack._api

    async def slack_api(request: Any) -> Any:
        t = time.monotonic()
        method = request.match_info["method"]
        response = await api(request)
        if method in SHOWN_SLACK and response.status == 200:
            raw = (await request.read()).decode()  # read once by the fake, kept by aiohttp
            if request.content_type == "application/json":
                args = json.loads(raw)
            else:
                from urllib.parse import parse_qsl

                args = dict(parse_qsl(raw))
            where = args.get("channel") or args.get("user_id") or args.get("external_id") \
                or args.get("view_id") or ""
            write(t, method, str(where))
        return response

    slack._api = slack_api

    def teams(handler: Any, what: str) -> Any:
        async def recorded(request: Any) -> Any:
            t = time.monotonic()
            response = await handler(request)
            if response.status < 300:
                write(t, what, request.match_info["cid"])
            return response
        return recorded

    connector._send = teams(connector._send, "send")
    connector._reply = teams(connector._reply, "reply")
    connector._update = teams(connector._update, "update")

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.2)
            out.flush()

    asyncio.get_running_loop().create_task(flush())


class FakeIssuerTokens:
    """The bot's outbound token, signed by the fake issuer (production asks Entra)."""

    def __init__(self, pem: str, kid: str, app_id: str) -> None:
        self.pem, self.kid, self.app_id = pem, kid, app_id

        self.token = ""

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        import jwt

        if not self.token or force_refresh:  # cached, as MSAL caches Entra's tokens
            now = int(time.time())
            self.token = jwt.encode({"iss": "https://login.microsoftonline.com/fake/v2.0",
                                     "aud": "https://api.botframework.com", "appid": self.app_id,
                                     "iat": now, "exp": now + 3600}, private_key(self.pem),
                                    algorithm="RS256", headers={"kid": self.kid})
        return self.token


_KEYS: dict[str, Any] = {}


def private_key(pem: str) -> Any:
    """Parsing an RSA key checks it (tens of ms): once per process."""
    if pem not in _KEYS:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        _KEYS[pem] = load_pem_private_key(pem.encode(), password=None)
    return _KEYS[pem]


def fakes_env(fakes: dict[str, Any]) -> dict[str, str]:
    return {
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": fakes["slack_url"],
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": fakes["app_id"],
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET": "not-used",
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__TENANTID": fakes["tenant"],
        "STAFFVOICE_TEAMS_OPENID_METADATA": fakes["metadata_url"],
    }


def serve_ours(fakes: dict[str, Any]) -> Any:
    """The coroutine serving ours (awaited by the caller's asyncio.run); with LOAD_WORKERS > 1
    it serves here instead, forking its workers before any event loop runs, and exits."""
    import functools

    import adapters.teams.mount as teams_mount
    from adapters.teams.connector import ConnectorPool
    from bot.config import Settings
    from staffvoice.serve import lifecycle as server

    tokens = FakeIssuerTokens(fakes["pem"], fakes["kid"], fakes["app_id"])
    teams_mount.mount = functools.partial(teams_mount.mount,  # type: ignore[assignment]
                                          pool=ConnectorPool(tokens))
    tmp = Path(tempfile.mkdtemp())
    os.environ.update(fakes_env(fakes))
    settings = Settings.from_env({
        **os.environ,
        "STAFFVOICE_DATABASE_URL": os.environ.get("LOAD_DATABASE_URL")
        or f"sqlite+svinline:///{tmp / 'load.db'}",
        "STAFFVOICE_SECRET_KEY": "bench", "STAFFVOICE_PROGRAMME": str(bench_programme(tmp)),
        "STAFFVOICE_LOG_LEVEL": "WARNING"})
    if os.environ.get("LOAD_DATABASE_URL"):
        asyncio.run(_empty(settings.database_url))
    print(json.dumps({"db": settings.database_url}), flush=True)
    if os.environ.get("LOAD_QUIET"):
        # --callgrind: no send-ledger workers nor scheduled jobs, whose polls would otherwise
        # be counted into every request (and cost a guess to subtract). The flushers stay:
        # they write what requests hold in memory (feedback counts, privacy notice rows,
        # account links, DM routes, time zones), as every replica does. Without them nothing
        # held is ever written, and every admission stays on the first contact's path (the
        # +1.6-1.9 M per request the eighth session saw at da4657f).
        import bot.core

        full = bot.core.build_router

        def quiet() -> Any:
            router = full()
            if FLUSHERS - set(router.workers):
                raise SystemExit(f"bench/load.py: no flusher named {FLUSHERS - set(router.workers)}"
                                 "; update FLUSHERS")
            for name in set(router.workers) - FLUSHERS:
                del router.workers[name]
            router.tickers.clear()
            return router

        bot.core.build_router = quiet  # type: ignore[assignment]
    if os.environ.get("LOAD_HOOK"):  # instrumentation to run inside the server (a file path)
        import runpy

        runpy.run_path(os.environ["LOAD_HOOK"])
    if int(os.environ.get("LOAD_WORKERS", "1")) > 1:
        # `serve --workers` is gone (issue 23): replicas are separate `serve --reuse-port`
        # processes, which this bench does not start yet.
        raise SystemExit("LOAD_WORKERS: `serve --workers` was replaced by N `serve --reuse-port` "
                         "processes; this bench serves one")
    return probed(server.serve(settings, "127.0.0.1", 0))


async def probed(served: Any) -> Any:
    """`served`, with the loop probe inside when asked (--stalls: bench/loop_probe.py)."""
    if os.environ.get("LOAD_STALLS"):
        import loop_probe

        loop_probe.start(os.environ["LOAD_STALLS"])
    return await served


def bench_programme(tmp: Path) -> Path:
    """The example programme with feedback's daily allowance at its most (100 a person): the
    mix sends each of the 15 people hundreds of forms, and past the example's 5 a day every
    one would be refused in its ack instead of stored and answered."""
    text = (ROOT / "examples/programme.yaml").read_text()
    old = "feedback: {max_length: 2000, daily_limit: 5,"
    if old not in text:
        raise SystemExit("bench/load.py: examples/programme.yaml's feedback line changed; update bench_programme")
    path = tmp / "programme.yaml"
    path.write_text(text.replace(old, "feedback: {max_length: 2000, daily_limit: 100,"))
    return path


async def _empty(url: str) -> None:
    """A scratch PostgreSQL database starts each run empty (yesterday's rounds and counters gone)."""
    from scratch import emptied

    from storage.db import Database

    await (await emptied(Database(url))).dispose()


async def serve_bare_agents(fakes: dict[str, Any], app: Any = None, store: Any = None) -> None:
    """The Agents SDK echo bot (`store`: awaited with each message's id before the echo)."""
    from aiohttp import web
    from microsoft_agents.hosting.aiohttp import CloudAdapter
    from microsoft_agents.hosting.core import TurnContext
    from microsoft_agents.hosting.core.authorization import ClaimsIdentity

    from adapters.teams.connector import ConnectorPool, PooledClientFactory

    class Echo:
        async def on_turn(self, context: TurnContext) -> None:
            if context.activity.type == "message":
                if store is not None:
                    await store(f"teams:{context.activity.id}")
                await context.send_activity(context.activity.text or "")

    tokens = FakeIssuerTokens(fakes["pem"], fakes["kid"], fakes["app_id"])
    adapter = CloudAdapter(channel_service_client_factory=PooledClientFactory(ConnectorPool(tokens)))
    agent = Echo()

    async def messages(request: web.Request) -> web.StreamResponse:
        request["claims_identity"] = ClaimsIdentity()
        return await adapter.process(request, agent) or web.Response(status=202)

    app = app or web.Application()
    app.router.add_post("/api/messages", messages)
    await _listen(app)


async def serve_bare_work(fakes: dict[str, Any], mix: bool = True) -> None:
    """The least a bot that keeps and answers each message does, on the bare frameworks, for
    the same requests as ours (`mix`; else only messages, the row kept for continuity).

    Each request is verified as the frameworks do (Bolt checks the Slack signature; the Teams
    JWT is decoded and its RS256 signature checked with PyJWT on every request), acked, its id
    stored (one INSERT and commit, SQLite through staffvoice's driver) and answered once by
    the platform call ours makes: chat.postMessage (in the channel of a message; for a tap
    or a form, in the person's DM, its channel kept once opened), a connector reply, and for
    a dialog's task/submit the reply plus the invoke response. Both on one server, as ours;
    the Web API client shares one HTTP session, as ours does."""
    import re

    import jwt
    from aiohttp import web
    from microsoft_agents.activity import Activity
    from microsoft_agents.hosting.aiohttp import CloudAdapter
    from microsoft_agents.hosting.core import TurnContext
    from microsoft_agents.hosting.core.authorization import ClaimsIdentity
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient
    from sqlalchemy import Column, MetaData, String, Table, insert

    from adapters.teams.connector import ConnectorPool, PooledClientFactory
    from storage.db import Database

    db = Database(f"sqlite+svinline:///{Path(tempfile.mkdtemp()) / 'bare.db'}")
    seen = Table("seen", MetaData(), Column("event_id", String(64), primary_key=True))
    async with db.engine.begin() as conn:
        await conn.run_sync(seen.metadata.create_all)
    put = insert(seen)

    async def store(event_id: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(put, {"event_id": event_id})

    session = aiohttp.ClientSession() if mix else None
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fakes["slack_url"], session=session)
    bolt = AsyncApp(signing_secret=SECRET, client=client)
    dms: dict[str, str] = {}

    async def dm(user_id: str) -> str:
        if user_id not in dms:
            dms[user_id] = (await client.conversations_open(users=user_id))["channel"]["id"]
        return dms[user_id]

    @bolt.event("message")
    async def on_message(ack, body, event):  # type: ignore[no-untyped-def]
        await ack()
        await store(f"slack:{body['event_id']}")
        await client.chat_postMessage(channel=event["channel"], text=event.get("text") or "")

    if mix:
        @bolt.action(re.compile(".+"))
        async def on_action(ack, body):  # type: ignore[no-untyped-def]
            await ack()
            tap = body["actions"][0]
            await store(f"slack:{tap['action_id']}:{tap['action_ts']}")
            await client.chat_postMessage(channel=await dm(body["user"]["id"]),
                                          text=f"Saved: {tap.get('value')}")

        @bolt.view(re.compile(".+"))
        async def on_submit(ack, body, view):  # type: ignore[no-untyped-def]
            await ack()
            await store(f"slack:{view['id']}:{view['hash']}")
            await client.chat_postMessage(channel=await dm(body["user"]["id"]), text="Thank you.")

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    class Agent:
        async def on_turn(self, context: TurnContext) -> None:
            a = context.activity
            if a.type == "message":
                await store(f"teams:{a.id}")
                await context.send_activity(a.text or "Saved.")
            elif a.type == "invoke" and mix:
                await store(f"teams:{a.id}")
                await context.send_activity("Thank you.")
                await context.send_activity(Activity(type="invokeResponse", value={"status": 200}))

    tokens = FakeIssuerTokens(fakes["pem"], fakes["kid"], fakes["app_id"])
    adapter = CloudAdapter(channel_service_client_factory=PooledClientFactory(ConnectorPool(tokens)))
    agent = Agent()
    public = private_key(fakes["pem"]).public_key()

    async def messages(request: web.Request) -> web.StreamResponse:
        if mix:
            try:
                scheme, _, token = request.headers.get("Authorization", "").partition(" ")
                claims = jwt.decode(token, public, algorithms=["RS256"], audience=fakes["app_id"],
                                    issuer="https://api.botframework.com")
            except jwt.PyJWTError:
                return web.json_response({"error": "Unauthorized"}, status=401)
            request["claims_identity"] = ClaimsIdentity(claims, "Bearer", token)
        else:
            request["claims_identity"] = ClaimsIdentity()
        return await adapter.process(request, agent) or web.Response(status=202)

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_post("/api/messages", messages)
    await _listen(app)


async def _listen(app: Any) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"staffvoice listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# -- process handling ------------------------------------------------------------------------

def spawn(kind: str, env: dict[str, str], callgrind: str = "") -> tuple[subprocess.Popen[str], list[str]]:
    """Start a server; with `callgrind` (an output file) under valgrind, not yet counting."""
    log = open(Path(tempfile.gettempdir()) / f"load_{kind}.log", "w")  # noqa: SIM115
    cmd = [sys.executable, __file__, "--serve", kind]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
               f"--callgrind-out-file={callgrind}", *cmd]
    if env.get("LOAD_STALLS"):  # --stalls: one probe file per server
        env = {**env, "LOAD_STALLS": f"{env['LOAD_STALLS']}.{kind}.jsonl"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=log, text=True, env={**os.environ, **env}, cwd=ROOT)
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{kind} did not start; see {log.name}")
        lines.append(line.strip())
        if line.startswith("{") and kind == "fakes":
            return proc, lines
        if "listening on" in line or (line.startswith("{\"url\"")):
            return proc, lines


def base_of(lines: list[str]) -> str:
    for line in lines:
        if "listening on" in line:
            return line.rsplit(" ", 1)[1].rstrip(",")
        if line.startswith("{\"url\""):
            return str(json.loads(line)["url"]).removesuffix("/slack/events")
    raise SystemExit(f"no address in {lines}")


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory; with workers
    (LOAD_WORKERS > 1, sharing pages with the parent) the PSS summed over all of them now."""
    if children_of(pid):
        return pss_mb(pid)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_of(pid: int) -> list[int]:
    return [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]


def pss_mb(pid: int) -> float:
    """PSS (shared pages split between their sharers) summed over `pid` and its descendants."""
    kb = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            kb = int(line.split()[1])
    return kb / 1024 + sum(pss_mb(c) for c in children_of(pid))


# -- requests ------------------------------------------------------------------------------

class Traffic:
    """Builds signed requests; `ids` keeps every event unique (no dedup shortcuts)."""

    def __init__(self, fakes: dict[str, Any]) -> None:
        self.f = fakes
        self.ids = itertools.count(1)
        self.round_id = ""
        self.token, self.token_at = "", 0
        self._dialog = ""

    def slack(self, body: str, content_type: str) -> tuple[str, bytes, dict[str, str]]:
        ts = str(int(time.time()))
        sig = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        return "/slack/events", body.encode(), {"Content-Type": content_type,
                                                 "X-Slack-Request-Timestamp": ts,
                                                 "X-Slack-Signature": f"v0={sig}"}

    def slack_message(self, email: str, text: str) -> tuple[str, bytes, dict[str, str]]:
        n = next(self.ids)
        uid = self.f["slack_users"][email]
        return self.slack(json.dumps({
            "type": "event_callback", "team_id": self.f["team"], "api_app_id": "A0LOAD",
            "event_id": f"Ev0LOAD{n:09d}", "event_time": int(time.time()),
            "event": {"type": "message", "channel": "D" + uid[1:], "user": uid, "text": text,
                      "ts": f"{int(time.time())}.{n:06d}", "channel_type": "im"}}),
            "application/json")

    def _user(self, email: str) -> dict[str, str]:
        uid = self.f["slack_users"][email]
        return {"id": uid, "username": email.split("@")[0], "team_id": self.f["team"]}

    def slack_tap(self, email: str) -> tuple[str, bytes, dict[str, str]]:
        n = next(self.ids)
        payload = {"type": "block_actions", "user": self._user(email), "team": {"id": self.f["team"]},
                   "container": {"type": "view", "view_id": "VH0"}, "trigger_id": f"{n}.load",
                   "actions": [{"action_id": f"pulse.a.{self.round_id}.{n % 5}#0", "block_id": "b",
                                "value": str(1 + n % 5), "type": "button",
                                "action_ts": f"{time.time():.6f}{n}"}]}
        return self.slack(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def slack_feedback(self, email: str) -> tuple[str, bytes, dict[str, str]]:
        n = next(self.ids)
        values = {"text": {"value": {"type": "plain_text_input",
                                     "value": f"The new supervision slots help ({n})."}},
                  "theme": {"value": {"type": "static_select", "selected_option": None}},
                  "replies": {"value": {"type": "checkboxes", "selected_options": []}}}
        view = {"id": f"V0LOAD{n}", "hash": f"h{n}", "type": "modal", "callback_id": "feedback.submit",
                "private_metadata": "", "title": {"type": "plain_text", "text": "Feedback"},
                "blocks": [{"type": "input", "block_id": k} for k in values],
                "state": {"values": values}}
        payload = {"type": "view_submission", "team": {"id": self.f["team"]}, "user": self._user(email),
                   "trigger_id": f"{n}.load", "view": view}
        return self.slack(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def teams(self, email: str, **extra: Any) -> tuple[str, bytes, dict[str, str]]:
        import jwt

        n = next(self.ids)
        uid = self.f["teams_users"][email]
        cid = f"a:personal-{uid.split('-')[-1]}"
        a = {"type": "message", "id": f"18{n:011d}", "serviceUrl": self.f["service_url"],
             "channelId": "msteams", "from": {"id": uid, "name": email.split("@")[0]},
             "conversation": {"conversationType": "personal", "tenantId": self.f["tenant"], "id": cid},
             "recipient": {"id": self.f["bot_id"], "name": "staffvoice"},
             "channelData": {"tenant": {"id": self.f["tenant"]}}, "locale": "en-GB", **extra}
        now = int(time.time())
        if now - self.token_at > 60:  # the Bot Framework reuses its token for a while
            self.token = jwt.encode({"iss": "https://api.botframework.com", "aud": self.f["app_id"],
                                     "iat": now - 5, "nbf": now - 5, "exp": now + 3600,
                                     "serviceurl": self.f["service_url"]}, private_key(self.f["pem"]),
                                    algorithm="RS256", headers={"kid": self.f["kid"]})
            self.token_at = now
        token = self.token
        return "/api/messages", json.dumps(a).encode(), {"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {token}"}

    def teams_message(self, email: str, text: str) -> tuple[str, bytes, dict[str, str]]:
        return self.teams(email, text=text, textFormat="plain")

    def teams_tap(self, email: str) -> tuple[str, bytes, dict[str, str]]:
        n = next(self.ids)
        return self.teams(email, value={"sv_kind": "action", "sv_action": f"pulse.a.{self.round_id}.{n % 5}",
                                        "sv_value": str(1 + n % 5)})

    def teams_feedback(self, email: str) -> tuple[str, bytes, dict[str, str]]:
        """The feedback dialog's task/submit invoke (forms open in dialogs on Teams)."""
        n = next(self.ids)
        return self.teams(email, type="invoke", name="task/submit", value={"data": {
            "sv_kind": "dialog", "sv_form": "feedback.submit", "sv_meta": "",
            "sv_dialog": self.feedback_dialog(),
            "text": f"More time for network meetings please ({n}).", "theme": "",
            "replies": False}})

    def feedback_dialog(self) -> str:
        """The packed feedback form a dialog carries (what the form's button opened)."""
        if not self._dialog:
            from adapters.teams.dialogs import pack
            from bot.model import Choice, Context, Form, SelectInput, TextInput, ToggleInput

            self._dialog = pack(Form(
                "feedback.submit", "Anonymous feedback",
                (TextInput("text", "Your feedback", multiline=True, max_length=2000),
                 SelectInput("theme", "Theme", (Choice("Supervision", "supervision"),), optional=True),
                 ToggleInput("replies", "Let the change team reply")),
                (Context("Your name is not stored with your feedback and nobody can see who sent "
                         "it. Up to 2,000 characters; up to 100 a day."),)))
        return self._dialog

    def mix(self, i: int) -> tuple[str, bytes, dict[str, str]]:
        # Six kinds in turn, each six-request turn from the next person: everyone sends every kind.
        email = PEOPLE[(i // 6) % len(PEOPLE)]
        kind = i % 6
        if kind == 0:
            return self.slack_tap(email)
        if kind == 1:
            return self.slack_message(email, "status")
        if kind == 2:
            return self.slack_feedback(email)
        if kind == 3:
            return self.teams_tap(email)
        if kind == 4:
            return self.teams_message(email, "status")
        return self.teams_feedback(email)


# -- load ----------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def one(session: aiohttp.ClientSession, base: str, req: tuple[str, bytes, dict[str, str]],
              lat: list[float], errors: list[str],
              log: list[tuple[int, float, float]] | None = None, i: int = 0) -> None:
    path, body, headers = req
    start = time.perf_counter()
    sent = time.monotonic()
    try:
        async with session.post(base + path, data=body, headers=headers) as r:
            await r.read()
            if r.status >= 300:
                errors.append(f"HTTP {r.status} {path}")  # which endpoint refused
    except Exception as e:  # noqa: BLE001 - counted, reported
        errors.append(type(e).__name__)
    lat.append((time.perf_counter() - start) * 1000)
    if log is not None:  # (request, sent, answered), monotonic: matched with the receipts
        log.append((i, sent, time.monotonic()))


async def fixed_rate(base: str, make: Any, rate: float, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    errors: list[str] = []
    log: list[tuple[int, float, float]] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=TIMEOUT) as session:
        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, base, make(i), lat, errors, log, i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"sent": total, "rps": total / elapsed, "p50": pct(lat, 50), "p99": pct(lat, 99),
            "errors": len(errors), "kinds": sorted(set(errors)), "log": log}


# The mix's kinds (Traffic.mix) whose answer reaches the person as a post of its own: ours
# answers a tap with the next question and "status" with its card, each by one post in the
# person's DM (Slack: chat.postMessage after the ack; Teams: a send before the 202); a form's
# answer is the ack's view (Slack) or the invoke's answer (Teams), nothing posted (one
# request at a time of each kind, `--per-kind`, checked with the receipts). The bare baseline
# posts a reply to every request. A kind not listed is seen when its HTTP answer arrives.
REPLIED = {"ours": {0, 1, 3, 4}, "bare-work": {0, 1, 2, 3, 4, 5}}


def conversation_of(fakes: dict[str, Any], i: int) -> str:
    """Where request i of the mix is answered: the person's DM (Slack) or personal chat (Teams)."""
    email = PEOPLE[(i // 6) % len(PEOPLE)]
    if i % 6 < 3:
        return "D" + fakes["slack_users"][email][1:]
    return f"a:personal-{fakes['teams_users'][email].split('-')[-1]}"


def until_seen(log: list[tuple[int, float, float]], receipts: str, fakes: dict[str, Any],
               replied: set[int], t0: float, t1: float) -> dict[str, Any]:
    """The time until the person sees the result, per request: its HTTP answer, or for a kind
    answered by a post (`replied`) the fakes' receipt of that post, whichever is later. Posts
    are matched to requests first in, first out within each conversation (a person's
    requests of one platform are sent 3 in a row, then ~0.5 s apart at 165 req/s: a
    mismatch within those three swaps nearby times only). A request whose post never came
    (`missing`) was not seen by `t1`: it counts as seen at `t1`, a lower bound, never as
    its HTTP answer (the person saw nothing then). Also the HTTP latency per kind."""
    calls: dict[str, list[float]] = {}
    for line in Path(receipts).read_text().splitlines():
        try:
            t, _what, where = json.loads(line)
        except ValueError:
            continue  # a line cut by a flush
        if t0 <= t <= t1:
            calls.setdefault(where, []).append(t)
    for ts in calls.values():
        ts.sort()
    taken = {where: 0 for where in calls}
    matched = 0
    seen: list[float] = []
    by_kind: dict[int, tuple[list[float], list[float]]] = {k: ([], []) for k in range(6)}
    missing = 0
    for i, sent, answered in sorted(log, key=lambda r: r[1]):
        k = i % 6
        http = (answered - sent) * 1000
        done = http
        if k in replied:
            where = conversation_of(fakes, i)
            ts, n = calls.get(where, []), taken.get(where, 0)
            while n < len(ts) and ts[n] < sent:
                n += 1  # a post from before this request (a reply not matched)
            if n < len(ts):
                done = max(http, (ts[n] - sent) * 1000)
                taken[where] = n + 1
                matched += 1
            else:
                done = max(http, (t1 - sent) * 1000)  # not seen by the end: at least that
                missing += 1
        seen.append(done)
        by_kind[k][0].append(http)
        by_kind[k][1].append(done)
    extra = sum(len(ts) for ts in calls.values()) - matched
    return {"p50": pct(seen, 50), "p99": pct(seen, 99), "missing": missing, "unmatched": extra,
            "kinds": {k: {"n": len(h), "http_p50": pct(h, 50), "http_p99": pct(h, 99),
                          "seen_p50": pct(d, 50), "seen_p99": pct(d, 99)}
                      for k, (h, d) in by_kind.items() if h}}


async def saturate(base: str, make: Any, seconds: float, concurrency: int) -> float:
    lat: list[float] = []
    errors: list[str] = []
    counter = itertools.count()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=TIMEOUT) as session:
        end = time.perf_counter() + seconds

        async def client() -> int:
            done = 0
            while time.perf_counter() < end:
                await one(session, base, make(next(counter)), lat, errors)
                done += 1
            return done

        start = time.perf_counter()
        done = sum(await asyncio.gather(*(client() for _ in range(concurrency))))
        return done / (time.perf_counter() - start)


async def open_round(base: str, traffic: Traffic, db: str) -> None:
    """The change lead opens the weekly pulse now, so taps land on a real open round."""
    from sqlalchemy import text

    from storage.db import Database

    path, body, headers = traffic.slack_message(CHANGE, "pulse open weekly-pulse")
    async with aiohttp.ClientSession() as s, s.post(base + path, data=body, headers=headers) as r:
        assert r.status == 200, r.status
    database = Database(db)
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            async with database.engine.connect() as c:
                row = (await c.execute(text(
                    "SELECT id FROM pulse_rounds WHERE state = 'open' LIMIT 1"))).first()
            if row:
                traffic.round_id = row[0]
                return
    finally:
        await database.dispose()
    print("warning: no open pulse round; taps exercise the closed-round path", file=sys.stderr)


async def seen_in(phase: dict[str, Any], args: argparse.Namespace, kind: str, t0: float) -> None:
    """Add the phase's time until seen (until_seen) for a server of the mix; drop the log."""
    log = phase.pop("log")
    if kind in REPLIED and vars(args).get("receipts"):
        await asyncio.sleep(0.5)  # the fakes write their receipts every 0.2 s
        phase["seen"] = until_seen(log, args.receipts, args.fakes, REPLIED[kind], t0,
                                   time.monotonic())


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its workers (`serve --workers N`)."""
    return cpu_s(pid) + sum(tree_cpu_s(c) for c in children_of(pid))


async def measure(name: str, base: str, make: Any, args: argparse.Namespace,
                  pid: int, half_rate: float = 0.0, kind: str = "") -> dict[str, Any]:
    """The fixed-rate phase (latency, CPU per request), with `half_rate` an open-loop phase at
    that rate (issue 22's target 2: half the baseline's saturated rate), then saturation."""
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    peak = [0.0]

    async def sample() -> None:  # the peak of a sum of processes has no kernel counter
        while True:
            peak[0] = max(peak[0], memory_mb(pid, "VmRSS"))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    # Memory once started (and before this phase's warm-up; ours has had --per-kind's).
    start_mb = {"rss": memory_mb(pid, "VmRSS"), "hwm": memory_mb(pid)}
    phases: dict[str, tuple[float, float]] = {}  # monotonic windows, for the loop probe
    for i in range(WARM_UP):  # connections, Bolt's auth.test, everyone linked on both platforms
        await one_shot(base, make(WARM_FROM + i))
    cpu0 = tree_cpu_s(pid)
    t0 = time.monotonic()
    fixed = await fixed_rate(base, make, args.rate, args.seconds)
    phases["fixed"] = (t0, time.monotonic())
    await settle(pid)  # work still running after its ack (or queued) is counted too
    await seen_in(fixed, args, kind, t0)
    fixed["cpu_ms"] = (tree_cpu_s(pid) - cpu0) * 1000 / fixed["sent"]
    if half_rate:
        print(f"  ... at {half_rate:.0f} req/s (half the baseline's saturated rate)",
              file=sys.stderr, flush=True)
        peak_before, peak[0] = peak[0], 0.0
        cpu0 = tree_cpu_s(pid)
        t0 = time.monotonic()
        half = await fixed_rate(base, make, half_rate, args.seconds)
        phases["half"] = (t0, time.monotonic())
        await settle(pid)
        await seen_in(half, args, kind, t0)
        half["cpu_ms"] = (tree_cpu_s(pid) - cpu0) * 1000 / half["sent"]
        half["peak_mb"] = peak[0]
        half["rate"] = half_rate
        fixed["half"] = half
        peak[0] = max(peak[0], peak_before)
    t0 = time.monotonic()
    fixed["saturated_rps"] = await saturate(base, make, args.saturate, args.concurrency)
    phases["saturated"] = (t0, time.monotonic())
    sampler.cancel()
    fixed["peak_mb"] = max(peak[0], memory_mb(pid))
    fixed["name"] = name
    fixed["phases"] = phases
    fixed["start_mb"] = start_mb
    await settle(pid)
    fixed["end_rss_mb"] = memory_mb(pid, "VmRSS")
    return fixed


async def settle(pid: int, most_s: float = 60.0) -> None:
    """Wait until the server is idle (under a tenth of a core for half a second): work queued
    after its ack is finished, so the next phase starts clean and CPU per request is whole."""
    end = time.monotonic() + most_s
    await asyncio.sleep(0.5)
    while time.monotonic() < end:
        cpu0 = tree_cpu_s(pid)
        await asyncio.sleep(0.5)
        if tree_cpu_s(pid) - cpu0 < 0.05:
            return


async def one_shot(base: str, req: tuple[str, bytes, dict[str, str]]) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s, \
            s.post(base + req[0], data=req[1], headers=req[2]) as r:
        await r.read()


def report(rows: list[dict[str, Any]], ours: dict[str, Any], baseline: dict[str, Any] | None,
           args: argparse.Namespace) -> None:
    print(f"\n{args.rate:.0f} req/s for {args.seconds:.0f} s (open loop), then {args.concurrency} "
          f"concurrent clients for {args.saturate:.0f} s; latency in ms, memory = peak RSS")
    print(f"{'server':56} {'p50':>6} {'p99':>7} {'errors':>6} {'rate':>6} {'cpu ms':>6} "
          f"{'max req/s':>9} {'peak MB':>8}")
    for r in rows:
        print(f"{r['name']:56} {r['p50']:6.1f} {r['p99']:7.1f} {r['errors']:6d} {r['rps']:6.0f} "
              f"{r['cpu_ms']:6.2f} {r['saturated_rps']:9.0f} {r['peak_mb']:8.1f}"
              + (f"  {r['kinds']}" if r["kinds"] else ""))
    print("(cpu ms: the server's CPU per request at the fixed rate, work after the ack included)")
    bare = [r for r in rows if r is not ours]
    if bare:
        print("\nratios (staffvoice / bare):")
    for r in bare:
        print(f"  vs {r['name']:52} throughput {ours['saturated_rps'] / r['saturated_rps']:.2f}  "
              f"p99 {ours['p99'] / r['p99']:.1f}x  cpu per request {ours['cpu_ms'] / r['cpu_ms']:.2f}x")
    half = ours.get("half")
    if half:
        print(f"\nstaffvoice at {half['rate']:.0f} req/s for {args.seconds:.0f} s (open loop"
              + (", half the baseline's saturated rate" if baseline else "") + "): "
              f"p50 {half['p50']:.1f} ms, p99 {half['p99']:.1f} ms, errors {half['errors']}"
              + (f" {half['kinds']}" if half["kinds"] else "")
              + f", achieved {half['rps']:.0f} req/s, cpu {half['cpu_ms']:.2f} ms, "
              f"peak RSS in the phase {half['peak_mb']:.1f} MB")
    print_seen(rows, ours, args)
    own = ours["p99"] < 100 and ours["errors"] == 0 and ours["peak_mb"] < 200
    print(f"\ntargets: p99 < 100 ms at {args.rate:.0f}/s, no errors, < 200 MB: "
          f"{'met' if own else 'NOT met'}")
    if baseline is not None:
        cpu = ours["cpu_ms"] / baseline["cpu_ms"]
        sat = ours["saturated_rps"] / baseline["saturated_rps"]
        print(f"issue 22, target 1 (vs {baseline['name']}):\n"
              f"  cpu per event ours/baseline {ours['cpu_ms']:.2f} / {baseline['cpu_ms']:.2f} ms"
              f" = {cpu:.2f}x (at most 1.25x: {'met' if cpu <= 1.25 else 'NOT met'})\n"
              f"  saturated ours/baseline {ours['saturated_rps']:.0f} / {baseline['saturated_rps']:.0f}"
              f" req/s = {sat:.2f} (at least 0.8: {'met' if sat >= 0.8 else 'NOT met'})")
    if half:
        ok = half["p99"] < 25 and half["errors"] == 0 and max(half["peak_mb"], ours["peak_mb"]) < 150
        print(f"issue 22, target 2: at {half['rate']:.0f} req/s p99 {half['p99']:.1f} ms (< 25), "
              f"errors {half['errors']} (0), peak {ours['peak_mb']:.1f} MB over the whole run "
              f"(< 150): {'met' if ok else 'NOT met'}")
    print("\nmemory of each server (MB): RSS / peak once started, RSS once the load has "
          "settled, peak over the run")
    for r in rows:
        print(f"  {r['name']:54} {r['start_mb']['rss']:6.1f} / {r['start_mb']['hwm']:6.1f}  "
              f"{r['end_rss_mb']:6.1f}  {r['peak_mb']:6.1f}")
    probed_rows = [r for r in rows if r.get("probe")]
    if probed_rows:
        import loop_probe

        print("\nthe event loop, seen from inside each server (--stalls, bench/loop_probe.py):")
        for r in probed_rows:
            print(f" {r['name']}")
            for phase, (t0, t1) in r["phases"].items():
                label = {"fixed": f"at {args.rate:.0f} req/s", "saturated": "saturated",
                         "half": f"at {r.get('half', {}).get('rate', 0):.0f} req/s (half the baseline's)"}
                loop_probe.report(label[phase], loop_probe.summarise(r["probe"], t0, t1))
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def print_seen(rows: list[dict[str, Any]], ours: dict[str, Any], args: argparse.Namespace) -> None:
    """Each kind's HTTP latency and the time until the person sees the result (until_seen)."""
    phases = [(f"{r['name']}, at {args.rate:.0f} req/s", r["seen"]) for r in rows if r.get("seen")]
    half = ours.get("half") or {}
    if half.get("seen"):
        phases.append((f"{ours['name']}, at {half['rate']:.0f} req/s", half["seen"]))
    if not phases:
        return
    print("\nuntil seen: the HTTP answer, or for a kind answered by a post the fakes' receipt of "
          "that post, whichever is later (ms after sending; p50 / p99), next to the HTTP latency:")
    for label, seen in phases:
        print(f"  {label}: until seen {seen['p50']:.1f} / {seen['p99']:.1f}"
              + (f" ({seen['missing']} posts not found" if seen["missing"] else " (")
              + f"{', ' if seen['missing'] else ''}{seen['unmatched']} posts not matched)")
        for k, v in seen["kinds"].items():
            print(f"    {KINDS[k]:22} n {v['n']:5d}  http {v['http_p50']:6.1f} / {v['http_p99']:6.1f}"
                  f"  seen {v['seen_p50']:6.1f} / {v['seen_p99']:6.1f}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


KINDS = ["Slack pulse tap", "Slack status", "Slack feedback form", "Teams pulse tap",
         "Teams status", "Teams feedback form"]  # the mix's kinds, in its order (Traffic.mix)


async def per_kind(base: str, traffic: Traffic, pid: int, n: int = 20,
                   only: list[int] | None = None, fakes_pid: int = 0) -> None:
    """Each request kind alone, one at a time: where the time goes before any queueing, and
    the server's CPU per request (background work included: it is read after a pause)."""
    kinds = KINDS
    print(f"\none request at a time, {n} of each kind (ms): p50 / max, server CPU per request",
          file=sys.stderr)
    for i in range(WARM_UP):  # every kind from every person first (no first contacts below)
        await one_shot(base, traffic.mix(WARM_FROM + i))
    await settle(pid)
    idle0 = tree_cpu_s(pid)
    await asyncio.sleep(2.0)
    idle = (tree_cpu_s(pid) - idle0) / 2.0  # CPU seconds per second with no requests (timers)
    for k, name in enumerate(kinds):
        if only and k not in only:
            continue
        await asyncio.sleep(0.5)
        cpu0, t0 = tree_cpu_s(pid), time.perf_counter()
        fcpu0 = cpu_s(fakes_pid) if fakes_pid else 0.0
        lat: list[float] = []
        errors: list[str] = []
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn, timeout=TIMEOUT) as session:
            for i in range(n):
                await one(session, base, traffic.mix(6 * i + k), lat, errors)
        await asyncio.sleep(0.5)  # Slack's work runs after the ack
        cpu = (tree_cpu_s(pid) - cpu0 - idle * (time.perf_counter() - t0)) * 1000 / n
        fcpu = (cpu_s(fakes_pid) - fcpu0) * 1000 / n if fakes_pid else float("nan")
        print(f"  {name:22} {pct(lat, 50):7.1f} / {max(lat):7.1f}  cpu {cpu:5.1f}  (fakes {fcpu:4.1f})"
              + (f"  errors {errors}" if errors else ""), file=sys.stderr)


def callgrind_ir(pid: int, out: str) -> int:
    """Instructions counted since the last call (callgrind dumps, then zeroes its counters)."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    parts = sorted(Path(out).parent.glob(Path(out).name + ".*"), key=lambda p: p.stat().st_mtime)
    for line in parts[-1].read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {parts[-1]}")


async def count_instructions(kind: str, env: dict[str, str], traffic: Traffic, n: int,
                             procs: list[subprocess.Popen[str]], per_kind: int = 0) -> dict[str, Any]:
    """Instructions per request of the mix under callgrind (one request at a time, then the
    work after each ack), less the same time idle: repeatable on a busy machine, unlike CPU
    seconds. Counting starts after start-up and a warm-up of every kind. With `per_kind`,
    then that many requests of each kind alone, counted apart."""
    out = str(Path(tempfile.mkdtemp()) / f"callgrind.{kind}")
    p, lines = spawn(kind, {**env, "LOAD_QUIET": "1",
                            "STAFFVOICE_FEEDBACK_FLUSH_INTERVAL": str(FLUSH_S)}, callgrind=out)
    procs.append(p)
    base = base_of(lines)
    if kind == "ours":
        await open_round(base, traffic, json.loads(lines[0])["db"])
    print(f"counting instructions of {kind} under callgrind ...", file=sys.stderr, flush=True)
    for i in range(WARM_UP):  # every kind from every person before counting
        await one_shot(base, traffic.mix(WARM_FROM + i))
    await settle(p.pid)
    await asyncio.sleep(FLUSH_S + 1)  # the warm-up's held writes (first contacts) flushed
    await settle(p.pid)
    subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
    callgrind_ir(p.pid, out)  # zero

    async def idle_rate() -> float:  # timers: the send ledger's poll, the scheduler
        t0 = time.monotonic()
        await asyncio.sleep(IDLE_S)
        return callgrind_ir(p.pid, out) / (time.monotonic() - t0)

    idle = await idle_rate()
    t0 = time.monotonic()
    for i in range(n):
        await one_shot(base, traffic.mix(i))
    await settle(p.pid)
    busy = callgrind_ir(p.pid, out)
    wall = time.monotonic() - t0
    kinds: dict[int, tuple[int, float]] = {}  # kind: (instructions, seconds) of each kind alone
    for k in range(6) if per_kind else ():
        t1 = time.monotonic()
        for i in range(per_kind):
            await one_shot(base, traffic.mix(6 * (n + i) + k))
        await settle(p.pid)
        kinds[k] = (callgrind_ir(p.pid, out), time.monotonic() - t1)
    idle = (idle + await idle_rate()) / 2  # before and after the requests
    p.terminate()
    return {"per_request": (busy - idle * wall) / n, "idle_per_s": idle, "wall_s": wall,
            "busy_per_request": busy / n,
            "kinds": {k: (ir - idle * s) / per_kind for k, (ir, s) in kinds.items()},
            "kinds_s": {k: s / per_kind for k, (_ir, s) in kinds.items()}}


BARE = {  # kind: (name, requests)
    "bare-pbr": "bare slack-bolt (ack only, process_before_response)",
    "bare": "bare slack-bolt (ack only, defaults)",
    "bare-agents": "bare Agents SDK echo bot",
    "bare-work-messages": "bare Bolt + SDK storing and answering, messages only",
    "bare-work": "bare Bolt + SDK storing and answering, same mix",
}


async def run(args: argparse.Namespace) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        receipts = str(Path(tempfile.mkdtemp()) / "receipts.jsonl")
        fp, lines = spawn("fakes", {"LOAD_RECEIPTS": receipts})
        procs.append(fp)
        fakes = json.loads(lines[-1])
        args.receipts, args.fakes = receipts, fakes
        env = {"LOAD_FAKES": json.dumps(fakes), "SLACK_API_URL": fakes["slack_url"]}
        stalls = str(Path(tempfile.mkdtemp()) / "stalls") if args.stalls else ""
        if stalls:
            env["LOAD_STALLS"] = stalls
        traffic = Traffic(fakes)
        if args.callgrind:
            each = args.per_kind_n if args.per_kind else 0
            counted = {kind: await count_instructions(kind, env, traffic, args.callgrind, procs, each)
                       for kind in ("bare-work", "ours")}
            print(f"\ninstructions per request of the mix ({args.callgrind} requests, one at a "
                  "time, work after the ack included, idle subtracted), under callgrind:")
            for kind, c in counted.items():
                print(f"  {kind:10} {c['per_request'] / 1e6:8.2f} M  (counted {c['busy_per_request'] / 1e6:.2f} M "
                      f"a request, less idle {c['idle_per_s'] / 1e6:.2f} M/s over {c['wall_s']:.0f} s)")
            print(f"  ours / bare-work: {counted['ours']['per_request'] / counted['bare-work']['per_request']:.2f}x")
            if each:
                print(f"each kind alone ({each} requests of each, one at a time), M instructions "
                      "per request: bare-work / ours = ratio")
                for k, name in enumerate(KINDS):
                    b, o = counted["bare-work"]["kinds"][k], counted["ours"]["kinds"][k]
                    # Seconds a request took under valgrind: work done per interval of time
                    # (Slack's readiness ping, the status card's 2 s, the flushers) weighs more
                    # per request the slower they go, e.g. on a busy machine (bench/README.md).
                    print(f"  {name:22} {b / 1e6:6.2f} / {o / 1e6:6.2f} = {o / b:.2f}x"
                          f"  ({counted['ours']['kinds_s'][k]:.2f} s a request)")
            return
        rows = []
        baseline = None
        # The baselines first: staffvoice's half-rate phase needs the same-mix one's saturation.
        kinds = [] if args.ours_only or args.per_kind else [k.strip() for k in args.bare.split(",") if k.strip()]
        for kind in kinds:
            if kind not in BARE:
                raise SystemExit(f"--bare: unknown {kind}; one of {', '.join(BARE)}")
            make: Any = traffic.mix
            if kind in ("bare-pbr", "bare"):
                make = lambda i: traffic.slack_message(PEOPLE[i % len(PEOPLE)], "status")  # noqa: E731
            elif kind == "bare-agents":
                make = lambda i: traffic.teams_message(PEOPLE[i % len(PEOPLE)], "status")  # noqa: E731
            elif kind == "bare-work-messages":
                make = lambda i: (traffic.slack_message if i % 2 else traffic.teams_message)(  # noqa: E731
                    PEOPLE[i % len(PEOPLE)], "status")
            p, lines = spawn(kind, env)
            procs.append(p)
            row = await measure(BARE[kind], base_of(lines), make, args, p.pid, kind=kind)
            p.terminate()
            if stalls and kind in ("bare-work", "bare-work-messages"):
                row["probe"] = f"{stalls}.{kind}.jsonl"
            rows.append(row)
            if kind == "bare-work":
                baseline = row
        op, lines = spawn("ours", env)
        procs.append(op)
        base = base_of(lines)
        await open_round(base, traffic, json.loads(lines[0])["db"])
        await per_kind(base, traffic, op.pid, args.per_kind_n if args.per_kind else 20,
                       [int(k) for k in args.kinds.split(",")] if args.kinds else None, fp.pid)
        if args.per_kind:
            return
        half_rate = args.half_rate or (baseline["saturated_rps"] / 2 if baseline else 0.0)
        spy = None
        if os.environ.get("LOAD_PYSPY"):  # collapsed stacks of ours over the fixed-rate phase
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                                    str(op.pid), "-r", "250", "-f", "raw", "-d",
                                    str(int(args.seconds) + 3), "-o", os.environ["LOAD_PYSPY"]],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = await measure("staffvoice serve (Slack + Teams mix)", base, traffic.mix, args,
                             op.pid, half_rate, kind="ours")
        rows.insert(0, ours)
        if stalls:
            ours["probe"] = f"{stalls}.ours.jsonl"
        if spy is not None:
            spy.wait(30)
        report(rows, ours, baseline, args)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", choices=["fakes", "ours", *BARE])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--saturate", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--per-kind", action="store_true",
                    help="only time each kind alone, then stop; with --callgrind, also count each "
                         "kind alone (--per-kind-n of each)")
    ap.add_argument("--per-kind-n", type=int, default=100, help="requests of each kind alone")
    ap.add_argument("--kinds", default="", help="with --per-kind: only these (0-5, comma-separated)")
    ap.add_argument("--ours-only", action="store_true", help="skip the bare frameworks")
    ap.add_argument("--bare", default=",".join(BARE),
                    help="the bare servers to measure (comma-separated; bare-work is the baseline)")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="only count instructions per request (N of the mix) of bare-work and ours "
                         "under valgrind's callgrind: repeatable on a busy machine")
    ap.add_argument("--stalls", action="store_true",
                    help="measure the event loop from inside ours and bare-work: heartbeat "
                         "lateness, callbacks over 5 ms (with a sampled stack) and collector "
                         "pauses, in each phase (bench/loop_probe.py)")
    ap.add_argument("--half-rate", type=float, default=0.0,
                    help="staffvoice's second open-loop rate (default: half of bare-work's saturation)")
    args = ap.parse_args()
    fakes = json.loads(os.environ.get("LOAD_FAKES", "{}"))
    if args.serve == "fakes":
        asyncio.run(serve_fakes())
    elif args.serve == "ours" and os.environ.get("LOAD_PROFILE"):
        import cProfile

        cProfile.runctx("asyncio.run(serve_ours(fakes))", globals(), {"fakes": fakes},
                        os.environ["LOAD_PROFILE"])
    elif args.serve == "ours":
        asyncio.run(serve_ours(fakes))
    elif args.serve in ("bare", "bare-pbr"):
        from slack_ack import serve_bare  # bench/slack_ack.py: Bolt acking only

        asyncio.run(serve_bare(args.serve == "bare-pbr"))
    elif args.serve == "bare-agents":
        asyncio.run(serve_bare_agents(fakes))
    elif args.serve in ("bare-work", "bare-work-messages"):
        asyncio.run(probed(serve_bare_work(fakes, mix=args.serve == "bare-work")))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
