"""A local fake of Slack's Web API: a real aiohttp server on an ephemeral port.

It checks the bearer token, answers the methods the adapter uses with Slack's real shapes
(`{"ok": false, "error": "channel_not_found"}` and friends), records every call, keeps the
messages, modals and home tabs a user would see, and enforces a configurable rate limit with
HTTP 429 and Retry-After.

It is strict: it refuses what Slack refuses, each rule next to the page or known issue it
comes from (docs: https://docs.slack.dev/reference/methods/...):
- per-method rate tiers per workspace, chat.postMessage per channel, 429 with Retry-After;
- single-use triggers that expire after 3 s; a trigger from a view_submission opens nothing
  the person can see (a follow-up screen belongs in the ack: see the driver);
- a file uploaded without a channel is private and cannot be shown in an image block;
- the bot must be a member of a channel to post there (`not_in_channel`);
- text and block limits of messages, buttons, select menus and views, and the text of a
  message's blocks together (`msg_blocks_too_long`, see MAX_BLOCKS_TEXT);
- input blocks and their elements (label, hint, placeholder, a plain_text_input's max_length
  and min_length, checkboxes), a modal's submit button when it has inputs, views.update's hash;
- error answers real councils meet (ERRORS below cites each): a revoked or uninstalled app's
  token (`revoke`: token_revoked, account_inactive, invalid_auth on every call), a channel or
  DM that refuses posts (`refuse_posts`: is_archived, channel_not_found, restricted_action), a
  deactivated user (conversations.open: user_disabled; a DM already open still takes posts),
  a bot user (cannot_dm_bot), and any code queued for the next call of a method (`failures`);
- a refused payload is answered as Slack answers it: `invalid_blocks` (messages) or
  `invalid_arguments` (views) with "[ERROR] why [json-pointer:/where]" in
  `response_metadata.messages`.
The 3 s ack and `response_action` live in the driver (tests/conformance/drivers/slack.py),
which plays Slack's side of the events and interactivity requests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from adapters.slack.config import BOT_SCOPES

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-1-fake-app-token"
TEAM = "T0FAKE001"
BOT_USER = "U0BOTUSER"
BOT_ID = "B0BOT0001"

# Rate tiers, calls per minute per workspace per method ("Tier 2: 20+ per minute", "Tier 3: 50+",
# "Tier 4: 100+"), from https://docs.slack.dev/apis/web-api/rate-limits and each method's page.
TIER_1, TIER_2, TIER_3, TIER_4 = 1, 20, 50, 100
TIERS: dict[str, int] = {
    "conversations.open": TIER_3,
    "conversations.history": TIER_3,  # internal apps; 1/min for non-Marketplace distributed apps
    "conversations.members": TIER_4,
    "conversations.info": TIER_3,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "users.info": TIER_4,
    "users.lookupByEmail": TIER_3,
    "usergroups.users.list": TIER_2,
    "views.open": TIER_4,
    "views.update": TIER_4,
    "views.push": TIER_4,
    "views.publish": TIER_4,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "chat.postEphemeral": TIER_4,  # https://docs.slack.dev/reference/methods/chat.postEphemeral
}
# chat.postMessage is "Special": "1 message per second per channel, short bursts allowed" plus
# a workspace cap of "several hundred messages per minute"
# (https://docs.slack.dev/reference/methods/chat.postMessage, Rate limiting).
POST_PER_CHANNEL_BURST = 10
POST_WORKSPACE_PER_MINUTE = 300
# Message and block limits: chat.postMessage ("text ... truncated ... 40,000 characters";
# "up to 50 blocks"), section text 3000, button value 2000, action_id 255
# (https://docs.slack.dev/reference/block-kit/blocks/section-block, .../block-elements/button-element).
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_BUTTON_VALUE = 2000
MAX_PRIVATE_METADATA = 3000
# More Block Kit rules (https://docs.slack.dev/reference/block-kit/blocks/...): a block_id is at
# most 255 characters and unique within a message or view ("Blocks": block_id); a header's text
# 150; a section's `fields` at most 10, each 2000; an actions block at most 25 elements; a
# context block at most 10; an action_id 255; a button's text 75.
MAX_BLOCK_ID = 255
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_ACTION_ID = 255
MAX_BUTTON_TEXT = 75
# Select menus (.../block-elements/select-menu-element#static_select, .../composition-objects/
# option-object, .../option-group-object): at most 100 `options`, or at most 100
# `option_groups` of at most 100 options each; an option's text 75 characters, its value 150.
MAX_OPTIONS = 100
MAX_OPTION_GROUPS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
# A message's blocks together: Slack answers `msg_blocks_too_long` (chat.postMessage and
# chat.update, "Errors") when their text adds up past a limit its reference does not state.
# The markdown block's page gives "a cumulative limit of 12,000 characters" per payload; a Slack
# engineer answered bolt-js #2509 ("Blocks too long error at ~13200 characters") that messages
# allow 12,000 text characters with a buffer for block containers, and bolt-js #2867 reports a
# refusal at 11,341 characters of text. The fake refuses past 11,000 characters of text (every
# `text` string in the blocks, counted as sent, after escaping).
MAX_BLOCKS_TEXT = 11_000
# Input blocks and input elements (.../blocks/input-block, .../block-elements/
# plain-text-input-element, .../select-menu-element, .../checkboxes-element): an input block's
# label and hint at most 2000 characters; a plain_text_input's max_length between 1 and 3000 and
# min_length between 0 and 3000; any element's placeholder 150; checkboxes at most 10 options.
# A view's callback_id 255 (.../views/modal-views); views.open answers `view_too_large` past
# 250 kB (views.open, Errors).
MAX_INPUT_LABEL = 2000
MAX_INPUT_LENGTH = 3000
MAX_PLACEHOLDER = 150
MAX_CHECKBOXES = 10
MAX_CALLBACK_ID = 255
MAX_VIEW_BYTES = 250_000
# An image block's image_url 3000 and alt_text 2000 (.../blocks/image-block); a button's url
# 3000 (.../block-elements/button-element).
MAX_URL = 3000
MAX_ALT_TEXT = 2000
# The bot token scopes each method needs (each method's page, "Required scopes"): a token
# without it is answered `missing_scope` with `needed` and `provided`. Where the scope depends
# on the kind of conversation, C… is a public channel, G… a private one, D… a DM.
def _by_kind(public: str, private: str, dm: str) -> Any:
    return lambda args: {"C": public, "G": private, "D": dm}.get(str(args.get("channel", ""))[:1], public)


SCOPES: dict[str, Any] = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.open": "im:write",
    "conversations.info": _by_kind("channels:read", "groups:read", "im:read"),
    "conversations.members": _by_kind("channels:read", "groups:read", "im:read"),
    "conversations.history": _by_kind("channels:history", "groups:history", "im:history"),
    "users.info": "users:read",
    "users.list": "users:read",
    "users.lookupByEmail": "users:read.email",
    "usergroups.users.list": "usergroups:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}
# "trigger_id ... expires in three seconds" and is single-use
# (https://docs.slack.dev/interactivity/handling-user-interaction#modal_responses).
TRIGGER_TTL_S = 3.0
# A response_url (slash commands, shortcuts with a conversation, buttons in messages) takes "up
# to 5 times within 30 minutes" (https://docs.slack.dev/interactivity/implementing-slash-commands,
# "Sending delayed responses"; the same rule for interactions: .../handling-user-interaction,
# "Message responses"). What it answers past either is not on those pages: the fake answers
# HTTP 404 with `used_url` or `expired_url` as the body, as python-slack-sdk's WebhookClient
# reports it (status and body, no `ok`).
RESPONSE_URL_POSTS = 5
RESPONSE_URL_TTL_S = 30 * 60


# Where a payload breaks a rule (a json-pointer) and why.
Problem = tuple[str, str]


def refusal(error: str, problem: Problem) -> dict[str, Any]:
    """Slack's answer to a payload that breaks a Block Kit rule: the error code and, in
    `response_metadata.messages`, "[ERROR] why [json-pointer:/where]" (as real answers quoted
    in rtCamp/frappe-slack-connector #54 and yonicd/slackreprex #3 show)."""
    return {"ok": False, "error": error,
            "response_metadata": {"messages": [f"[ERROR] {problem[1]} [json-pointer:{problem[0]}]"]}}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    deleted: bool = False
    metadata: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)  # a file message: the shared files' ids


@dataclass
class Ephemeral:
    """A message only `user` sees, in `channel` (chat.postEphemeral, or a response_url post with
    `response_type: ephemeral`). Slack keeps none: "ephemeral messages do not persist across
    reloads, desktop and mobile apps, or sessions. Once the session is closed, ephemeral
    messages will disappear and cannot be recovered" (docs.slack.dev/reference/methods/
    chat.postEphemeral, Usage info), so conversations.history, and an export, never hold one."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    via: str  # "chat.postEphemeral" or "response_url"


@dataclass
class ResponseUrl:
    """A response_url handed out in one payload: where it posts, for whom, and how often."""

    channel: str
    user: str
    expires: float
    posts: int = 0


@dataclass
class OpenView:
    id: str
    hash: str
    user: str
    view: dict[str, Any]


@dataclass
class User:
    id: str
    email: str
    tz: str = "Europe/London"
    name: str = ""
    deleted: bool = False
    is_bot: bool = False
    guest: bool = False  # a single-channel guest (users.info: is_restricted, is_ultra_restricted)


# Where each error answer of this fake comes from (docs.slack.dev/reference/methods/<method>,
# "Errors", unless said otherwise):
# - token_revoked, account_inactive ("Authentication token is for a deleted user or workspace
#   when using a bot token"), invalid_auth, not_authed: every method's common errors; Slack
#   answers them with HTTP 200 and ok=false, for every call of that token.
# - is_archived ("Channel has been archived"), channel_not_found, not_in_channel,
#   restricted_action, msg_too_long: chat.postMessage.
# - user_disabled, user_not_found, user_not_visible: conversations.open; cannot_dm_bot: the
#   error Slack gives for a DM opened with a bot user.
# - A deactivated user's DM that is already open still takes posts: chat.postMessage answers ok
#   (python-slack-sdk #1156, "chat_postMessage succeeds to deleted user"; Slack's answer there:
#   the channel history still exists, check `deleted` in users.info).
# - message_not_found, cant_update_message: chat.update; expired_trigger_id: views.open (3 s).
# - user_not_in_channel, user_not_found: chat.postEphemeral.
ERRORS_CITED = frozenset({
    "token_revoked", "account_inactive", "invalid_auth", "not_authed", "is_archived",
    "channel_not_found", "not_in_channel", "restricted_action", "msg_too_long",
    "user_disabled", "user_not_found", "user_not_visible", "cannot_dm_bot",
    "message_not_found", "cant_update_message", "expired_trigger_id", "ratelimited",
    "internal_error", "fatal_error", "service_unavailable", "invalid_blocks",
})


@dataclass
class FakeSlack:
    """The fake. `start()` returns the base URL to give the client (`.../api/`)."""

    tokens: set[str] = field(default_factory=lambda: {BOT_TOKEN})
    team: str = TEAM
    # The Enterprise Grid org the workspace belongs to, if any. A workspace-level install in
    # an org still carries it: oauth.v2.access answers `enterprise: {id, name}` with
    # `is_enterprise_install: false` (only an org-wide install has `team: null`; .../enterprise/
    # apps/reference; bolt-js #1487), and events carry `enterprise_id` and `authorizations`.
    enterprise: str | None = None
    # Per-method rate limit: at most `limit` calls in `window` seconds, else 429 + Retry-After.
    limits: dict[str, int] = field(default_factory=dict)
    window: float = 1.0
    retry_after: int = 1
    calls: list[Call] = field(default_factory=list)
    messages: list[Posted] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    dms: dict[str, str] = field(default_factory=dict)  # user id -> D channel
    views: dict[str, OpenView] = field(default_factory=dict)  # open modals by view id
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_hashes: dict[str, str] = field(default_factory=dict)  # user id -> its Home's hash
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # method -> list of error codes to answer next (one per call), for failure tests.
    failures: dict[str, list[str]] = field(default_factory=dict)
    # Tokens Slack now refuses, with the error it gives (see `revoke`).
    revoked: dict[str, str] = field(default_factory=dict)
    # (method, calls left, error): the token is revoked once that many more calls of the
    # method were answered (see `revoke_after`).
    revoke_later: tuple[str, int, str] | None = None
    # channel -> the error chat.postMessage answers there, every time (see `refuse_posts`).
    post_refusals: dict[str, str] = field(default_factory=dict)
    # method -> number of upcoming calls answered 429 regardless of the limit.
    throttle: dict[str, int] = field(default_factory=dict)
    # method -> calls still answered normally before `throttle` starts counting (a message
    # whose first part is posted and whose next part meets the 429s).
    throttle_after: dict[str, int] = field(default_factory=dict)
    oauth_codes: dict[str, str] = field(default_factory=dict)  # code -> team id
    client_id: str = "1111.2222"
    client_secret: str = "fake-client-secret"
    # Audiences: user group id -> user ids; channel id -> member ids (pages of at most
    # `member_page_cap`, so cursor paging is exercised).
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    channel_members: dict[str, list[str]] = field(default_factory=dict)
    member_page_cap: int = 2
    # Whether the app may read channel history (channels:history, not in our manifest); DM
    # history (im:history) is always granted.
    history_scope: bool = False
    # The bot token's scopes: the app manifest's (adapters.slack.config.BOT_SCOPES, which a test
    # holds equal to manifest/slack/manifest.yaml), so a method the manifest does not cover
    # fails here as it would after a real install.
    scopes: set[str] = field(default_factory=lambda: set(BOT_SCOPES))
    # Channels that exist but the bot was not invited to (`not_in_channel`); `channels` are those
    # it is a member of.
    outside: set[str] = field(default_factory=set)
    # Rate tiers on (per minute, see TIERS); a test that needs them off passes tiers=False.
    tiers: bool = True
    post_burst: int = POST_PER_CHANNEL_BURST
    # Calls answered 429 (by method), to show that senders wait instead of retrying blindly.
    refused: dict[str, int] = field(default_factory=dict)
    # views.open calls with a view_submission's trigger: Slack answers ok, nothing shows.
    hidden_views: list[dict[str, Any]] = field(default_factory=list)
    # How long a new trigger_id lives (views.open: "expired_trigger_id" after 3 s); a test of a
    # core slower than that sets it to 0.
    trigger_ttl: float = TRIGGER_TTL_S
    # What each person saw for a moment and Slack did not keep (see Ephemeral), in order.
    ephemeral: list[Ephemeral] = field(default_factory=list)
    # Posts to response_urls that carried no `response_type: ephemeral` (in the conversation,
    # kept like any message: they also land in `messages`).
    response_urls: dict[str, ResponseUrl] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self._recent: dict[str, deque[float]] = {}
        self._triggers: dict[str, tuple[str, float, str]] = {}
        self._tiered: dict[tuple[str, str], deque[float]] = {}
        self._post_buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._socket_ws: web.WebSocketResponse | None = None
        self._socket_ready: asyncio.Event = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket_stalled: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{key}", self._respond)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"
        return self.url

    async def close(self) -> None:
        if self._socket_stalled is not None:
            self._socket_stalled.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def stall_socket(self) -> None:
        """The Socket Mode connection's far end stops answering: the app's Close frame is
        never answered (a network path that died under an open WebSocket), until `close`."""
        self._socket_stalled = asyncio.Event()

    # -- test helpers ----------------------------------------------------------------

    def add_user(self, email: str, *, tz: str = "Europe/London", name: str = "") -> User:
        uid = f"U{next(self._ids):07d}"
        user = User(uid, email.lower(), tz, name or email.split("@")[0])
        self.users[uid] = user
        return user

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email == email.lower()), None)

    def dm_of(self, user_id: str) -> str:
        return self.dms.setdefault(user_id, "D" + user_id[1:])

    def add_channel(self, channel_id: str, *, member: bool = True) -> None:
        """A channel of the workspace; `member=False`: the bot was not invited to it."""
        if member:
            self.channels.add(channel_id)
            self.outside.discard(channel_id)
        else:
            self.outside.add(channel_id)

    def revoke(self, error: str = "token_revoked", token: str = BOT_TOKEN) -> None:
        """The app was uninstalled or its token revoked (token_revoked), the workspace was
        deleted (account_inactive), or the token never existed (invalid_auth): every call with
        `token` is refused so, until `restore`."""
        assert error in ERRORS_CITED, error
        self.revoked[token] = error

    def revoke_after(self, method: str, calls: int, error: str = "token_revoked") -> None:
        """An admin uninstalls the app part-way through a batch: the bot token is revoked
        (as `revoke`) once `calls` more calls of `method` were answered."""
        assert error in ERRORS_CITED, error
        self.revoke_later = (method, calls, error)

    def restore(self, token: str = BOT_TOKEN) -> None:
        """The app was reinstalled: `token` works again."""
        self.revoked.pop(token, None)

    def refuse_posts(self, channel: str, error: str = "is_archived") -> None:
        """chat.postMessage in `channel` answers `error` from now on (an archived channel,
        one deleted, one where posting is restricted)."""
        assert error in ERRORS_CITED, error
        self.post_refusals[channel] = error

    def deactivate(self, user_id: str) -> None:
        """An admin deactivated the account: users.info says deleted, conversations.open
        answers user_disabled, and an open DM still takes posts (python-slack-sdk #1156)."""
        self.users[user_id].deleted = True

    def reactivate(self, user_id: str) -> None:
        """An admin reactivated the account."""
        self.users[user_id].deleted = False

    def user_change_event(self, user_id: str) -> dict[str, Any]:
        """The `user_change` event Slack sends to every app with users:read when a member's data
        changes, deactivation included (`deleted: true`), in the shape of
        https://docs.slack.dev/reference/events/user_change: the whole user object, and
        `cache_ts`, `event_ts`. A deactivated member's DM still takes posts (python-slack-sdk
        #1156): this event is how an app learns it. The driver signs and posts it."""
        u = self.users[user_id]
        now = time.time()
        return {"type": "user_change", "user": {**self._user_json(u), "color": "4bbe2e",
                                                 "real_name": u.name, "is_admin": False},
                "cache_ts": int(now), "event_ts": f"{now:.6f}"}

    def new_trigger(self, user_id: str, source: str = "block_actions") -> str:
        """A trigger_id as Slack puts in interactive payloads; valid for 3 seconds, once."""
        tid = f"{next(self._ids)}.{user_id}.{int(time.time())}"
        self._triggers[tid] = (user_id, time.monotonic() + self.trigger_ttl, source)
        return tid

    def new_response_url(self, user_id: str, channel: str) -> str:
        """A response_url as Slack puts in a slash command, a message shortcut or a tap on a
        message's button: it posts into `channel`, for `user_id`, 5 times within 30 minutes."""
        key = f"{next(self._ids)}x{user_id}"
        self.response_urls[key] = ResponseUrl(channel, user_id, time.monotonic() + RESPONSE_URL_TTL_S)
        return f"{self.url.removesuffix('/api/')}/respond/{key}"

    def expire_response_urls(self) -> None:
        """Thirty minutes have passed for every response_url handed out so far."""
        for r in self.response_urls.values():
            r.expires = time.monotonic() - 1

    def ephemeral_for(self, user_id: str) -> list[Ephemeral]:
        """What `user_id` was shown ephemerally, in order (while their session lasts)."""
        return [e for e in self.ephemeral if e.user == user_id]

    def file_messages(self, channel: str) -> list[dict[str, Any]]:
        """Files shared into `channel` (a file message each), in order."""
        return [f for f in self.files.values() if f.get("channel") == channel]

    def in_channel(self, channel: str) -> list[Posted]:
        return [m for m in self.messages if m.channel == channel and not m.deleted]

    def open_view(self, user_id: str) -> OpenView | None:
        """The newest modal open for the user."""
        mine = [v for v in self.views.values() if v.user == user_id]
        return mine[-1] if mine else None

    def close_view(self, view_id: str) -> None:
        self.views.pop(view_id, None)

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- HTTP ------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        for key in ("blocks", "view", "files", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    def _limited(self, method: str, args: dict[str, Any]) -> float | None:
        """Seconds to wait when this call is over a limit (answered 429 + Retry-After), else None."""
        if self.throttle.get(method, 0) > 0 and self.throttle_after.get(method, 0) > 0:
            self.throttle_after[method] -= 1
        elif self.throttle.get(method, 0) > 0:
            self.throttle[method] -= 1
            return float(self.retry_after)
        now = time.monotonic()
        limit = self.limits.get(method)
        if limit is not None:
            recent = self._recent.setdefault(method, deque())
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= limit:
                return float(self.retry_after)
            recent.append(now)
        if not self.tiers:
            return None
        per_minute = TIERS.get(method)
        if method == "chat.postMessage":
            per_minute = POST_WORKSPACE_PER_MINUTE
            wait = self._channel_bucket(str(args.get("channel", "")), now)
            if wait is not None:
                return wait
        if per_minute is None:
            return None
        # Slack counts per workspace per method over a minute and says when to come back.
        recent = self._tiered.setdefault((self.team, method), deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= per_minute:
            return max(1.0, recent[0] + 60 - now)
        recent.append(now)
        return None

    def _channel_bucket(self, channel: str, now: float) -> float | None:
        """chat.postMessage: 1 per second per channel, short bursts allowed (a token bucket)."""
        tokens, at = self._post_buckets.get(channel, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - at))
        if tokens < 1:
            self._post_buckets[channel] = (tokens, now)
            return 1.0
        self._post_buckets[channel] = (tokens - 1, now)
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        # A token goes in the Authorization header, or as a form-encoded POST parameter; newly
        # created apps may not put it in the query string (changelog 2020-11-no-more-tokens-in-
        # querystrings-for-newly-created-apps), and a JSON body must carry it in the header
        # (web API, "JSON-encoded bodies").
        in_form = (request.method == "POST" and request.content_type != "application/json"
                   and args.get("token") != request.query.get("token"))
        token = auth.removeprefix("Bearer ").strip() or (args.get("token") if in_form else None)
        self.calls.append(Call(method, args, token))
        if method == "oauth.v2.access":
            return web.json_response(self._oauth(args, request))
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if token in self.revoked:
            return web.json_response({"ok": False, "error": self.revoked[token]})
        if self.revoke_later is not None and self.revoke_later[0] == method:
            left = self.revoke_later[1] - 1
            if left < 0:
                self.revoked[BOT_TOKEN], self.revoke_later = self.revoke_later[2], None
                return web.json_response({"ok": False, "error": self.revoked[BOT_TOKEN]})
            self.revoke_later = (method, left, self.revoke_later[2])
        if token not in self.tokens and not (method == "apps.connections.open" and token == APP_TOKEN):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        wait = self._limited(method, args)
        if wait is not None:
            # https://docs.slack.dev/apis/web-api/rate-limits: HTTP 429, Retry-After in seconds.
            self.refused[method] = self.refused.get(method, 0) + 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(int(-(-wait // 1)))})
        needed = SCOPES.get(method)
        needed = needed(args) if callable(needed) else needed
        granted = self.scopes | ({"channels:history"} if self.history_scope else set())
        if needed and needed not in granted:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": needed,
                                      "provided": ",".join(sorted(self.scopes))})
        queued = self.failures.get(method)
        if queued:
            return web.json_response({"ok": False, "error": queued.pop(0)})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        return web.json_response(handler(args, request))

    async def _respond(self, request: web.Request) -> web.Response:
        """A post to a response_url: JSON (`text`, `blocks`, `response_type`, `replace_original`);
        no token, the URL itself is the credential (.../handling-user-interaction, "Message
        responses"). Ephemeral unless `response_type` is `in_channel` (slash commands:
        "ephemeral ... is the default"; for a button the fake asks the same, and our adapter
        always says `ephemeral`)."""
        key = request.match_info["key"]
        args = await request.json() if request.can_read_body else {}
        # `token`: whatever Authorization header came with it (Slack needs none: a bot token
        # sent here would be a secret given to whoever the URL names).
        auth = request.headers.get("Authorization")
        self.calls.append(Call("response_url", dict(args), auth))
        found = self.response_urls.get(key)
        if found is None:
            return web.Response(status=404, text="no_such_url")
        if found.expires < time.monotonic():
            return web.Response(status=404, text="expired_url")
        if found.posts >= RESPONSE_URL_POSTS:
            return web.Response(status=404, text="used_url")
        if not args.get("text") and not args.get("blocks"):
            return web.Response(status=400, text="no_text")
        blocks = args.get("blocks") or []
        if self._message_error(blocks):
            return web.Response(status=400, text="invalid_blocks")
        if args.get("replace_original") or args.get("delete_original"):
            # Editing the message a button was in: not modelled (the adapter never asks it).
            return web.Response(status=400, text="fake_does_not_replace")
        found.posts += 1
        if args.get("response_type") == "in_channel":
            posted = Posted(found.channel, self._ts_now(), str(args.get("text", "")), blocks)
            self.messages.append(posted)
        else:
            self.ephemeral.append(Ephemeral(found.channel, found.user, self._ts_now(),
                                            str(args.get("text", "")), blocks, "response_url"))
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]
        if fid not in self.files:
            return web.Response(status=404, text="not found")
        self.files[fid]["bytes"] = await request.read()
        return web.Response(text=f"OK - {len(self.files[fid]['bytes'])}")

    # -- methods ---------------------------------------------------------------------

    def m_auth_test(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return {"ok": True, "url": "https://northbridge.example.slack.com/", "team": "Northbridge",
                "user": "staffvoice", "team_id": self.team, "user_id": BOT_USER, "bot_id": BOT_ID,
                "is_enterprise_install": False,
                **({"enterprise_id": self.enterprise} if self.enterprise else {})}

    def _ts_now(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _channel_ok(self, channel: str) -> bool:
        return channel in self.channels or channel in self.dms.values()

    def _post_error(self, channel: str) -> str | None:
        """Why a post to `channel` is refused: unknown, or the bot is not a member."""
        if channel in self.post_refusals:
            return self.post_refusals[channel]
        if channel in self.outside:
            # chat.postMessage errors: "not_in_channel: Cannot post user messages to a channel
            # they are not in" (the app needs an invite, or chat:write.public for public ones).
            return "not_in_channel"
        if not self._channel_ok(channel):
            return "channel_not_found"
        return None

    def _blocks_error(self, blocks: Any, limit: int = MAX_BLOCKS, at: str = "/blocks") -> Problem | None:
        """Block Kit rules Slack checks on every message and view: where the first broken one
        is (a json-pointer, as Slack's `response_metadata.messages` give it) and why."""
        if not isinstance(blocks, list):
            return at, "must be an array"
        if len(blocks) > limit:
            return at, f"no more than {limit} items allowed"
        block_ids: set[str] = set()
        for n, b in enumerate(blocks):
            here = f"{at}/{n}"
            if not isinstance(b, dict):
                return here, "must be an object"
            bid = b.get("block_id")
            if bid is not None:
                if not isinstance(bid, str) or not 1 <= len(bid) <= MAX_BLOCK_ID:
                    return f"{here}/block_id", f"must be less than {MAX_BLOCK_ID + 1} characters"
                if bid in block_ids:
                    return f"{here}/block_id", "duplicate block_id"
                block_ids.add(bid)
            text = (b.get("text") or {}).get("text", "") if isinstance(b.get("text"), dict) else ""
            if b.get("type") == "section" and len(text) > MAX_SECTION_TEXT:
                return f"{here}/text/text", f"must be less than {MAX_SECTION_TEXT + 1} characters"
            if b.get("type") == "header" and len(text) > MAX_HEADER_TEXT:
                return f"{here}/text/text", f"must be less than {MAX_HEADER_TEXT + 1} characters"
            fields = b.get("fields") or []
            if len(fields) > MAX_FIELDS:
                return f"{here}/fields", f"no more than {MAX_FIELDS} items allowed"
            for i, f in enumerate(fields):
                if len(str((f or {}).get("text", ""))) > MAX_FIELD_TEXT:
                    return f"{here}/fields/{i}/text", f"must be less than {MAX_FIELD_TEXT + 1} characters"
            elements = b.get("elements") or []
            if b.get("type") == "actions" and len(elements) > MAX_ACTIONS:
                return f"{here}/elements", f"no more than {MAX_ACTIONS} items allowed"
            if b.get("type") == "context" and len(elements) > MAX_CONTEXT:
                return f"{here}/elements", f"no more than {MAX_CONTEXT} items allowed"
            if b.get("type") == "input":
                problem = self._input_block_problem(b, here)
                if problem:
                    return problem
            placed = [*((f"{here}/elements/{i}", e) for i, e in enumerate(elements)),
                      (f"{here}/element", b.get("element")), (f"{here}/accessory", b.get("accessory"))]
            for where, e in placed:
                if isinstance(e, dict):
                    problem = self._element_error(e, where)
                    if problem:
                        return problem
            problem = self._texts_problem(b, here) or self._image_problem(b, here)
            if problem:
                return problem
            if b.get("type") == "image" and b.get("slack_file"):
                ref = b["slack_file"]
                stored = self.files.get(str(ref.get("id"))) if isinstance(ref, dict) else None
                # A file uploaded without channel_id is private to the app: Slack answers
                # "invalid_blocks: invalid slack file" (python-slack-sdk #1658, #1797;
                # bolt-python #1251; files.completeUploadExternal: "If not specified, the file
                # will be private").
                if stored is None or not stored.get("channel"):
                    return f"{here}/slack_file", "invalid slack file"
        return None

    @staticmethod
    def _texts_problem(node: Any, at: str) -> Problem | None:
        """Every text object (.../composition-objects/text-object): `text` "minimum length for
        this field is 1 and maximum length is 3000 characters" (an empty section, label or
        button is refused: "must be more than 0 characters", as in yonicd/slackreprex #3's
        answers). Tighter limits of particular fields are checked where they apply."""
        if isinstance(node, list):
            for i, item in enumerate(node):
                problem = FakeSlack._texts_problem(item, f"{at}/{i}")
                if problem:
                    return problem
            return None
        if not isinstance(node, dict):
            return None
        if node.get("type") in ("plain_text", "mrkdwn"):
            text = node.get("text")
            if not isinstance(text, str) or not text:
                return f"{at}/text", "must be more than 0 characters"
            if len(text) > MAX_SECTION_TEXT:
                return f"{at}/text", f"must be less than {MAX_SECTION_TEXT + 1} characters"
            return None
        for key, value in node.items():
            if isinstance(value, dict | list):
                problem = FakeSlack._texts_problem(value, f"{at}/{key}")
                if problem:
                    return problem
        return None

    @staticmethod
    def _image_problem(b: dict[str, Any], at: str) -> Problem | None:
        """An image block (.../blocks/image-block): `image_url` at most 3000 characters,
        `alt_text` required and at most 2000, `title` at most 2000; a button's `url` at most
        3000 (.../block-elements/button-element)."""
        if b.get("type") == "image":
            if len(str(b.get("image_url", ""))) > MAX_URL:
                return f"{at}/image_url", f"must be less than {MAX_URL + 1} characters"
            if not b.get("alt_text") or len(str(b["alt_text"])) > MAX_ALT_TEXT:
                return f"{at}/alt_text", f"must be between 1 and {MAX_ALT_TEXT} characters"
            if len(str((b.get("title") or {}).get("text", ""))) > MAX_ALT_TEXT:
                return f"{at}/title/text", f"must be less than {MAX_ALT_TEXT + 1} characters"
        for i, e in enumerate(b.get("elements") or []):
            if isinstance(e, dict) and len(str(e.get("url", ""))) > MAX_URL:
                return f"{at}/elements/{i}/url", f"must be less than {MAX_URL + 1} characters"
        return None

    @staticmethod
    def _input_block_problem(b: dict[str, Any], here: str) -> Problem | None:
        """An input block (.../block-kit/blocks/input-block): a plain_text `label` of at most
        2000 characters and an `element` are required; `hint` at most 2000 characters."""
        label = b.get("label")
        if not isinstance(label, dict) or not label.get("text"):
            return f"{here}/label", "missing required field: label"
        if len(str(label.get("text", ""))) > MAX_INPUT_LABEL:
            return f"{here}/label/text", f"must be less than {MAX_INPUT_LABEL + 1} characters"
        if len(str((b.get("hint") or {}).get("text", ""))) > MAX_INPUT_LABEL:
            return f"{here}/hint/text", f"must be less than {MAX_INPUT_LABEL + 1} characters"
        if not isinstance(b.get("element"), dict):
            return f"{here}/element", "missing required field: element"
        return None

    @staticmethod
    def _element_error(e: dict[str, Any], at: str = "") -> Problem | None:
        """An element over its limits (buttons, select menus, inputs: see MAX_* above)."""
        def over(path: str, limit: int) -> Problem:
            return f"{at}/{path}", f"must be less than {limit + 1} characters"

        if len(str(e.get("value", ""))) > MAX_BUTTON_VALUE:
            return over("value", MAX_BUTTON_VALUE)
        if len(str(e.get("action_id", ""))) > MAX_ACTION_ID:
            return over("action_id", MAX_ACTION_ID)
        if e.get("type") == "button" and len((e.get("text") or {}).get("text", "")) > MAX_BUTTON_TEXT:
            return over("text/text", MAX_BUTTON_TEXT)
        if len(str((e.get("placeholder") or {}).get("text", ""))) > MAX_PLACEHOLDER:
            return over("placeholder/text", MAX_PLACEHOLDER)
        if e.get("type") == "plain_text_input":
            # "max_length ... Acceptable values for this field are between 1 and 3000,
            # inclusive"; min_length "between 0 and 3000" (.../plain-text-input-element).
            for key, low in (("max_length", 1), ("min_length", 0)):
                bound = e.get(key)
                if bound is not None and not (isinstance(bound, int) and low <= bound <= MAX_INPUT_LENGTH):
                    return f"{at}/{key}", f"must be between {low} and {MAX_INPUT_LENGTH}"
        if e.get("type") == "checkboxes" and len(e.get("options") or []) > MAX_CHECKBOXES:
            # Checkboxes: "A maximum of 10 options are allowed" (.../checkboxes-element).
            return f"{at}/options", f"no more than {MAX_CHECKBOXES} items allowed"
        options, groups = e.get("options"), e.get("option_groups")
        if options is not None and groups is not None:
            return at, "options and option_groups are mutually exclusive"
        if options is not None and len(options) > MAX_OPTIONS:
            return f"{at}/options", f"no more than {MAX_OPTIONS} items allowed"
        if groups is not None:
            if len(groups) > MAX_OPTION_GROUPS:
                return f"{at}/option_groups", f"no more than {MAX_OPTION_GROUPS} items allowed"
            for g, group in enumerate(groups):
                if len(group.get("options") or []) > MAX_OPTIONS:
                    return f"{at}/option_groups/{g}/options", f"no more than {MAX_OPTIONS} items allowed"
        every = [*((f"options/{i}", o) for i, o in enumerate(options or [])),
                 *((f"option_groups/{g}/options/{i}", o) for g, group in enumerate(groups or [])
                   for i, o in enumerate(group.get("options") or []))]
        for where, o in every:
            if len((o.get("text") or {}).get("text", "")) > MAX_OPTION_TEXT:
                return over(f"{where}/text/text", MAX_OPTION_TEXT)
            if len(str(o.get("value", ""))) > MAX_OPTION_VALUE:
                return over(f"{where}/value", MAX_OPTION_VALUE)
        return None

    @staticmethod
    def blocks_text(node: Any) -> int:
        """Characters of text in blocks, as msg_blocks_too_long counts them (see MAX_BLOCKS_TEXT)."""
        if isinstance(node, list):
            return sum(FakeSlack.blocks_text(n) for n in node)
        if not isinstance(node, dict):
            return 0
        own = len(node["text"]) if isinstance(node.get("text"), str) else 0
        return own + sum(FakeSlack.blocks_text(v) for v in node.values() if isinstance(v, dict | list))

    def _message_error(self, blocks: Any) -> dict[str, Any] | None:
        """What chat.postMessage and chat.update refuse in a message's blocks, as Slack answers."""
        problem = self._blocks_error(blocks)
        if problem:
            return refusal("invalid_blocks", problem)
        if self.blocks_text(blocks) > MAX_BLOCKS_TEXT:
            return {"ok": False, "error": "msg_blocks_too_long"}
        return None

    def m_chat_postMessage(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        refused = self._post_error(channel)
        if refused:
            return {"ok": False, "error": refused}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if len(str(args.get("text", ""))) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        blocks = args.get("blocks") or []
        error = self._message_error(blocks)
        if error:
            return error
        meta = args.get("metadata")
        if meta is not None and not (isinstance(meta, dict) and meta.get("event_type")
                                     and isinstance(meta.get("event_payload"), dict)):
            return {"ok": False, "error": "invalid_metadata_format"}
        posted = Posted(channel, self._ts_now(), str(args.get("text", "")), blocks,
                        args.get("thread_ts"), metadata=meta)
        self.messages.append(posted)
        return {"ok": True, "channel": channel, "ts": posted.ts,
                "message": {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": posted.ts,
                            "text": posted.text, "blocks": blocks}}

    def m_chat_postEphemeral(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Shown to `user` in `channel` only, and kept nowhere (see Ephemeral): the answer's
        `message_ts` names no message that conversations.history returns."""
        channel, user = str(args.get("channel", "")), str(args.get("user", ""))
        refused = self._post_error(channel)
        if refused:
            return {"ok": False, "error": refused}
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        if channel.startswith("D") and self.dms.get(user) != channel:
            # "the user must be ... a member of the specified channel" (Usage info).
            return {"ok": False, "error": "user_not_in_channel"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = args.get("blocks") or []
        error = self._message_error(blocks)
        if error:
            return error
        ts = self._ts_now()
        self.ephemeral.append(Ephemeral(channel, user, ts, str(args.get("text", "")), blocks,
                                        "chat.postEphemeral"))
        return {"ok": True, "message_ts": ts}

    def m_conversations_history(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Newest first, `limit` of them; metadata only with include_all_metadata, like Slack."""
        channel = str(args.get("channel", ""))
        if not self._channel_ok(channel):
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channels and not self.history_scope:
            return {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        limit = int(args.get("limit") or 100)
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        live = [m for m in reversed(self.messages) if m.channel == channel and not m.deleted
                and m.thread_ts is None]
        out = []
        for m in live[:limit]:
            item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text,
                                    "user": BOT_USER, "bot_id": BOT_ID}
            if with_meta and m.metadata:
                item["metadata"] = m.metadata
            out.append(item)
        return {"ok": True, "messages": out, "has_more": len(live) > limit}

    def _find(self, channel: str, ts: str) -> Posted | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts and not m.deleted), None)

    def m_chat_update(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        found = self._find(str(args.get("channel")), str(args.get("ts")))
        if found is None:
            return {"ok": False, "error": "message_not_found"}
        blocks = args.get("blocks") or []
        error = self._message_error(blocks)
        if error:
            return error
        if len(str(args.get("text", ""))) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        found.text, found.blocks, found.edits = str(args.get("text", "")), blocks, found.edits + 1
        return {"ok": True, "channel": found.channel, "ts": found.ts, "text": found.text}

    def m_chat_delete(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        found = self._find(str(args.get("channel")), str(args.get("ts")))
        if found is None:
            return {"ok": False, "error": "message_not_found"}
        found.deleted = True
        return {"ok": True, "channel": found.channel, "ts": found.ts}

    def m_conversations_info(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """conversations.info: `is_member` says whether the bot was invited."""
        channel = str(args.get("channel", ""))
        if channel in self.dms.values():
            return {"ok": True, "channel": {"id": channel, "is_im": True}}
        if channel not in self.channels and channel not in self.outside:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": {"id": channel, "is_channel": True,
                                        "is_member": channel in self.channels}}

    def m_conversations_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        uid = str(args.get("users", "")).split(",")[0]
        user = self.users.get(uid)
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        if user.deleted:
            return {"ok": False, "error": "user_disabled"}
        if user.is_bot:
            return {"ok": False, "error": "cannot_dm_bot"}
        return {"ok": True, "channel": {"id": self.dm_of(uid)}}

    def _user_json(self, u: User) -> dict[str, Any]:
        return {"id": u.id, "team_id": self.team, "name": u.name, "deleted": u.deleted,
                "is_bot": u.is_bot, "tz": u.tz, "is_email_confirmed": True,
                "is_restricted": u.guest, "is_ultra_restricted": u.guest,
                "profile": {"email": u.email, "display_name": u.name, "real_name": u.name}}

    def m_usergroups_users_list(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Like Slack: every user of the group in one answer (this method is not paginated)."""
        users = self.usergroups.get(str(args.get("usergroup", "")))
        if users is None:
            return {"ok": False, "error": "no_such_subteam"}
        live = [u for u in users if not self.users[u].deleted
                or str(args.get("include_disabled", "")).lower() in ("1", "true")]
        return {"ok": True, "users": live}

    def m_conversations_members(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Cursor-paged like Slack: `limit`, `cursor`, `response_metadata.next_cursor`."""
        members = self.channel_members.get(str(args.get("channel", "")))
        if members is None:
            return {"ok": False, "error": "channel_not_found"}
        size = min(int(args.get("limit") or 100), self.member_page_cap)
        cursor = str(args.get("cursor") or "")
        if cursor and not cursor.startswith("offset_"):
            return {"ok": False, "error": "invalid_cursor"}
        start = int(cursor.removeprefix("offset_") or 0)
        page = members[start : start + size]
        more = start + size < len(members)
        return {"ok": True, "members": page,
                "response_metadata": {"next_cursor": f"offset_{start + size}" if more else ""}}

    def m_users_info(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": self._user_json(user)}

    def m_users_lookupByEmail(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        user = self.user_by_email(str(args.get("email", "")))
        if user is None or user.deleted:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": self._user_json(user)}

    def _view_problem(self, view: Any, kind: str) -> Problem | None:
        """https://docs.slack.dev/reference/views/modal-views (and .../home-tab-views): title 24
        characters, submit and close 24, callback_id 255, private_metadata 3000, 100 blocks,
        a submit button whenever there is an input block; each block as in messages
        (`_blocks_error`). views.open: `view_too_large` past 250 kB."""
        if not isinstance(view, dict) or view.get("type") != kind:
            return "/view/type", f"must be {kind}"
        if len(json.dumps(view)) > MAX_VIEW_BYTES:
            return "/view", "view_too_large"
        if kind == "modal" and not (1 <= len((view.get("title") or {}).get("text", "")) <= 24):
            return "/view/title/text", "must be between 1 and 24 characters"
        # "submit" and "close": plain_text, "Max length of 24 characters" (same page).
        for key in ("submit", "close"):
            if len((view.get(key) or {}).get("text", "")) > 24:
                return f"/view/{key}/text", "must be less than 25 characters"
        if len(str(view.get("callback_id", ""))) > MAX_CALLBACK_ID:
            return "/view/callback_id", f"must be less than {MAX_CALLBACK_ID + 1} characters"
        if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
            return "/view/private_metadata", f"must be less than {MAX_PRIVATE_METADATA + 1} characters"
        blocks = view.get("blocks") or []
        problem = self._blocks_error(blocks, MAX_VIEW_BLOCKS, "/view/blocks")
        if problem:
            return problem
        # submit: "Required if the view contains input blocks" (modal-views, Fields).
        if kind == "modal" and not view.get("submit") and any(
                isinstance(b, dict) and b.get("type") == "input" for b in blocks):
            return "/view/submit", "submit is required when an input block is within the blocks array"
        return None

    def _check_view(self, view: Any, kind: str) -> str | None:
        """Why Slack would refuse this view, in Slack's words with the json-pointer (None: fine)."""
        problem = self._view_problem(view, kind)
        return None if problem is None else f"[ERROR] {problem[1]} [json-pointer:{problem[0]}]"

    def _view_refusal(self, view: Any, kind: str) -> dict[str, Any] | None:
        problem = self._view_problem(view, kind)
        if problem is None:
            return None
        if problem[1] == "view_too_large":
            return {"ok": False, "error": "view_too_large"}
        return refusal("invalid_arguments", problem)

    def m_views_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        # Single use: a trigger is spent by its first views.open (views.open: "invalid_trigger_id").
        trigger = self._triggers.pop(str(args.get("trigger_id", "")), None)
        if trigger is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        if trigger[1] < time.monotonic():
            return {"ok": False, "error": "expired_trigger_id"}
        error = self._view_refusal(args.get("view"), "modal")
        if error:
            return error
        if trigger[2] == "view_submission":
            # A submission's ack closes its modal; views.open with that submission's trigger is
            # answered ok but shows nothing on desktop clients (bolt-js #1072). Slack's way is
            # `response_action: update|push` in the ack (docs: "Updating views", modals).
            self.hidden_views.append(args["view"])
            return {"ok": True, "view": {"id": f"V{next(self._ids):08d}", "team_id": self.team,
                                         **args["view"]}}
        vid = f"V{next(self._ids):08d}"
        opened = OpenView(vid, f"{int(time.time())}.{vid}", trigger[0], args["view"])
        self.views[vid] = opened
        return {"ok": True, "view": {"id": vid, "hash": opened.hash, "team_id": self.team, **args["view"]}}

    def m_views_update(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Replace a modal that is still open (https://docs.slack.dev/reference/methods/views.update:
        by `view_id` or by the `external_id` the app gave the view, no trigger needed;
        "not_found" once the person closed it, or before a view with that external_id is
        shown; "hash_conflict" when a `hash` is given and the view changed since; the new view is
        checked as views.open's is)."""
        opened = self.views.get(str(args.get("view_id", "")))
        external = str(args.get("external_id", ""))
        if opened is None and external:
            opened = next((v for v in self.views.values()
                           if v.view.get("external_id") == external), None)
        if opened is None:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != opened.hash:
            return {"ok": False, "error": "hash_conflict"}
        error = self._view_refusal(args.get("view"), "modal")
        if error:
            return error
        opened.view, opened.hash = args["view"], f"{time.time():.6f}.{opened.id}"
        return {"ok": True, "view": {"id": opened.id, "hash": opened.hash, "team_id": self.team,
                                     **args["view"]}}

    def m_views_publish(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        uid = str(args.get("user_id", ""))
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        error = self._view_refusal(args.get("view"), "home")
        if error:
            return error
        # https://api.slack.com/methods/views.publish: `hash` (optional) "represents view
        # state to protect against possible race conditions"; error `hash_conflict`: "the
        # provided hash doesn't match the current stored value". Every publish gives the
        # Home view a new hash, returned in `view.hash` and sent in the view of each tap in
        # it (block_actions); a publish without `hash` always overwrites.
        given = args.get("hash")
        if given and given != self.home_hashes.get(uid):
            return {"ok": False, "error": "hash_conflict"}
        self.homes[uid] = args["view"]
        self.home_hashes[uid] = f"{time.time():.6f}.{next(self._ids)}"
        return {"ok": True, "view": {"id": f"VH{uid}", **args["view"],
                                     "hash": self.home_hashes[uid]}}

    def m_files_getUploadURLExternal(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        if not args.get("filename") or not args.get("length"):
            return {"ok": False, "error": "invalid_arguments"}
        fid = f"F{next(self._ids):08d}"
        self.files[fid] = {"id": fid, "name": args["filename"], "length": int(args["length"])}
        base = str(request.url.origin())
        return {"ok": True, "upload_url": f"{base}/upload/{fid}", "file_id": fid}

    def m_files_completeUploadExternal(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        out = []
        for f in args.get("files") or []:
            stored = self.files.get(f.get("id"))
            if stored is None or "bytes" not in stored:
                return {"ok": False, "error": "file_not_found"}
        channel = args.get("channel_id") or args.get("channels")
        if channel:
            refused = self._post_error(str(channel))
            if refused:
                return {"ok": False, "error": refused}
        for f in args.get("files") or []:
            stored = self.files[f["id"]]
            stored["title"] = f.get("title")
            # Without channel_id "the file will be private" (files.completeUploadExternal).
            stored["channel"] = str(channel) if channel else None
            out.append({"id": stored["id"], "title": f.get("title"), "name": stored["name"]})
            if channel:
                # Shared into the channel: a file message the person sees there.
                self.messages.append(Posted(str(channel), self._ts_now(),
                                            str(args.get("initial_comment") or ""), [],
                                            args.get("thread_ts"), files=[stored["id"]]))
        return {"ok": True, "files": out}

    def m_apps_connections_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        if request.headers.get("Authorization", "") != f"Bearer {APP_TOKEN}":
            return {"ok": False, "error": "not_allowed_token_type"}
        ws_url = str(request.url.origin()).replace("http://", "ws://") + "/socket"
        return {"ok": True, "url": ws_url}

    # -- Socket Mode -----------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        # Close frames are answered here (autoclose off), so that `stall_socket` can leave
        # one unanswered, as a connection whose far end vanished does (RFC 6455 7.1.1: the
        # closing side waits for the peer's Close frame).
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        self._socket_ws = ws
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A0FAKE"}, "debug_info": {}})
        self._socket_ready.set()
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                if self._socket_stalled is not None:
                    await self._socket_stalled.wait()  # never answered until the fake closes
                await ws.close()
                break
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except (TypeError, ValueError):
                continue
            fut = self._acks.pop(str(data.get("envelope_id")), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        return ws

    async def socket_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._socket_ready.wait(), timeout)

    async def socket_send(self, kind: str, payload: dict[str, Any], *, envelope_id: str | None = None,
                          retry_attempt: int = 0, timeout: float = 5.0) -> dict[str, Any]:
        """Deliver an envelope over Socket Mode; returns the app's ack ({"envelope_id", "payload"?})."""
        assert self._socket_ws is not None, "no Socket Mode connection"
        eid = envelope_id or f"env-{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[eid] = fut
        await self._socket_ws.send_json({
            "envelope_id": eid, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else "",
        })
        return await asyncio.wait_for(fut, timeout)

    def _oauth(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        client_ok = (args.get("client_id") == self.client_id and args.get("client_secret") == self.client_secret)
        if not client_ok:
            basic = request.headers.get("Authorization", "")
            import base64

            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            client_ok = basic == f"Basic {expected}"
        if not client_ok:
            return {"ok": False, "error": "invalid_client_id"}
        team = self.oauth_codes.pop(str(args.get("code", "")), None)
        if team is None:
            return {"ok": False, "error": "invalid_code"}
        token = f"xoxb-{team}-installed"
        while token in self.revoked:  # a reinstall after an uninstall gets a new token
            token += "-again"
        self.tokens.add(token)
        return {"ok": True, "app_id": "A0FAKE", "access_token": token, "token_type": "bot",
                "scope": "chat:write,commands", "bot_user_id": BOT_USER,
                "team": {"id": team, "name": "Northbridge"},
                "enterprise": {"id": self.enterprise, "name": "Northbridge Council"} if self.enterprise else None,
                "is_enterprise_install": False, "authed_user": {"id": "U0INSTALL"}}
