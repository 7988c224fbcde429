"""Sign-in and sign-out: OpenID Connect (Slack, Microsoft Entra ID), and one-time links for
local demos and tests (`staffvoice web login-link`, loopback servers only)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import timedelta

from aiohttp import web
from sqlalchemy import delete

from bot.core import Core
from bot.people import service as people
from bot.people.tables import Person
from bot.secrets import (
    FORWARDING_HEADERS,
    Unsealable,
    derive,
    is_loopback,
    keyed_hash,
    open_bytes,
    seal_bytes,
)
from staffvoice.web import oidc, sessions
from staffvoice.web.config import Provider
from staffvoice.web.site import CORE, SETTINGS, delete_cookie, render, set_cookie
from staffvoice.web.tables import WebLoginLink

FLOW_COOKIE = "sv_oidc"
FLOW_LABEL = "web-oidc-flow"
FLOW_S = 600  # the browser has ten minutes at the provider
LINK_LABEL = "web-login-link"
LINK_TTL = timedelta(minutes=15)
CLIENT = web.AppKey("oidc_client", oidc.Client)
NOT_IN_PROGRAMME = ("That account is not part of the programme. Sign in with your work account, "
                    "or ask the change team to add your work email address.")


def _provider(request: web.Request) -> Provider:
    p = request.app[SETTINGS].provider(request.match_info["provider"])
    if p is None:
        raise web.HTTPNotFound()
    return p


def _redirect_uri(request: web.Request, provider: Provider) -> str:
    base = request.app[SETTINGS].base_url or f"{request.scheme}://{request.host}"
    return f"{base}/app/auth/{provider.name}/callback"


def _seal_flow(request: web.Request, data: dict[str, object]) -> str:
    key = derive(request.app[CORE].secret, FLOW_LABEL)
    return base64.urlsafe_b64encode(seal_bytes(key, FLOW_LABEL, json.dumps(data).encode())).decode()


def _open_flow(request: web.Request) -> dict[str, object] | None:
    from staffvoice.web.site import cookie_name

    value = request.cookies.get(cookie_name(request.app[SETTINGS], FLOW_COOKIE))
    if not value:
        return None
    try:
        key = derive(request.app[CORE].secret, FLOW_LABEL)
        data = json.loads(open_bytes(key, FLOW_LABEL, base64.urlsafe_b64decode(value)))
    except (Unsealable, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _refused(request: web.Request, message: str, status: int = 403) -> web.Response:
    resp = render(request, "signin.html", status=status, title="Sign in",
                  providers=request.app[SETTINGS].providers, message=message)
    delete_cookie(resp, request.app[SETTINGS], FLOW_COOKIE)
    return resp


async def start(request: web.Request) -> web.StreamResponse:
    """GET /app/auth/{provider}/start: off to the provider, with state, nonce and PKCE kept
    in a sealed cookie that only this browser holds (Core §3.1.2.1, RFC 7636). A link, not a
    form: the CSP's form-action 'self' would stop a form's redirect to the provider, and the
    state bound to this browser's cookie already stops a forged sign-in (RFC 6749 §10.12)."""
    provider = _provider(request)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    try:
        url = await request.app[CLIENT].authorize_url(
            provider, _redirect_uri(request, provider), state, nonce, verifier)
    except oidc.SignInError as e:
        return _refused(request, str(e), status=503)
    resp = web.HTTPSeeOther(url)
    flow = {"p": provider.name, "state": state, "nonce": nonce, "v": verifier,
            "exp": time.time() + FLOW_S}
    set_cookie(resp, request.app[SETTINGS], FLOW_COOKIE, _seal_flow(request, flow), max_age=FLOW_S)
    return resp


async def callback(request: web.Request) -> web.StreamResponse:
    """GET /app/auth/{provider}/callback: the provider sends the browser back with a code."""
    provider = _provider(request)
    flow = _open_flow(request)
    q = request.query
    if "error" in q:  # Core §3.1.2.6: the person cancelled or the provider refused
        return _refused(request, f"Sign-in with {provider.label} did not complete. Please try again.",
                        status=400)
    state = q.get("state", "")
    if (flow is None or flow.get("p") != provider.name or not isinstance(flow.get("state"), str)
            or not secrets.compare_digest(str(flow["state"]), state)  # Core §3.1.2.7 / RFC 6749 §10.12
            or float(flow.get("exp", 0)) < time.time()):  # type: ignore[arg-type]
        return _refused(request, "That sign-in had expired or was not started here. Please try again.",
                        status=400)
    code = q.get("code", "")
    if not code:
        return _refused(request, "Sign-in did not complete. Please try again.", status=400)
    core = request.app[CORE]
    try:
        who = await request.app[CLIENT].sign_in(provider, code, _redirect_uri(request, provider),
                                               str(flow["nonce"]), str(flow["v"]), time.time())
    except oidc.SignInError as e:
        return _refused(request, f"Sign-in failed: {e}.", status=400)
    async with core.db.session() as s:
        person = await people.person_by_email(s, who.email)
    if person is None or person.left_on is not None:
        return _refused(request, NOT_IN_PROGRAMME)
    resp = web.HTTPSeeOther("/app/")
    delete_cookie(resp, request.app[SETTINGS], FLOW_COOKIE)
    await sessions.start(request, resp, person.id, provider.name)
    return resp


async def signout(request: web.Request) -> web.StreamResponse:
    """POST /app/signout (CSRF-checked like every form)."""
    resp = web.HTTPSeeOther("/app/signedout")
    await sessions.end(request, resp)
    return resp


async def signedout(request: web.Request) -> web.StreamResponse:
    return render(request, "signedout.html", title="Signed out")


# --- one-time links (loopback demos and tests only) ----------------------------------------------


async def create_login_link(core: Core, email: str, base_url: str) -> str:
    """A one-time sign-in link for `email`, valid for 15 minutes. The caller checks that the
    server listens on loopback only; the server checks it again when the link is used."""
    from staffvoice.errors import CliError

    token = secrets.token_urlsafe(32)
    now = core.clock.now()
    async with core.db.session() as s:
        person = await people.person_by_email(s, email)
        if person is None or person.left_on is not None:
            raise CliError(f"no current programme person has the email {email!r}")
        await s.execute(delete(WebLoginLink).where(WebLoginLink.expires_at <= now))
        s.add(WebLoginLink(id=keyed_hash(core.secret, LINK_LABEL, token), person_id=person.id,
                           expires_at=now + LINK_TTL))
        await s.commit()
    return f"{base_url.rstrip('/')}/app/auth/link?token={token}"


def _links_allowed(request: web.Request) -> bool:
    """Only on a server that listens on loopback alone, and only for a request that came from
    this machine itself: not one a reverse proxy on this machine forwarded from elsewhere."""
    return (request.app[SETTINGS].loopback_only and is_loopback(request.remote or "")
            and not any(h in request.headers for h in FORWARDING_HEADERS))


async def link_page(request: web.Request) -> web.StreamResponse:
    """GET: a button that uses the link (a GET never signs in, so link previews cannot)."""
    if not _links_allowed(request):
        raise web.HTTPNotFound()
    token = request.query.get("token", "")
    return render(request, "link.html", title="Sign in with a link", token=token)


async def link_use(request: web.Request) -> web.StreamResponse:
    """POST: the link's token is used up and its person signed in."""
    if not _links_allowed(request):
        raise web.HTTPNotFound()
    form = await request.post()
    token = str(form.get("token", ""))
    core = request.app[CORE]
    now = core.clock.now()
    async with core.db.session() as s:
        row = await s.get(WebLoginLink, keyed_hash(core.secret, LINK_LABEL, token)) if token else None
        person = await s.get(Person, row.person_id) if row is not None else None
        if row is not None:
            await s.delete(row)  # one use, whatever happens next
            await s.commit()
    if row is None or row.expires_at <= now or person is None or person.left_on is not None:
        return _refused(request, "That sign-in link has been used or has expired. Ask for a new one.",
                        status=400)
    resp = web.HTTPSeeOther("/app/")
    await sessions.start(request, resp, person.id, "link")
    return resp


def add_routes(app: web.Application) -> None:
    app[CLIENT] = oidc.Client()
    app.router.add_get("/auth/{provider}/start", start)
    app.router.add_get("/auth/{provider}/callback", callback)
    app.router.add_get("/auth/link", link_page)
    app.router.add_post("/auth/link", link_use)
    app.router.add_post("/signout", signout)
    app.router.add_get("/signedout", signedout)
