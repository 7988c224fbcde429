"""The Slack port: the core's send/update/delete/open_dm/open_form/find_user over AsyncWebClient.

It also offers the broadcast engine's optional keyed sends (send_keyed/find_sent: the ledger
key rides as message metadata, so a send whose outcome is unknown is looked up, not repeated)
and group members as audiences (members).

Every Web API call goes through one client configuration whose calls share a back-off per
workspace and method after a 429 (Pacer); Slack's errors come back to the core as Unreachable, RateLimited or TransientError.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

from adapters.slack import render
from adapters.slack.config import SlackConfig
from adapters.slack.forms import PendingForms
from bot.core import rate_waited
from bot.model import (
    Choice,
    Choices,
    ConversationRef,
    Event,
    Form,
    FormSubmitEvent,
    Message,
    MessageRef,
    Text,
    UserRef,
)
from bot.port import (
    AppNotAuthorised,
    PlatformError,
    RateLimited,
    TransientError,
    Unreachable,
    parse_audience_ref,
)
from storage.retry import Retry

log = logging.getLogger("staffvoice.slack")
# The Web API client's own logger. slack_sdk formats every request and response (the whole
# message, blocks and all) for a debug line whenever its logger's *own* level is unset or
# DEBUG, before logging drops the line: about a tenth of a Slack request's CPU, for a
# payload (feedback thanks, answers) that must never reach a log. bot/logs.py keeps
# "slack_sdk" at WARNING; a child logger's own level is unset, so it is set here too.
WEB_LOG = logging.getLogger("slack_sdk.web.staffvoice")
WEB_LOG.setLevel(logging.WARNING)

PLATFORM = "slack"
# Errors that mean "this person or conversation cannot be reached": record, do not retry
# (conversations.open: user_not_found, user_disabled, user_not_visible; chat.postMessage:
# channel_not_found, is_archived, not_in_channel, restricted_action; docs.slack.dev/reference/
# methods/conversations.open and .../chat.postMessage, "Errors").
UNREACHABLE = frozenset({
    "cannot_dm_bot", "channel_not_found", "is_archived", "not_in_channel",
    "user_not_found", "users_not_found", "user_disabled", "user_not_visible",
    "messages_tab_disabled", "restricted_action",
})
# Errors about the app's token in the workspace, not about whom it writes to (Slack's common
# errors: account_inactive "Authentication token is for a deleted user or workspace when
# using a bot token", token_revoked, invalid_auth, not_authed; ekm_access_denied
# "Administrators have suspended the ability to post a message"; missing_scope and
# no_permission until the app is reinstalled with the scope): AppNotAuthorised, and nobody
# marked unreachable for it. A dead token (TOKEN_DEAD) fails every call of its workspace
# alike, so its calls are answered locally for APP_REFUSED_S instead of asking again.
TOKEN_DEAD = frozenset({
    "account_inactive", "invalid_auth", "not_authed", "token_revoked", "token_expired",
})
APP_REFUSED = TOKEN_DEAD | frozenset({
    "team_access_not_granted", "ekm_access_denied", "missing_scope", "no_permission",
    "not_allowed_token_type",
})
APP_REFUSED_S = 300.0
# Broadcast deliveries carry their ledger key as message metadata of this type.
DELIVERY_EVENT = "staffvoice_delivery"
FIND_WINDOW = 20
TRANSIENT = frozenset({
    "internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited",
})


def retry_after(headers: Mapping[str, Any] | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (whatever the header's case or list wrapping)."""
    for k, v in (headers or {}).items():
        if k.lower() == "retry-after":
            raw = v[0] if isinstance(v, list | tuple) else v
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return default
    return default


def _code(e: SlackApiError) -> str:
    """Slack's error code of a failed call ('' when the answer carried none)."""
    data = e.response.data
    return str((data or {}).get("error", "")) if isinstance(data, dict) else ""


def refused_for(e: BaseException) -> float | None:
    """The Retry-After of a call Slack refused with HTTP 429; None for any other failure."""
    if isinstance(e, SlackApiError) and getattr(e.response, "status_code", 200) == 429:
        return retry_after(getattr(e.response, "headers", None))
    return None


class Pacer:
    """One back-off per workspace token and Web API method, shared by every sender.

    While no call was refused, calls go at once, side by side. After a 429 every sender of
    that workspace and method waits out Retry-After together, and for a while
    (`CAUTIOUS_S` after the last refusal) calls go one at a time, so a refusal costs one
    call rather than one per waiting sender (https://docs.slack.dev/apis/web-api/rate-limits:
    "wait the number of seconds in Retry-After before retrying"). A wait longer than
    `max_wait` is not slept through: RateLimited reaches the caller (the broadcast engine then
    paces its whole queue) without asking Slack again. Per process: another replica learns
    the limit from its own first refusal.
    """

    CAUTIOUS_S = 60.0

    def __init__(self, max_wait: float = 5.0) -> None:
        self.max_wait = max_wait
        # A 429 is tried again (four tries in all) after its Retry-After, when that is short.
        self.retry = Retry(self.waits_for, attempts=4, cap=max_wait, after=refused_for)
        self._until: dict[tuple[str, str], float] = {}  # no calls before this (monotonic)
        self._cautious: dict[tuple[str, str], float] = {}  # one at a time until this
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Tokens the workspace refused (revoked, uninstalled): token -> (until, why).
        self._refused_tokens: dict[str, tuple[float, str]] = {}

    def token_refused(self, token: str, why: str, say: bool = True) -> None:
        """Slack refused `token` itself: answer its calls locally for APP_REFUSED_S (said
        once in the log, for operators, unless the caller says it: the start-up check)."""
        if say and token not in self._refused_tokens:  # (never the token itself in the log)
            log.error("slack refused the bot token of a workspace; not calling it again for "
                      "%d s", int(APP_REFUSED_S), extra={"error": why})
        self._refused_tokens[token] = (time.monotonic() + APP_REFUSED_S, why)

    def refused_token(self, token: str) -> str | None:
        """Why `token` was refused, while its calls are answered locally; else None."""
        hit = self._refused_tokens.get(token)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._refused_tokens[token]
            return None
        return hit[1]

    def any_refused(self) -> str | None:
        """Why some workspace's token is refused now, if one is (see token_refused)."""
        return next((why for tok in list(self._refused_tokens)
                     if (why := self.refused_token(tok)) is not None), None)

    def waits_for(self, e: BaseException) -> bool:
        """`e` is a 429 whose Retry-After is short enough to wait for inline."""
        wait = refused_for(e)
        return wait is not None and wait <= self.max_wait

    def refused(self, key: tuple[str, str], wait: float) -> None:
        now = time.monotonic()
        self._until[key] = max(self._until.get(key, 0.0), now + wait)
        self._cautious[key] = now + wait + self.CAUTIOUS_S

    @asynccontextmanager
    async def turn(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """Wait until `key` may be called (RateLimited if that is too long), then call."""
        if self._cautious.get(key, 0.0) < time.monotonic():
            self._cautious.pop(key, None)
            yield
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            wait = self._until.get(key, 0.0) - time.monotonic()
            if wait > self.max_wait:
                raise RateLimited(wait, f"slack: {key[1]} paused after a 429")
            if wait > 0:
                await asyncio.sleep(wait)
            yield


class PacedWebClient(AsyncWebClient):
    """AsyncWebClient whose every call waits its turn at the shared Pacer and is tried again
    after a 429 under the one retry policy (`Pacer.retry`: Retry-After honoured)."""

    def __init__(self, *args: Any, pacer: Pacer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        key = (self.token or "", api_method)
        call = super().api_call
        refused = self.pacer.refused_token(key[0])
        if refused is not None:
            raise AppNotAuthorised(refused)

        async def attempt() -> Any:
            async with self.pacer.turn(key):
                try:
                    return await call(api_method, **kwargs)
                except SlackApiError as e:
                    wait = refused_for(e)
                    if wait is not None:
                        self.pacer.refused(key, wait)
                    code = _code(e)
                    if code in TOKEN_DEAD:
                        self.pacer.token_refused(key[0], app_refused(code),
                                                 say=api_method != "auth.test")
                    raise

        return await self.pacer.retry.run(attempt)


def make_client(
    cfg: SlackConfig, token: str | None = None, session: aiohttp.ClientSession | None = None,
    pacer: Pacer | None = None,
) -> AsyncWebClient:
    """The one way this adapter builds a Web API client: base URL, retries, shared session,
    and the workspace's shared back-off after a 429 (`pacer`)."""
    return PacedWebClient(
        token=token,
        base_url=cfg.api_url,
        session=session,
        timeout=10,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=1),
        ],
        pacer=pacer or Pacer(cfg.max_inline_wait_s),
        logger=WEB_LOG,
    )


def not_in_channel(channel: str) -> str:
    """What the change team reads when Slack answers `not_in_channel`."""
    return (f"staffvoice is not a member of the Slack channel {channel}, so it cannot post there. "
            f"Invite it: in that channel type /invite @staffvoice (or add the app in the "
            f"channel's settings, Integrations). (slack: not_in_channel)")


def app_refused(code: str) -> str:
    """What operators and the change team read when Slack refuses the app's own token."""
    return (f"slack: {code}: the workspace refused staffvoice's token (the app was uninstalled, "
            "its token revoked or the workspace deactivated); nothing can be sent there until "
            "an admin reinstalls the app")


def platform_error(e: Exception, channel: str = "") -> PlatformError:
    """A Slack client failure as one of the port's errors."""
    if isinstance(e, SlackApiError):
        status = getattr(e.response, "status_code", 200)
        code = _code(e)
        if status == 429 or code == "ratelimited":
            return RateLimited(retry_after(getattr(e.response, "headers", None)), f"slack: {code or 429}")
        if code in APP_REFUSED:
            return AppNotAuthorised(app_refused(code), f"slack: {code}")
        if code == "not_in_channel":
            return Unreachable(not_in_channel(channel or "named"))
        if code in UNREACHABLE:
            return Unreachable(f"slack: {code}")
        if status >= 500 or code in TRANSIENT:
            return TransientError(f"slack: {code or status}")
        return PlatformError(f"slack: {code or status}")
    if isinstance(e, aiohttp.ClientError | asyncio.TimeoutError | TimeoutError):
        return TransientError(f"slack: {type(e).__name__}")
    return PlatformError(f"slack: {type(e).__name__}")


# Links and names in our text stay as typed: no unfurling, no @-name linking (render._payload).
UNFURL_NONE = ', "unfurl_links": false, "unfurl_media": false'


async def _post_json(client: AsyncWebClient, method: str, channel: str, members: str,
                     **fields: Any) -> Any:
    """A Web API call whose JSON body is `fields` (None left out) and `members`, JSON object
    members encoded beforehand (render.message_json): the same request chat_postMessage or
    chat_update would make, without encoding a card's blocks again for every recipient."""
    head = json.dumps({"channel": channel, **{k: v for k, v in fields.items() if v is not None}})
    body = f"{head[:-1]}, {members}}}".encode()
    try:
        # slack_sdk hands a `data` that is not a dict to aiohttp as it is: the body, sent with
        # this content type and the client's token, user agent and retry handlers as ever.
        return await client.api_call(method, data=body,  # type: ignore[arg-type]
                                     headers={"Content-Type": "application/json;charset=utf-8"})
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as e:
        raise platform_error(e, channel) from e


async def _finishing(post: Callable[[], Awaitable[Any]], what: str) -> Any:
    """`post()`, which finishes a message part of which is in the chat already (its charts,
    its first part of several): a 429 waited out as a DM's is (bot/core.py `rate_waited`:
    Retry-After honoured, within DM_RATE_WAIT_S in all, the Pacer's inline waits included),
    and one that lasts raised as TransientError (in doubt: part of it landed), never as
    RateLimited, which every caller reads as "nothing was posted" and answers by posting the
    whole message again (Core.dm within the call; a safeguarding alert at the next tick): the
    person's chat then held the first part twice."""
    try:
        return await rate_waited(time.monotonic(), post)
    except RateLimited as e:
        raise TransientError(f"slack: {what} not posted: {e} (the rest of it was)") from e


async def call(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """Run one Web API call, translating failures to the port's errors."""
    try:
        return await fn(**kwargs)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as e:
        raise platform_error(e, str(kwargs.get("channel") or kwargs.get("channel_id") or "")) from e


class Workspaces:
    """Which token speaks for which workspace: one bot token, or the OAuth installations."""

    def __init__(self, cfg: SlackConfig, store: Any | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.session: aiohttp.ClientSession | None = None
        self._clients: dict[str, AsyncWebClient] = {}
        self.single_team: str | None = None
        # One back-off for every client of this app: senders of a workspace wait together.
        self.pacer = Pacer(cfg.max_inline_wait_s)

    def base_client(self, token: str | None = None) -> AsyncWebClient:
        return make_client(self.cfg, token, self.session, self.pacer)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self._clients.clear()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def client(self, team_id: str) -> AsyncWebClient:
        """The client with the bot token for `team_id`."""
        if self.cfg.bot_token:
            if "" not in self._clients:
                self._clients[""] = self.base_client(self.cfg.bot_token)
            return self._clients[""]
        cached = self._clients.get(team_id)
        if cached is not None and self.pacer.refused_token(cached.token or "") is not None:
            # Slack refused this token (uninstalled, revoked). Only the replica that received
            # app_uninstalled/tokens_revoked forgot it; here the store is read again, so the
            # token of a reinstall is used as soon as it is stored, without a restart (a
            # store read per call while refused: a local query, never a Slack call).
            self.forget(team_id)
        if team_id not in self._clients:
            bot = await self.store.bot_for_team(team_id) if self.store else None
            if bot is None:  # uninstalled (app_uninstalled), or never installed
                raise AppNotAuthorised(f"slack: staffvoice is not installed in workspace "
                                       f"{team_id}; an admin must install it")
            self._clients[team_id] = self.base_client(bot.bot_token)
        return self._clients[team_id]

    def forget(self, team_id: str) -> None:
        """Drop a cached client (the token was revoked or the app uninstalled)."""
        self._clients.pop(team_id, None)

    async def teams(self) -> list[str]:
        """Every workspace the app can speak in."""
        if self.cfg.bot_token:
            if self.single_team is None:
                auth = await call((await self.client("")).auth_test)
                self.single_team = str(auth["team_id"])
            return [self.single_team]
        if self.store is None:
            return []
        return [b.team_id for b in await self.store.all_bots() if b.team_id]


class Directory:
    """Slack users as UserRefs with verified email and time zone (users.info, cached)."""

    def __init__(self, workspaces: Workspaces, ttl_s: float = 3600.0, size: int = 5000) -> None:
        self.workspaces = workspaces
        self.ttl = ttl_s
        self.size = size
        self._cache: OrderedDict[tuple[str, str], tuple[float, UserRef]] = OrderedDict()
        self._not_people: set[tuple[str, str]] = set()

    def _remember(self, key: tuple[str, str], user: UserRef) -> None:
        self._cache[key] = (time.monotonic() + self.ttl, user)
        self._cache.move_to_end(key)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    async def user(self, team_id: str, user_id: str) -> UserRef:
        """Who `user_id` is; without the lookup (API down) a bare UserRef still works."""
        key = (team_id, user_id)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            client = await self.workspaces.client(team_id)
            resp = await call(client.users_info, user=user_id)
        except PlatformError as e:
            log.warning("slack users.info failed", extra={"error": str(e)})
            return UserRef(PLATFORM, team_id, user_id)
        found = to_user_ref(resp["user"], team_id)
        self._remember(key, found)
        return found

    async def member(self, team_id: str, user_id: str) -> UserRef | None:
        """A person in a group: None for bots (the app too), Slackbot and deactivated accounts."""
        key = (team_id, user_id)
        if user_id == "USLACKBOT" or key in self._not_people:
            return None
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        client = await self.workspaces.client(team_id)
        try:
            resp = await call(client.users_info, user=user_id)
        except Unreachable:
            return None  # gone since the member list was read
        user = resp["user"]
        if user.get("is_bot") or user.get("deleted") or user.get("is_app_user"):
            self._not_people.add(key)
            return None
        found = to_user_ref(user, team_id)
        self._remember(key, found)
        return found


def to_user_ref(user: Mapping[str, Any], team_id: str) -> UserRef:
    """A Slack user object as a UserRef; the email only when Slack says it is confirmed."""
    profile = user.get("profile") or {}
    email = profile.get("email") if user.get("is_email_confirmed", True) else None
    name = profile.get("display_name") or profile.get("real_name") or user.get("name")
    return UserRef(
        PLATFORM,
        team_id or str(user.get("team_id", "")),
        str(user["id"]),
        email=email.lower() if email else None,
        display_name=name or None,
        tz=user.get("tz") or None,
        # Single- and multi-channel guests (users.info: is_restricted, is_ultra_restricted).
        guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
    )


@dataclass(frozen=True)
class Reply:
    """Where an interaction can be answered without a message in the DM: its response_url
    (slash commands, message shortcuts, buttons in messages), or the Home tab it came from
    (its blocks as the tap sent them)."""

    response_url: str = ""
    home: list[dict[str, Any]] | None = None
    # The Home view's hash as the tap saw it: views.publish refuses it (`hash_conflict`)
    # once the Home tab was drawn again since, rather than overwrite the newer one.
    home_hash: str = ""

    @staticmethod
    def of(body: Mapping[str, Any]) -> Reply:
        """From an interaction payload (a command's form fields, or a shortcut's or tap's JSON)."""
        view = body.get("view")
        is_home = isinstance(view, dict) and view.get("type") == "home"
        home = view.get("blocks") if is_home else None  # type: ignore[union-attr]
        seen = view.get("hash") if is_home else None  # type: ignore[union-attr]
        return Reply(str(body.get("response_url") or ""),
                     list(home) if isinstance(home, list) else None,
                     seen if isinstance(seen, str) else "")


NO_REPLY = Reply()

# Where Slack's response_urls point: https://hooks.slack.com/commands/... and /actions/...
# (https://docs.slack.dev/interactivity/handling-user-interaction), and the hooks host beside a
# SLACK_API_URL of another Slack domain (GovSlack). The payload's signature was checked, but a
# leaked signing secret, or a bug that let a body through unchecked, must not make the server
# post wherever a payload says (an internal address, a cloud metadata service).
SLACK_HOOKS_HOST = "hooks.slack.com"


def response_url_allowed(url: URL, api_url: str) -> bool:
    """Whether `url` (parsed as aiohttp will request it) is Slack's: https on the hooks host
    of slack.com or of SLACK_API_URL's domain, or the very origin of SLACK_API_URL (a proxy,
    the tests' fake)."""
    api = URL(api_url)
    if not url.is_absolute() or url.user is not None or url.password is not None:
        return False
    if (url.scheme == "https" and url.port == 443
            and url.host in (SLACK_HOOKS_HOST, f"hooks.{api.host}")):
        return True
    return (url.scheme, url.host, url.port) == (api.scheme, api.host, api.port)


class SlackPort:
    """Implements bot.port.Port for Slack."""

    platform = PLATFORM

    def __init__(self, workspaces: Workspaces, directory: Directory,
                 forms: PendingForms | None = None) -> None:
        self.workspaces = workspaces
        self.directory = directory
        # Forms waiting for a tap (a DM message carries no trigger_id to open a modal with);
        # without a store (a port used only to send) forms cannot be offered by button.
        self.forms = forms
        # Submissions being answered now, and the form each should show next (see open_form).
        self._in_ack: dict[str, Form | None] = {}
        self._acks_due: dict[str, int] = {}  # requests of each submission not acked yet
        # trigger_id -> (where to answer, events using it): how an interaction being handled
        # may be answered without a message in the DM (see answering, offer).
        self._replies: dict[str, tuple[Reply, int]] = {}

    @contextmanager
    def answering(self, trigger: str | None, reply: Reply) -> Iterator[None]:
        """While an interaction (slash command, shortcut, tap) is handled, `reply` (its
        response_url, or the Home tab it came from) answers it if the form it asks for
        cannot open (open_form)."""
        if not trigger or not (reply.response_url or reply.home is not None):
            yield
            return
        self._replies[trigger] = (reply, self._replies.get(trigger, (reply, 0))[1] + 1)
        try:
            yield
        finally:
            kept, users = self._replies.pop(trigger, (reply, 1))
            if users > 1:
                self._replies[trigger] = (kept, users - 1)

    async def _payload(self, team: str, message: Message) -> dict[str, Any]:
        # A PNG is never referenced from blocks (`slack_file`): an upload is private until it
        # is shared into a channel, and Slack refuses a private file in an image block
        # ("invalid_blocks: invalid slack file", python-slack-sdk #1658). The message says in
        # words what the chart shows; _share_charts sends the picture as a file message.
        return render.message_payload(message)

    async def _share_charts(self, conversation: ConversationRef, message: Message) -> int:
        """Send each PNG chart of `message` into the conversation as a file message; returns
        how many went.

        A chart that cannot be uploaded is only logged: the message already carries its
        description, so the person still has the figures in words.
        """
        shared = 0
        for _, image in render.png_images(message):
            client = await self.workspaces.client(conversation.workspace)
            try:
                await call(client.files_upload_v2, content=image.png or b"", filename="chart.png",
                           title=render.clip(image.title or image.alt or "chart", 250),
                           alt_txt=render.clip(image.alt or "chart", 1000),
                           channel=conversation.conversation_id,
                           thread_ts=conversation.thread_id, request_file_info=False)
                shared += 1
            except PlatformError as e:
                log.warning("slack chart upload failed; the message has it in words",
                            extra={"error": str(e)})
        return shared

    def app_refused(self) -> str | None:
        """bot.port.RefusalAware: why Slack refuses the app's token now, if it does."""
        return self.workspaces.pacer.any_refused()

    def too_big(self, message: Message) -> str | None:
        """bot.port.SizeLimited: why `message` cannot go as one Slack message, if it cannot."""
        if len(render.message_payloads(message)) == 1:
            return None
        blocks = render.to_dicts(render.render_blocks(message.blocks, limit=10**6))
        return (f"As a Slack message this would be {render.blocks_text(blocks):,} characters as "
                f"Slack counts them (&, < and > count five or four each); Slack refuses messages "
                f"over about {render.BLOCKS_TEXT:,} characters or {render.MAX_MESSAGE_BLOCKS} "
                "blocks. Shorten the text or link to the full story.")

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        return await self._post(conversation, message)

    async def send_keyed(self, conversation: ConversationRef, message: Message,
                         key: str) -> MessageRef:
        """send(), carrying `key` as message metadata so find_sent can tell later it landed."""
        meta = {"event_type": DELIVERY_EVENT, "event_payload": {"key": key}}
        return await self._post(conversation, message, metadata=meta)

    async def find_sent(self, conversation: ConversationRef, key: str) -> MessageRef | None:
        """Our message carrying `key` among the conversation's latest few, if it landed.

        Asked only about a send whose outcome is unknown (the sender stopped, or the request
        timed out) minutes earlier, so the newest `FIND_WINDOW` messages are enough. Only in
        the bot's DMs, which im:history lets it read; the manifest grants no channel history
        scope (channels:history would let it read every message of every channel it is in),
        so for a channel the sender is told the outcome cannot be checked, without asking
        Slack, and does not resend.
        """
        if not conversation.is_direct and not conversation.conversation_id.startswith("D"):
            raise PlatformError("slack: cannot check a channel's messages (no channel history "
                                "scope)")
        client = await self.workspaces.client(conversation.workspace)
        resp = await call(client.conversations_history, channel=conversation.conversation_id,
                          limit=FIND_WINDOW, include_all_metadata=True)
        for m in resp.get("messages") or []:
            meta = m.get("metadata") or {}
            if (meta.get("event_type") == DELIVERY_EVENT
                    and (meta.get("event_payload") or {}).get("key") == key):
                return MessageRef(conversation, str(m["ts"]))
        return None

    async def _post(self, conversation: ConversationRef, message: Message,
                    **extra: Any) -> MessageRef:
        """Post `message`; one too big for a Slack message goes as several, in order (the
        first's ref; `extra`, such as a delivery key, on the last)."""
        client = await self.workspaces.client(conversation.workspace)
        charts = 0
        last: dict[str, Any] = {}  # what the last part carries besides its own payload
        if render.png_images(message):
            # The picture first, then the message it belongs to, which stays the latest.
            charts = await self._share_charts(conversation, message)
        encoded = render.message_json(message)
        if encoded is not None:  # one Slack message: its JSON was encoded once for everyone
            resp = await _post_json(client, "chat.postMessage", conversation.conversation_id,
                                    encoded + UNFURL_NONE, thread_ts=conversation.thread_id,
                                    **extra)
            rest = []
        else:
            first, *rest = render.message_payloads(message)
            # Several: the delivery key goes on the last part, so a key found (find_sent)
            # says that the whole message landed, not only its beginning.
            last, extra = (extra, {}) if rest else ({}, extra)

            async def post_first() -> Any:
                return await call(client.chat_postMessage, channel=conversation.conversation_id,
                                  thread_ts=conversation.thread_id, **first, **extra)

            resp = await (_finishing(post_first, "the message after its charts") if charts
                          else post_first())
        channel = str(resp.get("channel") or conversation.conversation_id)
        conv = ConversationRef(PLATFORM, conversation.workspace, channel, conversation.thread_id,
                               conversation.is_direct, conversation.data)
        for n, payload in enumerate(rest, 2):
            await _finishing(functools.partial(call, client.chat_postMessage, channel=channel,
                                               thread_ts=conversation.thread_id, **payload,
                                               **(last if n == len(rest) + 1 else {})),
                             f"part {n} of {len(rest) + 1} of a message")
        return MessageRef(conv, str(resp["ts"]))

    async def update(self, ref: MessageRef, message: Message) -> None:
        conv = ref.conversation
        client = await self.workspaces.client(conv.workspace)
        encoded = render.message_json(message)
        if encoded is not None:
            await _post_json(client, "chat.update", conv.conversation_id, encoded,
                             ts=ref.message_id)
            return
        payload = await self._payload(conv.workspace, message)
        payload.pop("unfurl_media", None)
        payload.pop("unfurl_links", None)
        await call(client.chat_update, channel=conv.conversation_id, ts=ref.message_id, **payload)

    async def delete(self, ref: MessageRef) -> None:
        client = await self.workspaces.client(ref.conversation.workspace)
        await call(client.chat_delete, channel=ref.conversation.conversation_id, ts=ref.message_id)

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        # conversations.open stores nothing here, so `remember` changes nothing.
        client = await self.workspaces.client(user.workspace)
        resp = await call(client.conversations_open, users=user.user_id)
        return ConversationRef(PLATFORM, user.workspace, str(resp["channel"]["id"]), is_direct=True)

    def await_ack(self, event_id: str) -> None:
        """A view_submission is waiting for its ack: a form opened for it goes in that ack.

        Submit pressed twice sends one view (one event id) twice; the duplicate, acked at once,
        must not end the wait of the first, whose next screen would then go to the DM as a
        button ("Before you send", by name and time: N20). The wait ends with the last."""
        self._in_ack.setdefault(event_id, None)
        self._acks_due[event_id] = self._acks_due.get(event_id, 0) + 1

    def ack_view(self, event_id: str) -> Form | None:
        """The follow-up form for the submission's ack, if the core opened one (forgotten
        once every request of that submission is acked)."""
        due = self._acks_due.pop(event_id, 1) - 1
        if due > 0:
            self._acks_due[event_id] = due
            return self._in_ack.get(event_id)
        return self._in_ack.pop(event_id, None)

    async def open_form(self, event: Event, form: Form) -> None:
        """A modal when the event carries a trigger; else a message with a button that opens it.

        After a form submission the next screen replaces the modal through the ack
        (`response_action: update`): views.open with a submission's trigger is reported not to
        show on desktop clients (bolt-js #1072), and the ack already closed the modal.
        """
        if event.event_id in self._in_ack:
            self._in_ack[event.event_id] = form
            return
        if form.notice:
            # Only for the modal just submitted; past its ack the modal is closed, and a
            # button in the DM would leave the notice's time there (docs/invariants.md N19).
            log.info("slack notice not shown: its modal had closed", extra={"form": form.form_id})
            return
        if event.trigger and not isinstance(event, FormSubmitEvent):
            client = await self.workspaces.client(event.user.workspace)
            try:
                await call(client.views_open, trigger_id=event.trigger, view=render.modal(form).to_dict())
                return
            except PlatformError as e:
                # Triggers live 3 seconds; a slow core can miss it. Offer the button instead.
                log.info("slack views.open failed, offering a button", extra={"error": str(e)})
        if self.forms is None:
            raise PlatformError("slack: no store for forms offered by button")
        token = await self.forms.keep(render.modal(form).to_dict())
        msg = Message(
            (Text(f"{form.title}: tap the button to open the form."),
             Choices(render.FORM_ACTION, (Choice("Open the form", token, "primary"),))),
            fallback=f"{form.title}: open the form",
        )
        if event.trigger and not isinstance(event, FormSubmitEvent):
            # A slash command, shortcut or tap whose trigger the core missed: the button goes
            # in an ephemeral message, never in the DM, where Slack would keep by name and
            # time that this person opened the form then (docs/invariants.md N20). Its tap
            # brings a fresh trigger_id, which opens the modal (open_pending).
            reply = self._replies.get(event.trigger, (NO_REPLY, 0))[0]
            if not await self.offer(event.user, msg, reply):
                log.info("slack form not offered: no ephemeral message could be shown",
                         extra={"form": form.form_id})
            return
        # A typed word (a DM message carries no trigger): the word is in the DM already, and
        # so is this answer (N20's residue).
        conv = event.conversation if event.conversation is not None else await self.open_dm(event.user)
        await self.send(conv, msg)

    async def offer(self, user: UserRef, message: Message, reply: Reply) -> bool:
        """Show `message` to `user` alone, somewhere Slack keeps no message by their name.

        Through the interaction's `response_url` as an ephemeral message (`response_type:
        ephemeral`, where the person used the command or the button; "up to 5 times within 30
        minutes", https://docs.slack.dev/interactivity/implementing-slash-commands). A tap in
        the Home tab carries no response_url: the message goes at the top of that Home tab
        (views.publish; a Home tab is a view, not a message, so no conversation's history
        holds it), where the person is looking. Else (a global shortcut, which carries none
        either, or a refused response_url) by chat.postEphemeral in the person's DM with the
        app. Slack keeps no ephemeral message: "By nature, ephemeral messages do not persist
        across reloads, desktop and mobile apps, or sessions. Once the session is closed,
        ephemeral messages will disappear and cannot be recovered"
        (https://docs.slack.dev/reference/methods/chat.postEphemeral, Usage info), so
        conversations.history and exports never return one. False when nothing could be
        shown: then nothing is, as a message in the DM would leave the trace this avoids."""
        payload = render.message_payload(message)
        payload.pop("unfurl_links", None)
        payload.pop("unfurl_media", None)
        if reply.response_url and await self._respond(reply.response_url, payload):
            return True
        if reply.home is not None and await self._on_home(user, payload, reply.home,
                                                          reply.home_hash):
            return True
        try:
            conv = await self.open_dm(user)  # conversations.open posts nothing
            client = await self.workspaces.client(user.workspace)
            await call(client.chat_postEphemeral, channel=conv.conversation_id,
                       user=user.user_id, **payload)
        except PlatformError as e:
            log.info("slack ephemeral message not shown", extra={"error": str(e)})
            return False
        return True

    async def _on_home(self, user: UserRef, payload: dict[str, Any],
                       home: list[dict[str, Any]], seen: str = "") -> bool:
        """The Home tab the person is looking at (its blocks, as the tap sent them), with
        `payload`'s blocks on top; it stays until the Home tab is next drawn (app_home_opened).
        `seen`: that view's hash, passed to views.publish, so a Home tab drawn again since the
        tap (another device opened it, the queue drew it) is not overwritten by the older
        blocks: Slack answers `hash_conflict`, and the offer goes ephemerally instead."""
        top = [{**b, "block_id": f"offer.{b.get('block_id', i)}"}
               for i, b in enumerate(payload.get("blocks") or [])]
        blocks = top + [b for b in home if not str(b.get("block_id", "")).startswith("offer.")]
        try:
            await self.publish_home(user.workspace, user.user_id,
                                    {"type": "home", "blocks": blocks[:render.MAX_VIEW_BLOCKS]},
                                    hash=seen or None)
        except PlatformError as e:
            log.info("slack home tab not updated", extra={"error": str(e)})
            return False
        return True

    async def _respond(self, response_url: str, payload: dict[str, Any]) -> bool:
        """Post an ephemeral answer to an interaction's response_url (no token: the URL is
        the credential; it came in a payload whose signature was checked)."""
        body = {**payload, "response_type": "ephemeral", "replace_original": False}
        try:
            url = URL(response_url)
        except ValueError:
            url = URL()
        if not response_url_allowed(url, self.workspaces.cfg.api_url):
            # The URL is a credential: its host alone is logged.
            log.warning("slack response_url refused: not a Slack address",
                        extra={"host": str(url.host or "")[:80]})
            return False
        session = self.workspaces.session
        own = session is None
        if session is None:
            session = aiohttp.ClientSession()
        try:
            # Not followed elsewhere by a redirect either; no token goes with it (the
            # session has no default headers; slack_sdk adds the bot token per Web API call).
            async with session.post(url, json=body, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                answer = (await resp.text())[:40]
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError) as e:
            answer = type(e).__name__
        finally:
            if own:
                await session.close()
        # expired_url (30 minutes), used_url (5 posts): the caller tries chat.postEphemeral.
        log.info("slack interaction answer refused", extra={"error": answer})
        return False

    async def update_view(self, team: str, external_id: str, form: Form) -> bool:
        """Show `form` in the open modal the app named `external_id` (views.update, no trigger
        needed); False when there is none: not shown yet, or the person closed it."""
        client = await self.workspaces.client(team)
        try:
            await call(client.views_update, external_id=external_id,
                       view=render.modal(form).to_dict())
        except PlatformError as e:
            # No form id: a late thanks is logged in the second its item was stored (N24).
            log.info("slack modal not updated", extra={"error": str(e)})
            return False
        return True

    async def open_pending(self, team: str, token: str, trigger_id: str) -> bool:
        """Open a form offered earlier by button; False when it has expired.

        The form stays offered until it expires: a second tap after cancelling opens it again.
        """
        view = await self.forms.find(token) if self.forms is not None else None
        if view is None:
            return False
        client = await self.workspaces.client(team)
        await call(client.views_open, trigger_id=trigger_id, view=view)
        return True

    async def find_user(self, email: str) -> UserRef | None:
        for team in await self.workspaces.teams():
            client = await self.workspaces.client(team)
            try:
                resp = await call(client.users_lookupByEmail, email=email)
            except Unreachable:
                continue  # users_not_found: not in this workspace
            user = to_user_ref(resp["user"], team)
            self.directory._remember((team, user.user_id), user)
            return user
        return None

    async def channel_problem(self, conversation: ConversationRef) -> str | None:
        """Why the bot could not post in a channel named in the programme, or None.

        conversations.info (channels:read, groups:read) says whether the bot is a member.
        """
        try:
            client = await self.workspaces.client(conversation.workspace)
            resp = await call(client.conversations_info, channel=conversation.conversation_id)
        except PlatformError as e:
            return (f"staffvoice cannot see the Slack channel {conversation.conversation_id} "
                    f"({e}): check the id, and for a private channel invite the app first.")
        info = resp.get("channel") or {}
        if info.get("is_member") or info.get("is_im"):
            return None
        return not_in_channel(conversation.conversation_id)

    async def members(self, audience: str) -> list[UserRef]:
        """The people in 'slack:T/usergroup:S…' or 'slack:T/channel:C…' (bot.port.MemberLister).

        Channel members come cursor-paged; a user group's list comes whole (Slack does not page
        it), the cursor is followed anyway. Each member is looked up (users.info, cached, a few
        at a time) for their verified email; bots and deactivated accounts are left out.
        """
        ref = parse_audience_ref(audience)
        if ref.platform != PLATFORM:
            raise PlatformError(f"slack: '{audience}' is not a Slack audience")
        client = await self.workspaces.client(ref.workspace)
        if ref.kind == "usergroup":
            ids = await _paged(client.usergroups_users_list, "users", usergroup=ref.id)
        elif ref.kind == "channel":
            ids = await _paged(client.conversations_members, "members", channel=ref.id, limit=200)
        else:
            raise PlatformError(f"slack: no audience of kind '{ref.kind}' (usergroup or channel)")
        gate = asyncio.Semaphore(8)

        async def one(uid: str) -> UserRef | None:
            async with gate:
                return await self.directory.member(ref.workspace, uid)

        found = await asyncio.gather(*(one(u) for u in dict.fromkeys(ids)))
        return [u for u in found if u is not None]

    async def publish_home(self, team: str, user_id: str, view: dict[str, Any],
                           hash: str | None = None) -> None:
        """views.publish; with `hash` (the view's as last seen), refused with `hash_conflict`
        (a PlatformError) if the Home tab changed since (https://api.slack.com/methods/
        views.publish)."""
        client = await self.workspaces.client(team)
        await call(client.views_publish, user_id=user_id, view=view, hash=hash)


async def _paged(fn: Callable[..., Awaitable[Any]], key: str, **kwargs: Any) -> list[str]:
    """Every item of a cursor-paged Web API list (`response_metadata.next_cursor`)."""
    out: list[str] = []
    cursor = ""
    for _ in range(10_000):  # a bound, not a limit anyone reaches: 2 million members
        resp = await call(fn, **kwargs, **({"cursor": cursor} if cursor else {}))
        out += [str(x) for x in resp.get(key) or []]
        cursor = str((resp.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            break
    return out
