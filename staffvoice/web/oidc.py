"""OpenID Connect sign-in (authorization code flow with PKCE) and ID-token verification.

Keys and signatures through joserfc, the JOSE library of the Authlib project (Authlib's own
`authlib.jose` is deprecated in its favour); the HTTP calls through aiohttp. Each check below
names the rule of OpenID Connect Core 1.0 (§3.1.3.7 "ID Token Validation") or Discovery 1.0 it
implements.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from bot.secrets import is_loopback
from staffvoice.web.config import Provider

if TYPE_CHECKING:  # joserfc is imported at the first sign-in, not by every serving process
    from joserfc.jwk import KeySet

DISCOVERY_TTL_S = 3600.0
CLOCK_SKEW_S = 120  # leeway for exp/iat between our clock and the provider's
MAX_AGE_S = 600  # an ID token issued longer ago than this is not a fresh sign-in
ALGORITHMS = ["RS256"]  # Core §3.1.3.7 (7): the algorithm registered for the client (the default)
TIMEOUT = aiohttp.ClientTimeout(total=10)


class SignInError(Exception):
    """Sign-in failed; `str()` is safe to show (it never repeats a token or a claim's value)."""


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class Identity:
    """What a verified ID token says about who signed in."""

    subject: str
    email: str


def _https_or_loopback(url: str) -> bool:
    """Discovery §3 and Core §3.1.2.1: endpoints are https; plain http only on loopback (tests)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


class Client:
    """Discovery and keys of each provider, cached; one per dashboard."""

    def __init__(self) -> None:
        self._discovery: dict[str, tuple[float, Discovery]] = {}
        self._keys: dict[str, KeySet] = {}

    async def discovery(self, provider: Provider) -> Discovery:
        cached = self._discovery.get(provider.issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        url = provider.issuer + "/.well-known/openid-configuration"  # Discovery §4
        doc = await _get_json(url)
        # Discovery §4.3: the issuer in the document is exactly the issuer we asked.
        if doc.get("issuer") != provider.issuer:
            raise SignInError(f"{provider.label} sign-in is misconfigured (issuer mismatch)")
        try:
            d = Discovery(doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"],
                          doc["jwks_uri"])
        except KeyError:
            raise SignInError(f"{provider.label} sign-in is misconfigured (discovery incomplete)") from None
        for u in (d.authorization_endpoint, d.token_endpoint, d.jwks_uri):
            if not _https_or_loopback(u):
                raise SignInError(f"{provider.label} sign-in is misconfigured (endpoint not https)")
        self._discovery[provider.issuer] = (time.monotonic(), d)
        return d

    async def keys(self, d: Discovery, *, refresh: bool = False) -> KeySet:
        if refresh or d.jwks_uri not in self._keys:
            from joserfc.jwk import KeySet

            self._keys[d.jwks_uri] = KeySet.import_key_set(await _get_json(d.jwks_uri))  # type: ignore[arg-type]
        return self._keys[d.jwks_uri]

    async def authorize_url(self, provider: Provider, redirect_uri: str, state: str, nonce: str,
                            verifier: str) -> str:
        """Where to send the browser (Core §3.1.2.1; PKCE, RFC 7636 §4.3)."""
        d = await self.discovery(provider)
        query = {"response_type": "code", "client_id": provider.client_id,
                 "redirect_uri": redirect_uri, "scope": provider.scope, "state": state,
                 "nonce": nonce, "code_challenge": challenge(verifier),
                 "code_challenge_method": "S256"}
        return d.authorization_endpoint + ("&" if "?" in d.authorization_endpoint else "?") + urlencode(query)

    async def sign_in(self, provider: Provider, code: str, redirect_uri: str, nonce: str,
                      verifier: str, now: float) -> Identity:
        """Exchange the code (Core §3.1.3.1) and verify the ID token it returns (§3.1.3.7)."""
        d = await self.discovery(provider)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": provider.client_id, "client_secret": provider.client_secret,
                "code_verifier": verifier}
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http, \
                    http.post(d.token_endpoint, data=form, headers={"Accept": "application/json"}) as r:
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise SignInError(f"{provider.label} did not answer; please try again") from None
        token = body.get("id_token") if isinstance(body, dict) else None
        # Core §3.1.3.3: a successful token response carries the ID token.
        if not isinstance(token, str):
            raise SignInError(f"{provider.label} did not complete the sign-in; please try again")
        claims = await self.verify(provider, d, token, nonce, now)
        return _identity(provider, claims)

    async def verify(self, provider: Provider, d: Discovery, token: str, nonce: str,
                     now: float) -> dict[str, Any]:
        """The ID token's claims, once every rule of Core §3.1.3.7 holds."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            try:
                decoded = jwt.decode(token, await self.keys(d), algorithms=ALGORITHMS)
            except JoseError as e:
                if "kid" not in str(e).lower() and "key" not in str(e).lower():
                    raise
                # §10.1.1: a provider rotates keys; fetch the set again once for a new kid.
                decoded = jwt.decode(token, await self.keys(d, refresh=True), algorithms=ALGORITHMS)
        except (JoseError, ValueError):
            # §3.1.3.7 (6): the signature must verify with the provider's key, alg RS256 (7).
            raise SignInError("the sign-in could not be verified; please try again") from None
        c = decoded.claims
        aud = c.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        checks = [
            c.get("iss") == d.issuer,  # (2) iss is exactly the issuer
            provider.client_id in audiences,  # (3) aud contains our client_id
            # (4)/(5) several audiences need azp, and an azp must be us
            (len(audiences) == 1 and "azp" not in c) or c.get("azp") == provider.client_id,
            isinstance(c.get("exp"), int | float) and now < c["exp"] + CLOCK_SKEW_S,  # (9)
            isinstance(c.get("iat"), int | float)
            and now - MAX_AGE_S <= c["iat"] <= now + CLOCK_SKEW_S,  # (10) recently issued
            isinstance(c.get("nonce"), str) and secrets.compare_digest(c["nonce"], nonce),  # (11)
            isinstance(c.get("sub"), str) and bool(c["sub"]),  # §2: sub is required
        ]
        if not all(checks):
            raise SignInError("the sign-in could not be verified; please try again")
        return dict(c)


def _identity(provider: Provider, c: dict[str, Any]) -> Identity:
    """The verified work email. Slack sends `email_verified`; Entra ID's `email` is verified only
    when the domain owner verified it (the optional `xms_edov` claim), and only people of the
    configured tenant (`tid`) may sign in."""
    email = c.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInError(f"{provider.label} did not tell us your work email address")
    if provider.name == "entra":
        verified = c.get("tid") == provider.tenant and (c.get("xms_edov") in (True, 1, "1", "true")
                                                          or c.get("email_verified") is True)
    else:
        verified = c.get("email_verified") is True
    if not verified:
        raise SignInError(f"{provider.label} did not confirm that your email address is verified")
    return Identity(str(c["sub"]), email.strip().lower())


def challenge(verifier: str) -> str:
    """RFC 7636 §4.2: S256 code challenge."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def _get_json(url: str) -> dict[str, Any]:
    if not _https_or_loopback(url):
        raise SignInError("sign-in is misconfigured (an address that is not https)")
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.get(url) as r:
            if r.status != 200:
                raise SignInError("the sign-in provider did not answer; please try again")
            data = await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise SignInError("the sign-in provider did not answer; please try again") from None
    if not isinstance(data, dict):
        raise SignInError("the sign-in provider answered something unexpected")
    return data
