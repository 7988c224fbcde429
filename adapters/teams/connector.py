"""Outbound calls to the Bot Connector service: pooled clients, tokens, retries.

The Agents SDK opens a new HTTP session for every turn's connector client; that dominates the
latency tail. Here each service URL gets one long-lived SDK `TeamsConnectorClient` whose
session is reused, and the SDK adapter is handed the same clients through a client factory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiohttp
from microsoft_agents.hosting.core import ChannelServiceClientFactoryBase, TurnContext
from microsoft_agents.hosting.core.authorization import ClaimsIdentity
from microsoft_agents.hosting.core.connector import ConnectorClientBase, UserTokenClientBase
from microsoft_agents.hosting.core.connector.client import UserTokenClient
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

from adapters.teams.config import CONNECTOR_SCOPE
from bot.port import AppNotAuthorised, PlatformError, RateLimited, TransientError, Unreachable
from storage.db import give_back
from storage.retry import Retry

log = logging.getLogger("staffvoice.teams.connector")
T = TypeVar("T")
# Teams' documented throttling answers: retry these with backoff and jitter.
RETRY_STATUSES = frozenset({429, 412, 502, 504, 500, 503})
# After the Bot Connector refused the bot's own token (401, also with a fresh one), calls are
# answered locally for this long instead of asking again for every recipient.
REFUSED_S = 300.0
# 404s that mean the person or the chat is gone (record, do not retry): the chat is unknown
# (botbuilder-python #2102), or a 1:1 chat could not be created because the user is not found.
GONE_404 = frozenset({"ConversationNotFound", "NotFound", "MemberNotFoundInConversation"})
# 403s about the app in the whole tenant, not about the person ("Status codes from bot
# conversational APIs", learn.microsoft.com/microsoftteams/platform/bots/how-to/conversations/
# conversation-messages; msteams-docs #6335: BotDisabledByAdmin "The tenant admin disabled this
# bot", stop posting; bot-docs #1960: TenantNoPermission "Tenant is disabled"): nobody there is
# marked unreachable for them.
APP_403 = frozenset({"BotDisabledByAdmin", "TenantNoPermission"})
# The SDK's connector client cuts a conversation id to this many characters before posting
# (`max_conversation_id_length`); a send posted here does the same.
MAX_CONVERSATION_ID = 150
# The bot's token is used until this long before its `exp`, then asked for again (MSAL, asked
# every time, answers from its cache on a worker thread, and itself renews a token about five
# minutes before it ends).
TOKEN_MARGIN_S = 300.0


class _NoRetriedErrorsInLogs(logging.Filter):
    """Drop the SDK's ERROR for an answer the pool retries (429, 412, 5xx): throttling is normal
    (7 messages a second per chat) and the pool says at info level that it waits."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("Error accessing") and len(args) == 2
                    and args[1] in RETRY_STATUSES)


logging.getLogger("microsoft_agents.hosting.core.connector.client.connector_client").addFilter(
    _NoRetriedErrorsInLogs())


class CredentialsUnusable(TransientError):
    """The bot could not get its own token for the Bot Connector (secret, ids, network).

    Answered 503 on /api/messages (the Bot Connector retries), never 400 or 500."""


def token_failure(e: BaseException) -> str:
    """What went wrong getting a token, in words an operator can act on; never the secret
    (only the Entra error code is taken from the response, never its text)."""
    text = str(e)
    code = next(iter(re.findall(r"AADSTS\d+", text)), "")
    setting = "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__"
    if "invalid_client" in text or code in ("AADSTS7000215", "AADSTS7000222", "AADSTS7000216"):
        what = (f"Entra ID refused the client secret: it is wrong or has expired "
                f"(check {setting}CLIENTSECRET)")
    elif "unauthorized_client" in text or code in ("AADSTS700016", "AADSTS700038"):
        what = (f"Entra ID does not know this app in this tenant "
                f"(check {setting}CLIENTID and {setting}TENANTID)")
    elif "invalid_tenant" in text or code in ("AADSTS90002", "AADSTS900023"):
        what = f"the tenant was not found (check {setting}TENANTID)"
    elif isinstance(e, OSError | TimeoutError):  # requests' errors are OSErrors too
        what = f"Entra ID could not be reached ({type(e).__name__}: network, DNS or proxy)"
    else:
        what = f"the token request failed ({type(e).__name__})"
    return f"{what}{f' [{code}]' if code and code not in what else ''}"


class TokenProvider(Protocol):
    """What the SDK's MsalAuth offers: a bearer token for a resource."""

    async def get_access_token(
        self, resource_url: str, scopes: list[str], force_refresh: bool = False
    ) -> str: ...


class _PooledClient(TeamsConnectorClient):
    """An SDK connector client whose session outlives the turn (closing is the pool's job)."""

    async def close(self) -> None:
        return None

    async def really_close(self) -> None:
        await self.client.close()


class ChatGone(Unreachable):
    """404 ConversationNotFound on a send: the service no longer knows the stored chat id
    ("ConversationNotFound means the conversation ID is invalid", Microsoft on msteams-docs
    #9425; about 1% of installed users at a time, none of whom blocked the bot,
    botframework-sdk #6628). A personal chat is created again once (adapters/teams/port.py);
    the person is unreachable only if that fails too."""


def token_expiry(token: str) -> float | None:
    """When a JWT says it ends (its `exp`, in seconds since the epoch), read without checking
    its signature: it is the bot's own token, just handed over by Entra. None for a token that
    is not a JWT or says no end (such a token is asked for every time)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError, TypeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _error_code(message: str) -> str:
    """The connector's error code from a response body like {"error": {"code": ...}}."""
    try:
        body = json.loads(message)
    except (TypeError, ValueError):
        return ""
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("code", "")) if isinstance(err, dict) else ""


async def send_activity(client: TeamsConnectorClient, conversation_id: str,
                        payload: dict[str, Any]) -> str:
    """POST v3/conversations/{id}/activities ("Send to conversation", Bot Connector REST API)
    with our own payload, through the pooled client's session (its base URL and Authorization
    header); the new activity's id ("" if the service names none).

    What the SDK's `send_to_conversation` sends for the same payload, without its round trip
    through the `Activity` model (validated, then dumped back to the same dict: the payloads
    are built by adapters/teams/render.py and dialogs.py, and
    tests/teams/test_send_path.py checks that the model gives them back unchanged). A refusal
    raises aiohttp's ClientResponseError carrying the response body and headers, as the SDK's
    does, so ConnectorPool.call classifies it the same (error code, Retry-After)."""
    url = f"v3/conversations/{conversation_id[:MAX_CONVERSATION_ID]}/activities"
    async with client.client.post(url, json=payload) as response:
        text = await response.text("utf-8")
        if response.status not in (200, 201, 202):
            raise aiohttp.ClientResponseError(
                response.request_info, response.history, status=response.status,
                message=text if text and not response.ok else f"Error accessing resource '{url}'",
                headers=response.headers)
    if not text:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    return str(body.get("id") or "") if isinstance(body, dict) else ""


class ConnectorPool:
    """One connector client per service URL; every call authorised, retried, and classified."""

    def __init__(
        self,
        tokens: TokenProvider | None,
        *,
        attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        timeout: float = 20.0,
    ) -> None:
        self.tokens = tokens
        self.attempts = attempts
        # Exponential backoff with jitter, never shorter than the service's Retry-After.
        self.policy = Retry(_retryable, attempts=attempts, base=base_delay, cap=max_delay,
                            after=_retry_after)
        self.sleep = sleep
        self.timeout = timeout
        self._clients: dict[str, _PooledClient] = {}
        # Why the bot cannot get its own token, while it cannot (for /readyz and the log).
        self.credentials_problem: str | None = None
        # Until when (`monotonic`) the Bot Connector is taken to refuse our token, and why.
        self._refused: tuple[float, str] | None = None
        self.monotonic: Callable[[], float] = time.monotonic
        # The last token: (from which provider, the token, used until this `wall` time).
        self._token: tuple[TokenProvider, str, float] | None = None
        self.wall: Callable[[], float] = time.time

    async def client(self, service_url: str) -> TeamsConnectorClient:
        url = service_url if service_url.endswith("/") else service_url + "/"
        found = self._clients.get(url)
        if found is None or found.client.closed:
            session = aiohttp.ClientSession(
                base_url=url, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            found = _PooledClient(url, "", session=session)
            self._clients[url] = found
        return found

    async def _authorise(self, client: TeamsConnectorClient, refresh: bool = False) -> None:
        if self.tokens is None:
            return  # anonymous local mode: the local tool accepts unauthenticated calls
        client.client.headers["Authorization"] = f"Bearer {await self.token(refresh)}"

    async def token(self, refresh: bool = False) -> str:
        """The bot's token for the Bot Connector, or CredentialsUnusable (said once in the log
        when it starts failing, and once when it works again)."""
        assert self.tokens is not None
        kept = self._token
        if not refresh and kept is not None and kept[0] is self.tokens and self.wall() < kept[2]:
            return kept[1]  # every turn asks (the SDK's connector client): no thread hop each time
        self._token = None
        # Asking may go over the network (MSAL to Entra): no transaction stays open across it.
        await give_back()
        try:
            token = await self.tokens.get_access_token(
                "https://api.botframework.com", [CONNECTOR_SCOPE], force_refresh=refresh
            )
        except Exception as e:
            problem = token_failure(e)
            if problem != self.credentials_problem:
                log.error(f"teams credentials unusable: {problem}")
            self.credentials_problem = problem
            raise CredentialsUnusable(problem) from None
        if self.credentials_problem is not None:
            log.warning("teams credentials work again")
            self.credentials_problem = None
        expires = token_expiry(token)
        if expires is not None:
            self._token = (self.tokens, token, expires - TOKEN_MARGIN_S)
        return token

    async def call(
        self, service_url: str, op: Callable[[TeamsConnectorClient], Awaitable[T]], what: str
    ) -> T:
        """Run one connector operation; map failures to the port's errors."""
        if self._refused is not None:
            if self._refused[0] > self.monotonic():
                raise AppNotAuthorised(self._refused[1], "HTTP 401")
            self._refused = None
        # A call waits on the network: a transaction begun ahead of this request's turn and
        # not yet taken (storage.db.Opened) is given back first, never held across it.
        await give_back()
        client = await self.client(service_url)
        refreshed = False

        async def once() -> T:
            nonlocal refreshed
            await self._authorise(client)
            try:
                return await op(client)
            except aiohttp.ClientResponseError as e:
                if e.status == 401 and not refreshed and self.tokens is not None:
                    refreshed = True  # once per call, at once: the token may just have expired
                    await self._authorise(client, refresh=True)
                    return await op(client)
                raise

        def retried(e: BaseException, delay: float) -> None:
            log.info("connector call retried", extra={"op": what, "delay_s": round(delay, 3)})

        try:
            return await self.policy.run(once, sleep=self.sleep, on_retry=retried)
        except aiohttp.ClientResponseError as e:
            if e.status == 401 and self.tokens is not None:
                raise self._token_refused(what) from e
            code = _error_code(e.message)  # (the SDK keeps the body of sends and edits only)
            if e.status == 403 and code in APP_403:
                raise AppNotAuthorised(
                    f"{what}: {code}: the tenant's Teams admin disabled staffvoice (Teams admin "
                    "center, app permission policies); nothing reaches that tenant until an "
                    "admin allows the app again", f"HTTP 403 {code}") from e
            if e.status == 403:
                raise Unreachable(f"{what}: forbidden ({code or 403}): the person blocked or "
                                  "uninstalled the app, or it is not installed for them") from e
            if e.status == 404 and code == "ConversationNotFound" and what == "send":
                raise ChatGone(f"{what}: ConversationNotFound: the chat is gone") from e
            if e.status == 404 and (code == "ConversationNotFound" or (
                    what in ("send", "create conversation") and (code in GONE_404 or not code))):
                raise Unreachable(f"{what}: {code or 'not found (404)'}: the chat or the person "
                                  "is gone") from e
            if e.status not in RETRY_STATUSES:
                raise PlatformError(f"{what}: HTTP {e.status}") from e
            if e.status == 429:
                raise RateLimited(_retry_after(e) or self.policy.cap, f"{what}: throttled") from e
            raise TransientError(f"{what}: gave up after {self.attempts} attempts") from e
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            raise TransientError(f"{what}: gave up after {self.attempts} attempts") from e

    def refused(self) -> str | None:
        """Why the Bot Connector refuses our token now, while calls are answered locally."""
        if self._refused is not None and self._refused[0] > self.monotonic():
            return self._refused[1]
        return None

    def _token_refused(self, what: str) -> AppNotAuthorised:
        """The Bot Connector refused our token, a fresh one too: the app registration was
        deleted or its secret changed. Said once in the log; calls are answered locally for
        REFUSED_S, and nobody is held unreachable for it."""
        why = (f"{what}: the Bot Connector refused staffvoice's token (401): check the app "
               "registration (client id, secret, tenant) and that the bot still exists")
        if self._refused is None:
            log.error("teams: the Bot Connector refused the bot's token; not calling it "
                      "again for %d s", int(REFUSED_S))
        self._refused = (self.monotonic() + REFUSED_S, why)
        return AppNotAuthorised(why, "HTTP 401")

    async def close(self) -> None:
        for c in self._clients.values():
            await c.really_close()
        self._clients.clear()


def _retryable(e: BaseException) -> bool:
    """Throttling, a gateway's or the service's passing failure, or no answer at all."""
    if isinstance(e, aiohttp.ClientResponseError):
        return e.status in RETRY_STATUSES
    return isinstance(e, TimeoutError | aiohttp.ClientConnectionError)


def _retry_after(e: BaseException) -> float | None:
    """The seconds a throttled answer's Retry-After header asks for, if it says."""
    headers = getattr(e, "headers", None)
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class PooledClientFactory(ChannelServiceClientFactoryBase):
    """Hands the SDK adapter our long-lived connector clients instead of one per turn."""

    def __init__(self, pool: ConnectorPool) -> None:
        self.pool = pool

    async def create_connector_client(
        self,
        context: TurnContext | None,
        claims_identity: ClaimsIdentity,
        service_url: str,
        audience: str,
        scopes: list[str] | None = None,
        use_anonymous: bool = False,
    ) -> ConnectorClientBase:
        client = await self.pool.client(service_url)
        await self.pool._authorise(client)
        return client

    async def create_user_token_client(
        self, context: TurnContext, claims_identity: ClaimsIdentity, use_anonymous: bool = False
    ) -> UserTokenClientBase:
        # Staffvoice uses no user sign-in; the SDK still wants a client object per turn.
        return _NoUserTokens()


class _NoUserTokens(UserTokenClient):
    def __init__(self) -> None:  # no session: this bot never asks for user tokens
        pass

    async def close(self) -> None:
        return None
