"""Validating the Bot Connector's JWT on every inbound request.

The SDK's own validator has its key endpoints hard-wired, does not check the `serviceurl`
claim and lets some malformed tokens surface as 500s. This one checks issuer, audience (the
app id), signature against the published signing keys (RS256 only, endorsed for the
channel), expiry, and that the `serviceurl` claim names the service the activity says it
came from. Every failure is an AuthError, answered 401.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from adapters.teams.config import BOT_FRAMEWORK_ISSUER

log = logging.getLogger("staffvoice.teams.auth")
# Microsoft's documented allowance for clock skew between services.
LEEWAY_S = 300
KEYS_MAX_AGE_S = 24 * 3600
# An unknown key id triggers at most one refetch per interval (no key-fetch amplification).
REFETCH_INTERVAL_S = 300
# The Bot Connector reuses a token for many requests: the claims of tokens whose signature
# was checked are kept (by the token's exact text), with the key id its header named, so the
# RSA check and the parse of its header (PyJWT checks every character of the token in Python:
# about 600 steps a request) run once per token. Expiry, the key's presence and endorsement,
# and the serviceurl are still checked each time.
VERIFIED_TOKENS = 1024


class AuthError(Exception):
    """The request's token is missing or not acceptable (answer 401)."""


class KeysUnavailable(Exception):
    """The signing keys could not be fetched (answer 503: our problem, not the caller's)."""


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


class TokenValidator:
    """Checks bearer tokens against OpenID metadata; keys cached and refreshed."""

    def __init__(
        self,
        app_id: str,
        metadata_urls: tuple[str, ...],
        issuers: tuple[str, ...],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.metadata_urls = metadata_urls
        self.issuers = issuers
        self.clock = clock
        self._keys: dict[str, tuple[jwt.PyJWK, list[str]]] = {}
        self._verified: dict[str, tuple[str, dict[str, Any]]] = {}  # token: (kid, claims)
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _fetch(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        keys: dict[str, tuple[jwt.PyJWK, list[str]]] = {}
        try:
            for url in self.metadata_urls:
                async with self._session.get(url) as r:
                    r.raise_for_status()
                    meta = await r.json(content_type=None)
                async with self._session.get(meta["jwks_uri"]) as r:
                    r.raise_for_status()
                    jwks = await r.json(content_type=None)
                for k in jwks.get("keys", []):
                    if k.get("kid") and k.get("kty") == "RSA":
                        keys[k["kid"]] = (jwt.PyJWK(k, algorithm="RS256"), k.get("endorsements", []))
        except (TimeoutError, aiohttp.ClientError, KeyError, ValueError) as e:
            raise KeysUnavailable(type(e).__name__) from e
        self._keys = keys
        self._fetched_at = self.clock()

    async def _key(self, kid: str) -> tuple[jwt.PyJWK, list[str]]:
        async with self._lock:
            age = self.clock() - self._fetched_at
            if not self._keys or age > KEYS_MAX_AGE_S or (
                kid not in self._keys and age > REFETCH_INTERVAL_S
            ):
                await self._fetch()
        found = self._keys.get(kid)
        if found is None:
            raise AuthError("unknown signing key")
        return found

    async def validate(
        self, authorization: str | None, service_url: str | None, channel_id: str | None
    ) -> ClaimsIdentity:
        """The caller's claims, or AuthError. Never anything else for a bad token."""
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise AuthError("not a bearer token")
        # A token verified before has the same header (it is part of the signed text): its
        # algorithm was RS256 and its key id is kept with its claims.
        verified = self._verified.get(token)
        if verified is not None:
            kid, claims = verified
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as e:
                raise AuthError("malformed token") from e
            if header.get("alg") != "RS256":
                raise AuthError("algorithm not accepted")
            named = header.get("kid")
            if not isinstance(named, str) or not named:
                raise AuthError("token names no key")
            kid = named
        key, endorsements = await self._key(kid)
        if endorsements and channel_id and channel_id not in endorsements:
            raise AuthError("key not endorsed for this channel")
        if verified is None:
            try:
                claims = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=["RS256"],
                    audience=self.app_id,
                    issuer=list(self.issuers),
                    # The times are checked below, by this validator's clock, every time.
                    options={"require": ["exp", "iss", "aud"], "verify_exp": False,
                             "verify_nbf": False, "verify_iat": False},
                )
            except jwt.PyJWTError as e:
                raise AuthError(type(e).__name__) from e
            if len(self._verified) >= VERIFIED_TOKENS:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = (kid, claims)
        if not self._in_date(claims):
            self._verified.pop(token, None)
            raise AuthError("token expired or not yet valid")
        claimed = claims.get("serviceurl")
        if claimed is None and claims.get("iss") == BOT_FRAMEWORK_ISSUER:
            raise AuthError("no serviceurl claim")
        if claimed is not None and (
            not isinstance(claimed, str)
            or not service_url
            or _norm_url(claimed) != _norm_url(service_url)
        ):
            raise AuthError("serviceurl claim does not match the activity")
        return ClaimsIdentity(claims, authentication_type="Bearer", security_token=token)

    def _in_date(self, claims: dict[str, Any]) -> bool:
        """Not expired, already valid and not issued in the future, allowing LEEWAY_S of skew."""
        now = self.clock()

        def at_most(claim: str, limit: float) -> bool:
            value = claims.get(claim)
            return value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                                     and value <= limit)

        exp = claims.get("exp")
        return (isinstance(exp, int | float) and not isinstance(exp, bool)
                and now <= exp + LEEWAY_S
                and at_most("nbf", now + LEEWAY_S) and at_most("iat", now + LEEWAY_S))
