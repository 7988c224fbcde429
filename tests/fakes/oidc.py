"""A local OpenID Connect provider for the dashboard's sign-in tests (an aiohttp server on an
ephemeral port, started in the test's own event loop).

It does what Slack's and Microsoft Entra ID's providers do on the paths the dashboard uses,
and refuses what they refuse; each rule names the specification section it comes from:

- Discovery 1.0 §4: `/.well-known/openid-configuration`, whose `issuer` is exactly the base URL (§4.3).
- Core 1.0 §3.1.2.1/§3.1.2.2: the authorization request needs response_type=code, a registered
  client_id and an exactly registered redirect_uri, scope containing `openid`; a bad
  redirect_uri is never redirected to (§3.1.2.6 / RFC 6749 §4.1.2.1).
- RFC 7636 §4.3/§4.6: PKCE with S256; the token request's code_verifier must match.
- Core 1.0 §3.1.3.2 / RFC 6749 §4.1.3: the code is used once, by the client it was issued
  to, with the same redirect_uri, within its lifetime; the client authenticates (client_secret_post,
  §9 of Core).
- Core 1.0 §2 and §3.1.3.6: the ID token is a JWS signed RS256 with a key published at
  `jwks_uri` (RFC 7517), carrying iss, sub, aud, exp, iat and the request's nonce.

Who signs in is chosen by the test (`sign_in_as`), as a person would at the real provider. The
`tamper` knob makes the next ID token wrong in one way, for the tests of each check the
dashboard must make.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

CODE_TTL_S = 60  # RFC 6749 §4.1.2: short-lived (10 minutes at most)


@dataclass
class Account:
    email: str
    sub: str
    email_verified: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeOIDC:
    client_id: str = "dashboard-client"
    client_secret: str = "dashboard-secret-for-tests"
    redirect_uris: set[str] = field(default_factory=set)
    base_url: str = ""
    next_account: Account | None = None
    # One of: "", "audience", "issuer", "nonce", "expired", "signature", "alg-none".
    tamper: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0
    refusals: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def sign_in_as(self, email: str, *, verified: bool = True, **extra: Any) -> None:
        """The account the next person to reach /authorize signs in with."""
        sub = hashlib.sha256(email.encode()).hexdigest()[:20]
        self.next_account = Account(email, sub, verified, dict(extra))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks", self.jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- endpoints ----------------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        b = self.base_url
        return web.json_response({  # Discovery §3 (required metadata)
            "issuer": b, "authorization_endpoint": f"{b}/authorize", "token_endpoint": f"{b}/token",
            "jwks_uri": f"{b}/jwks", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False, use="sig", alg="RS256")]})

    def _refuse(self, why: str, status: int = 400) -> web.Response:
        self.refusals.append(why)
        return web.json_response({"error": "invalid_request", "error_description": why}, status=status)

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        redirect = q.get("redirect_uri", "")
        # Core §3.1.2.1: client_id and redirect_uri must match the registration exactly; an
        # unregistered redirect_uri gets an error page, never a redirect (RFC 6749 §4.1.2.1).
        if q.get("client_id") != self.client_id or redirect not in self.redirect_uris:
            return self._refuse("unknown client or redirect_uri")
        state = q.get("state", "")

        def back(**params: str) -> web.HTTPFound:
            return web.HTTPFound(redirect + "?" + urlencode({**params, "state": state}))

        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            raise back(error="invalid_request")  # Core §3.1.2.1, §3.1.2.6
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise back(error="invalid_request")  # RFC 7636 §4.4.1
        if self.next_account is None:
            raise back(error="access_denied")  # the person cancelled at the provider
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"account": self.next_account, "redirect_uri": redirect,
                            "nonce": q.get("nonce"), "challenge": q["code_challenge"],
                            "at": time.time()}
        raise back(code=code)

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return self._refuse("unsupported grant_type")
        # Core §9 client_secret_post: the client authenticates at the token endpoint.
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._refuse("client authentication failed", 401)
        grant = self.codes.pop(str(form.get("code", "")), None)  # RFC 6749 §4.1.2: used once
        if grant is None or time.time() - grant["at"] > CODE_TTL_S:
            return self._refuse("invalid or used code")
        if form.get("redirect_uri") != grant["redirect_uri"]:  # RFC 6749 §4.1.3
            return self._refuse("redirect_uri differs from the authorization request")
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if digest != grant["challenge"]:  # RFC 7636 §4.6
            return self._refuse("PKCE verification failed")
        return web.json_response({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                  "expires_in": 3600, "id_token": self._id_token(grant)})

    def _id_token(self, grant: dict[str, Any]) -> str:
        acct: Account = grant["account"]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url, "sub": acct.sub, "aud": self.client_id, "iat": now,
            "exp": now + 300, "nonce": grant["nonce"], "email": acct.email,
            "email_verified": acct.email_verified, **acct.extra,
        }
        tamper, self.tamper = self.tamper, ""
        key = self.key
        if tamper == "audience":
            claims["aud"] = "another-client"
        elif tamper == "issuer":
            claims["iss"] = "https://attacker.example"
        elif tamper == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif tamper == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif tamper == "signature":
            key = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, wrong key
        elif tamper == "alg-none":
            head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
            import json

            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
            return f"{head}.{body}."
        return jwt.encode({"alg": "RS256", "kid": "k1", "typ": "JWT"}, claims, key)
