"""A local Bot Connector service for Teams tests: a real aiohttp server on an ephemeral port.

It records what the bot sends (replies, proactive sends, updates, deletes, new chats), checks
every call's bearer token, answers paged rosters and member lookups, and can be told to
throttle (429 with Retry-After) or to refuse (403 for a user who blocked or never installed
the app) with the error bodies Teams uses. It also plays the Bot Framework's token issuer:
OpenID metadata and a JWKS with a locally generated RSA key, and signs inbound tokens.

Strict where the Bot Connector is strict (each rule cites where it comes from):
- message size: a send or update whose body is over MAX_ACTIVITY_BYTES, or over
  MAX_ACTIVITY_UTF16 counted in UTF-16 without base64 images, is refused 413;
- per-conversation throttling: more than 7 activity operations (posts, replies, edits and
  deletes) in 1 s (8 in 2 s, 60 in 30 s, 1,800 in an hour) in one conversation get 429 with
  Retry-After;
- a 1:1 chat is created only with the tenant and the bot named (400 BadSyntax otherwise);
- per app per tenant: more than 50 calls of any kind in 1 s from the app to one tenant get 429
  with Retry-After (TENANT_RPS);
- 412, 429, 502, 503 and 504 can be injected (`fail_next`, `throttle`), as Teams answers them;
- error answers a council meets (each cited where it is answered): 403 ConversationBlockedByUser
  and BotNotInConversationRoster for a user who blocked or uninstalled the app, 404
  ConversationNotFound for a chat the service no longer knows (`forget_conversation`; creating
  it again gives a new chat unless the user is `stuck`), 401 for
  every call once the bot's token is no longer accepted (`reject_tokens`), 403
  BotDisabledByAdmin once the tenant's admin blocked the app (`disabled_by_admin`);
- dialogs: `invoke_problem` checks what the bot answers a `task/fetch` or `task/submit` invoke.

The fake keeps its own clock (`advance`), so a test's backoff can move time without waiting;
with `manual_clock` it moves only then, so "in the same second" does not depend on how fast
the machine is.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
CONNECTOR_AUDIENCE = "https://api.botframework.com"
# "Format your bot messages" (learn.microsoft.com/microsoftteams/platform/bots/how-to/
# format-your-bot-messages): a message over the size limit gets 413 RequestEntityTooLarge with
# the code MessageSizeTooBig. The page has said 28 KB, 40 KB and 100 KB over the years; the
# lowest (28 KB, also the Power Automate / Graph figure for channel messages) is what a
# 28,360-byte broadcast card met in a real tenant (issue 17), so the fake refuses above it.
MAX_ACTIVITY_BYTES = 28_000
# The page's current wording counts differently: "The bot message size limit is 40 KB ... The
# bot message size limit includes the entire message payload encoded as UTF-16 and doesn't
# include Base64 encoded images" (learn.microsoft.com/en-gb/microsoftteams/platform/bots/how-to/
# format-your-bot-messages). Two bytes a character: a card of 21,000 plain letters is 42 KB
# though only 21 KB as sent. The fake holds a message to both rules (the strictest of each).
MAX_ACTIVITY_UTF16 = 40_000
_BASE64_IMAGE = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


def utf16_bytes(activity: Any) -> int:
    """An activity's size as the 40 KB rule counts it: its JSON in UTF-16, images given as
    base64 left out."""
    text = _BASE64_IMAGE.sub("", json.dumps(activity, ensure_ascii=False, separators=(",", ":")))
    return len(text.encode("utf-16-le"))
# "Optimize your bot with rate limiting in Teams" (learn.microsoft.com/microsoftteams/
# platform/bots/how-to/rate-limit), per bot per thread, "Send to conversation": 7 operations
# in 1 second, 8 in 2 seconds, 60 in 30 seconds, 1,800 in an hour. The same page: "All requests
# are subject to the same rate limiting policy", and its own example of a throttled call is
# UpdateActivityAsync: so a post, a reply, an edit (PUT) and a delete of an activity all count
# against one conversation's limits, and each can be refused.
THREAD_LIMITS = ((1.0, 7), (2.0, 8), (30.0, 60), (3600.0, 1800))
# The same page, "Per app per tenant" (global) limit: "The global limit per app per tenant is
# 50 Requests Per Second (RPS)" (confirmed by Microsoft on Q&A 848444, "About Teams rate
# limits": per Entra tenant, per app). "All requests are subject to the same rate limiting
# policy, including sending messages, channel enumerations, and roster fetches": so every
# call to /v3/ counts, a 1:1 chat's creation and a roster page as much as a send.
TENANT_RPS = 50


_KEY: list[rsa.RSAPrivateKey] = []


def signing_key() -> rsa.RSAPrivateKey:
    """One locally generated RSA key per test session (generating one takes a while)."""
    if not _KEY:
        _KEY.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEY[0]


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


@dataclass
class Posted:
    """One activity the bot posted, with every version it had."""

    id: str
    conversation_id: str
    versions: list[dict[str, Any]]
    reply_to: str | None = None
    deleted: bool = False

    @property
    def current(self) -> dict[str, Any]:
        return self.versions[-1]


@dataclass
class FakeUser:
    id: str
    name: str
    email: str
    aad_object_id: str
    blocked: bool = False
    installed: bool = False  # personal install


@dataclass
class FakeTeams:
    tenant_id: str = "tenant-northbridge"
    bot_id: str = "28:app-id"
    app_id: str = "app-id"
    users: dict[str, FakeUser] = field(default_factory=dict)
    team_members: dict[str, list[str]] = field(default_factory=dict)  # team id -> user ids
    bot_in_teams: set[str] = field(default_factory=set)
    posted: dict[str, Posted] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path) in order
    conversations: dict[str, str] = field(default_factory=dict)  # personal conv id -> user id
    throttle: list[str] = field(default_factory=list)  # Retry-After values for the next calls
    fail_next: list[int] = field(default_factory=list)  # statuses for the next calls
    require_auth: bool = True
    page_size_cap: int = 2  # small pages so paging is exercised
    refused: list[tuple[int, str]] = field(default_factory=list)  # (status, code) answered
    # (method, conversation) of each operation refused by the per-thread limits
    throttled_calls: list[tuple[str, str]] = field(default_factory=list)
    # Per-thread send limits (THREAD_LIMITS) on; bench/load.py turns them off, since it
    # measures the server, not Teams' pacing (its traffic is ~7 sends a second per person).
    thread_limits: bool = True
    # Calls per second per app per tenant (TENANT_RPS); None: no limit. Off with thread_limits
    # too (bench/load.py's switch turns all of Teams' pacing off).
    tenant_rps: int | None = TENANT_RPS
    # Calls refused by the per-tenant limit, as (method, path).
    tenant_throttled: list[tuple[str, str]] = field(default_factory=list)
    # The fake's clock moves only by `advance` (not with real time): deterministic tests.
    manual_clock: bool = False
    # Every call answered 401, whatever token it carries: the app registration was deleted or
    # its secret rotated (the Bot Connector's "Authorization has been denied for this
    # request", as for an unsigned call).
    reject_tokens: bool = False
    # Conversations the service no longer knows: sends there get 404 ConversationNotFound
    # (botbuilder-python #2102: "sending a message returns ConversationNotFound" for ~1% of
    # installed users; the bot must record it, not retry).
    forgotten: set[str] = field(default_factory=set)
    # Users whose chat, once forgotten, cannot be made again (see `personal_id`).
    stuck: set[str] = field(default_factory=set)
    # The tenant's admin blocked the app (Teams admin center): sends to existing conversations
    # get 403 BotDisabledByAdmin ("Status codes from bot conversational APIs" in
    # learn.microsoft.com/microsoftteams/platform/bots/how-to/conversations/conversation-messages;
    # msteams-docs #6335), while creating a chat still succeeds (msteams-docs #7954).
    disabled_by_admin: bool = False


class FakeConnector:
    """The fake service. `url` is its base; `service_url` is what activities carry."""

    def __init__(self, state: FakeTeams | None = None) -> None:
        self.state = state or FakeTeams()
        self.key = signing_key()
        self.kid = "fake-key-1"
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._ids = itertools.count(1000)
        self.offset = 0.0  # the fake's clock runs `offset` seconds ahead of the real one
        self._sends: dict[str, list[float]] = {}  # conversation -> times of recent operations
        self._tenant: dict[str, list[float]] = {}  # tenant -> times of its recent calls

    def now(self) -> float:
        return self.offset if self.state.manual_clock else time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on (what a backoff sleep would have waited)."""
        self.offset += max(0.0, seconds)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> FakeConnector:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        r.add_get("/v1/.well-known/keys", self._jwks)
        r.add_post("/v3/conversations", self._create)
        r.add_post("/v3/conversations/{cid}/activities", self._send)
        r.add_post("/v3/conversations/{cid}/activities/{aid}", self._reply)
        r.add_put("/v3/conversations/{cid}/activities/{aid}", self._update)
        r.add_delete("/v3/conversations/{cid}/activities/{aid}", self._delete)
        r.add_get("/v3/conversations/{cid}/members/{uid}", self._member)
        r.add_get("/v3/conversations/{cid}/pagedmembers", self._paged)
        r.add_get("/v3/conversations/{cid}/pagedMembers", self._paged)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def service_url(self) -> str:
        return self.url + "/"

    @property
    def metadata_url(self) -> str:
        return self.url + "/v1/.well-known/openidconfiguration"

    # -- tokens ---------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any] | None = None, *, key: Any = None,
             kid: str | None = None, alg: str = "RS256") -> str:
        """A token as the Bot Framework would send the bot (override any claim)."""
        now = int(time.time())
        body = {"iss": BOT_FRAMEWORK_ISSUER, "aud": self.state.app_id, "iat": now - 5,
                "nbf": now - 5, "exp": now + 3600, "serviceurl": self.service_url}
        body.update(claims or {})
        body = {k: v for k, v in body.items() if v is not None}
        if alg == "none":
            return jwt.encode(body, None, algorithm="none", headers={"kid": kid or self.kid})
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def outbound_token(self) -> str:
        """What the bot's token provider gets: a token for the connector, signed by 'Entra'."""
        now = int(time.time())
        return jwt.encode({"iss": "https://login.microsoftonline.com/fake/v2.0",
                           "aud": CONNECTOR_AUDIENCE, "appid": self.state.app_id,
                           "iat": now, "exp": now + 3600},
                          self.key, algorithm="RS256", headers={"kid": self.kid})

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": BOT_FRAMEWORK_ISSUER,
                                  "jwks_uri": self.url + "/v1/.well-known/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def _jwks(self, request: web.Request) -> web.Response:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "endorsements": ["msteams"]})
        return web.json_response({"keys": [jwk]})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v3/"):
            return await handler(request)
        self.state.calls.append((request.method, request.path))
        if self.state.reject_tokens:
            return self._refuse(web.json_response(
                {"message": "Authorization has been denied for this request."}, status=401))
        if self.state.require_auth:
            header = request.headers.get("Authorization", "")
            try:
                scheme, _, token = header.partition(" ")
                assert scheme == "Bearer"
                jwt.decode(token, self.key.public_key(), algorithms=["RS256"],
                           audience=CONNECTOR_AUDIENCE)
            except (AssertionError, jwt.PyJWTError):
                return web.json_response(
                    {"message": "Authorization has been denied for this request."}, status=401)
        refused = self._tenant_throttled(request)
        if refused is not None:
            self.state.tenant_throttled.append((request.method, request.path))
            return self._refuse(refused)
        if self.state.throttle:
            return self._refuse(_error(429, "TooManyRequests", "Too many requests.",
                                       **{"Retry-After": self.state.throttle.pop(0)}))
        if self.state.fail_next:
            # The rate-limit page: "in addition to error code 429, error codes 412, 502 and
            # 504 must also be retried" (412 PreconditionFailed is Teams' own throttling).
            status = self.state.fail_next.pop(0)
            # 503: the service's own passing failure (retried like 502 by the Bot Framework
            # SDKs' retry policies; Teams answers it during incidents).
            code = {412: "PreconditionFailed", 502: "BadGateway", 503: "ServiceUnavailable",
                    504: "GatewayTimeout"}
            return self._refuse(_error(status, code.get(status, "ServiceError"), "Upstream failure."))
        if request.method in ("POST", "PUT") and "/activities" in request.path:
            body = await request.read()
            try:
                utf16 = utf16_bytes(json.loads(body))
            except ValueError:
                utf16 = 0
            if len(body) > MAX_ACTIVITY_BYTES or utf16 > MAX_ACTIVITY_UTF16:
                # MessageSizeTooBig (see MAX_ACTIVITY_BYTES and MAX_ACTIVITY_UTF16): bytes of
                # the whole activity as sent, and the same in UTF-16 without base64 images.
                return self._refuse(_error(413, "MessageSizeTooBig",
                                           "Activity payload exceeds the message size limit."))
        if request.method in ("POST", "PUT", "DELETE") and "/activities" in request.path:
            cid = request.match_info.get("cid", request.path)
            refused = self._throttled(cid)
            if refused is not None:
                self.state.throttled_calls.append((request.method, cid))
                return self._refuse(refused)
        return await handler(request)

    def _refuse(self, response: web.Response) -> web.Response:
        code = ""
        try:
            code = json.loads(response.text or "{}").get("error", {}).get("code", "")
        except ValueError:
            pass
        self.state.refused.append((response.status, code))
        return response

    def _tenant_throttled(self, request: web.Request) -> web.Response | None:
        """The per-app-per-tenant limit (TENANT_RPS); a refused call does not count. The fake
        serves one tenant (its conversations all belong to `tenant_id`)."""
        st = self.state
        if st.tenant_rps is None or not st.thread_limits:
            return None
        now = self.now()
        recent = [t for t in self._tenant.get(st.tenant_id, []) if now - t < 1.0]
        if len(recent) >= st.tenant_rps:
            self._tenant[st.tenant_id] = recent
            wait = 1.0 - (now - recent[-st.tenant_rps])
            return _error(429, "TooManyRequests", "Too many requests from this app to this tenant.",
                          **{"Retry-After": str(max(1, round(wait + 0.5)))})
        recent.append(now)
        self._tenant[st.tenant_id] = recent
        return None

    def _throttled(self, cid: str) -> web.Response | None:
        """Per-thread limits on activity operations (THREAD_LIMITS); a refused one does not
        count."""
        if not self.state.thread_limits:
            return None
        conv = cid.split(";")[0]
        now = self.now()
        times = [t for t in self._sends.get(conv, []) if now - t < THREAD_LIMITS[-1][0]]
        for window, limit in THREAD_LIMITS:
            recent = [t for t in times if now - t < window]
            if len(recent) >= limit:
                wait = window - (now - recent[-limit])
                self._sends[conv] = times
                return _error(429, "TooManyRequests", "Too many requests to this conversation.",
                              **{"Retry-After": str(max(1, round(wait + 0.5)))})
        times.append(now)
        self._sends[conv] = times
        return None

    # -- conversations --------------------------------------------------------------------

    def add_user(self, email: str, name: str = "") -> FakeUser:
        n = len(self.state.users) + 1
        u = FakeUser(f"29:user-{n}", name or email.split("@")[0], email.lower(), f"aad-{n:04d}")
        self.state.users[u.id] = u
        return u

    def user_by_email(self, email: str) -> FakeUser:
        for u in self.state.users.values():
            if u.email == email.lower():
                return u
        raise KeyError(email)

    def personal_id(self, user_id: str) -> str:
        """The user's 1:1 chat with the bot now. One the service forgot is replaced by a new
        id when the chat is created again ("create the conversation if it doesn't already
        exist, or you don't know the conversationId": "Send proactive messages", learn.
        microsoft.com/microsoftteams/platform/bots/how-to/conversations/send-proactive-
        messages; msteams-docs #9425), unless the user is `stuck`: then every new chat is
        the forgotten one again (botbuilder-js #4479, "Always ConversationNotFound 404,
        even after welcome proactive message")."""
        base = cid = f"a:personal-{user_id.split('-')[-1]}"
        again = 1
        while cid in self.state.forgotten and user_id not in self.state.stuck:
            again += 1
            cid = f"{base}.{again}"
        self.state.conversations[cid] = user_id
        return cid

    def reachable(self, user: FakeUser) -> bool:
        in_team = any(user.id in self.state.team_members.get(t, []) for t in self.state.bot_in_teams)
        return user.installed or in_team

    def _account(self, u: FakeUser) -> dict[str, Any]:
        return {"id": u.id, "name": u.name, "aadObjectId": u.aad_object_id, "email": u.email,
                "userPrincipalName": u.email, "givenName": u.name, "tenantId": self.state.tenant_id,
                "userRole": "user"}

    def forget_conversation(self, cid: str) -> None:
        """The service no longer knows this chat: sends get 404 ConversationNotFound."""
        self.state.forgotten.add(cid.split(";")[0])

    def _blocked(self, cid: str) -> web.Response | None:
        if self.state.disabled_by_admin:
            return _error(403, "BotDisabledByAdmin", "The tenant admin disabled this bot")
        if cid.split(";")[0] in self.state.forgotten:
            return _error(404, "ConversationNotFound", "Conversation not found.")
        uid = self.state.conversations.get(cid.split(";")[0])
        user = self.state.users.get(uid or "")
        # A user who blocked or uninstalled the bot: 403 (learn.microsoft.com/en-us/answers/
        # questions/755203 "status code 403 returns if the bot is blocked by user"; .../1513369
        # "If the bot is blocked or uninstalled, Teams returns a 403", with these bodies
        # rather than the documented subCode MessageWritesBlocked).
        if user is not None and user.blocked:
            return _error(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")
        if user is not None and not self.reachable(user):
            return _error(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        members = body.get("members") or []
        # Teams needs the tenant to create a chat: `channelData.tenant.id` (or `tenantId`), as
        # "Send proactive messages" (learn.microsoft.com/microsoftteams/platform/bots/how-to/
        # conversations/send-proactive-messages, "Create the conversation") shows; without it
        # the service answers 400 BadSyntax "Could not parse tenant id" (botbuilder-dotnet
        # #1203, #2309). The app can only reach users of the tenant it is installed in.
        tenant = ((body.get("channelData") or {}).get("tenant") or {}).get("id") or body.get("tenantId")
        if not tenant:
            return _error(400, "BadSyntax", "Could not parse tenant id")
        if tenant != self.state.tenant_id:
            return _error(403, "Forbidden", "The bot is not installed in this tenant.")
        if not (body.get("bot") or {}).get("id"):
            return _error(400, "BadArgument", "Bot is required.")
        if len(members) != 1 or body.get("isGroup"):
            return _error(400, "BadArgument", "Only 1:1 conversations are supported here.")
        user = self.state.users.get(members[0].get("id"))
        if user is None:
            return _error(404, "NotFound", "The user was not found.")
        if user.blocked:
            return _error(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")
        if not self.reachable(user):
            return _error(403, "Forbidden", "Bot is not installed in user's personal scope")
        return web.json_response({"id": self.personal_id(user.id)}, status=201)

    def _record(self, cid: str, activity: dict[str, Any], reply_to: str | None) -> str:
        aid = f"1{next(self._ids)}"
        self.state.posted[aid] = Posted(aid, cid, [activity], reply_to)
        return aid

    async def _send(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        refused = self._blocked(cid)
        if refused is not None:
            return refused
        body = await request.json()
        if body.get("type") != "message":
            return _error(400, "BadSyntax", "Unknown activity type.")
        return web.json_response({"id": self._record(cid, body, None)}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        refused = self._blocked(cid)
        if refused is not None:
            return refused
        body = await request.json()
        aid = self._record(cid, body, request.match_info["aid"])
        return web.json_response({"id": aid}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        p = self.state.posted.get(request.match_info["aid"])
        if p is None or p.deleted:
            return _error(404, "ActivityNotFoundInConversation", "Unknown activity.")
        p.versions.append(await request.json())
        return web.json_response({"id": p.id})

    async def _delete(self, request: web.Request) -> web.Response:
        p = self.state.posted.get(request.match_info["aid"])
        if p is None:
            return _error(404, "ActivityNotFoundInConversation", "Unknown activity.")
        p.deleted = True
        return web.Response(status=200)

    async def _member(self, request: web.Request) -> web.Response:
        u = self.state.users.get(request.match_info["uid"])
        if u is None:
            return _error(404, "MemberNotFoundInConversation", "Member not found.")
        return web.json_response(self._account(u))

    async def _paged(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        ids = self.state.team_members.get(cid)
        if ids is None:
            return _error(404, "ConversationNotFound", "Conversation not found.")
        size = min(int(request.query.get("pageSize") or 100), self.state.page_size_cap)
        start = int(request.query.get("continuationToken") or 0)
        page = ids[start : start + size]
        body: dict[str, Any] = {"members": [self._account(self.state.users[i]) for i in page]}
        if start + size < len(ids):
            body["continuationToken"] = str(start + size)
        return web.json_response(body)

    # -- reading back ---------------------------------------------------------------------

    def in_conversation(self, cid: str, *, threads: bool = True) -> list[Posted]:
        """What the bot posted in a conversation (and its threads), oldest first, not deleted."""
        return [
            p for p in self.state.posted.values()
            if not p.deleted and (p.conversation_id == cid
                                  or (threads and p.conversation_id.split(";")[0] == cid))
        ]


class FakeTokens:
    """The bot's outbound token provider in tests: tokens the fake connector accepts."""

    def __init__(self, connector: FakeConnector) -> None:
        self.connector = connector
        self.requests = 0

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        self.requests += 1
        return self.connector.outbound_token()


# "Use dialogs with bots" (learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/
# task-modules/task-modules-bots): a button whose Action.Submit data holds
# {"msteams": {"type": "task/fetch"}} makes Teams send the bot an invoke named task/fetch; the
# bot must answer HTTP 200 with {"task": {"type": "continue", "value": TaskInfo}} (TaskInfo:
# title, and card: an attachment holding an Adaptive Card). A task/submit may also be
# answered with {"task": {"type": "message", "value": text}} (the page's "MessageTask":
# Teams shows the text in the dialog) or an empty body, which closes the dialog. The same
# message in answer to a task/fetch is not documented, and clients show an empty dialog
# (MicrosoftDocs/msteams-docs#6740; #1732, a messaging extension's fetchTask). Anything
# else shows "Unable to reach app" (or nothing) in the client.
TASK_FETCH, TASK_SUBMIT = "task/fetch", "task/submit"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def invoke_problem(name: str, status: int, body: Any) -> str | None:
    """Why Teams would not show the bot's answer to a dialog invoke (None: it would)."""
    if status != 200:
        return f"{name} answered HTTP {status}: Teams shows 'Unable to reach app'"
    if name == TASK_SUBMIT and not body:
        return None
    task = body.get("task") if isinstance(body, dict) else None
    if not isinstance(task, dict):
        return f"{name} answer has no task object"
    if task.get("type") == "message":
        if name == TASK_FETCH:
            return "task/fetch answered with a task message: Teams shows an empty dialog"
        return None if isinstance(task.get("value"), str) else "task message without text"
    if task.get("type") != "continue":
        return f"task type {task.get('type')!r} is neither continue nor message"
    info = task.get("value")
    if not isinstance(info, dict) or not isinstance(info.get("title"), str):
        return "continue without a TaskInfo title"
    card = info.get("card")
    if not (isinstance(card, dict) and card.get("contentType") == ADAPTIVE
            and isinstance(card.get("content"), dict)
            and card["content"].get("type") == "AdaptiveCard"):
        return "continue without an Adaptive Card attachment"
    return None
