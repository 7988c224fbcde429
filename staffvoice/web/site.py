"""What every web page shares: templates, security headers, sessions, CSRF and error pages.

A site is an aiohttp sub-application with these middlewares; the dashboard (/app/) is one and a
public page (such as /families) can be another, built with `new_site`. Pages render through
`render`, which adds the CSRF token and the signed-in person to every template.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.core import Core
from bot.secrets import keyed_hash
from staffvoice.web.config import WebSettings

if TYPE_CHECKING:  # Jinja is imported by the first page drawn, not by every serving process
    import jinja2

log = logging.getLogger("staffvoice.web")

CORE = web.AppKey("core", Core)
SETTINGS = web.AppKey("web_settings", WebSettings)
HOME = web.AppKey("home_url", str)  # where error pages point people back to
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_URL = "/static/"

# No inline scripts or styles anywhere, no framing, forms only to ourselves; pages need no
# JavaScript (the broadcasts page adds its own static script to this, see pages/broadcasts.py). Images are our own (inline SVG charts are markup, not images).
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a page's address never travels to another site
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "X-Frame-Options": "DENY",
}
ANON_COOKIE = "sv_anon"  # binds the CSRF token of a visitor who has not signed in
CSRF_FIELD = "csrf"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM = 64 * 1024  # the largest form a dashboard page sends is a few KB

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Session:
    """The signed-in person for this request."""

    token_id: str  # the keyed hash (row id): binds CSRF tokens
    person_id: str
    display_name: str
    email: str
    team_id: str | None
    roles: frozenset[str]
    expires_at: datetime


SESSION: web.RequestKey[Session | None] = web.RequestKey("session", object)  # type: ignore[arg-type]
NAV = web.RequestKey("nav", list)  # type: ignore[type-arg]
NEW_ANON = web.RequestKey("new_anon", str)
CSRF_EXEMPT = web.RequestKey("csrf_exempt", bool)

_env: jinja2.Environment | None = None


def templates() -> jinja2.Environment:
    """The one template environment (autoescaped HTML; undefined names are errors)."""
    global _env
    if _env is None:
        import jinja2

        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=jinja2.select_autoescape(["html", "svg"]),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _env.globals["static"] = lambda name: STATIC_URL + name
    return _env


def cookie_name(settings: WebSettings, base: str) -> str:
    """`__Host-` names on https (bound to this host, path /, Secure): a sibling subdomain
    cannot plant one."""
    return f"__Host-{base}" if settings.base_url.startswith("https://") else base


def set_cookie(resp: web.StreamResponse, settings: WebSettings, base: str, value: str,
               max_age: int | None = None) -> None:
    """A cookie as every web cookie here is: HttpOnly, Secure, SameSite=Lax, path /."""
    resp.set_cookie(cookie_name(settings, base), value, max_age=max_age, path="/",
                    httponly=True, secure=True, samesite="Lax")


def delete_cookie(resp: web.StreamResponse, settings: WebSettings, base: str) -> None:
    resp.del_cookie(cookie_name(settings, base), path="/", secure=True, httponly=True,
                    samesite="Lax")


# --- CSRF ------------------------------------------------------------------------------------


def _binding(request: web.Request) -> str | None:
    """What a CSRF token is bound to: the session, else the visitor's anonymous cookie."""
    session = request.get(SESSION)
    if session is not None:
        return f"s:{session.token_id}"
    anon = request.cookies.get(cookie_name(request.app[SETTINGS], ANON_COOKIE))
    return f"a:{anon}" if anon and len(anon) >= 32 else None


def csrf_token(request: web.Request) -> str:
    """The token every form on this page carries in a hidden `csrf` field."""
    binding = _binding(request)
    if binding is None:  # a first visit: bind to a new anonymous cookie, set by render()
        anon = secrets.token_urlsafe(32)
        request[NEW_ANON] = anon
        binding = f"a:{anon}"
    return keyed_hash(request.app[CORE].secret, "csrf", binding)


def _csrf_ok(request: web.Request, sent: str) -> bool:
    binding = _binding(request)
    if binding is None or not sent:
        return False
    expected = keyed_hash(request.app[CORE].secret, "csrf", binding)
    return hmac.compare_digest(expected, sent)


def same_origin(request: web.Request) -> bool:
    """Fetch metadata and Origin, when the browser sends them, must say the form is ours."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        settings = request.app[SETTINGS]
        ours = settings.base_url or f"{request.scheme}://{request.host}"
        return origin == ours or origin == f"{request.scheme}://{request.host}"
    return True


# --- rendering -------------------------------------------------------------------------------


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A page from `template`, with the signed-in person, navigation and a CSRF token."""
    session = request.get(SESSION)
    ctx = {"session": session, "csrf": csrf_token(request), "path": request.path,
           "nav": request.get(NAV, []), **context}
    html = templates().get_template(template).render(ctx)
    resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    anon = request.get(NEW_ANON)
    if anon:
        set_cookie(resp, request.app[SETTINGS], ANON_COOKIE, anon)
    return resp


def error_page(request: web.Request, status: int, title: str, text: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, text=text,
                  home=request.app.get(HOME, "/app/"))


ERRORS = {
    400: ("Something in that request was not right", "Go back, check what you entered and try again."),
    403: ("You cannot see this page", "Your roles in the programme do not include this page. "
          "If you think they should, ask the change team."),
    404: ("Page not found", "Check the address, or start again from the home page."),
    405: ("That did not work", "Go back and use the page's own buttons and links."),
    413: ("That was too long", "Go back, shorten what you wrote and try again."),
}


# --- middlewares -----------------------------------------------------------------------------


def secure(request: web.Request, resp: web.StreamResponse) -> None:
    """The CSP and friends on a response; pages are never cached (they show personal data).
    The middleware does it for every response; a streamed one calls it before `prepare`."""
    for k, v in HEADERS.items():
        resp.headers.setdefault(k, v)
    settings = request.app[SETTINGS]
    if settings.base_url.startswith("https://"):
        resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if not request.path.startswith(STATIC_URL):
        resp.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every response: `secure`."""
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        resp = e
    if not resp.prepared:
        secure(request, resp)
    return resp


@web.middleware
async def friendly_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages in the site's layout; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status in ERRORS and e.status >= 400:
            title, text = ERRORS[e.status]
            resp = error_page(request, e.status, title,
                              (e.text or text) if getattr(e, "friendly", False) else text)
            if e.status == 405:
                resp.headers["Allow"] = e.headers.get("Allow", "")
            return resp
        raise
    except Exception:
        log.exception("web page failed", extra={"path": request.path[:200]})
        return error_page(request, 500, "Sorry, something went wrong on our side",
                          "Nothing was changed. Please try again in a minute.")


@web.middleware
async def csrf_protect(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every unsafe request must carry this visitor's CSRF token and come from our pages."""
    if request.method in UNSAFE and not request.get(CSRF_EXEMPT):
        ok = same_origin(request)
        if ok:
            try:
                form = await request.post()
            except (ValueError, LookupError):  # LookupError: a charset with no codec
                raise web.HTTPBadRequest() from None
            sent = form.get(CSRF_FIELD)
            ok = isinstance(sent, str) and _csrf_ok(request, sent)
        if not ok:
            resp = error_page(request, 403, "This form has expired",
                              "Nothing was saved. Go back, reload the page and try again.")
            return resp
    return await handler(request)


@web.middleware
async def sane_input(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A form over MAX_FORM is refused before it is read (the server's own limit is Slack's
    1 MB, and a sub-application's `client_max_size` is not applied by aiohttp); one sent in
    chunks, with no length, is not a browser's form. A NUL character in the address, the query
    or a form's field is a bad request: no page expects one, and PostgreSQL refuses any text
    holding one (an id with `%00` in it was a 500 on every page that looks ids up). Forms are
    read here once (aiohttp keeps them for the handlers)."""
    if request.method in UNSAFE and request.body_exists:
        if request.content_length is None:
            raise web.HTTPBadRequest()
        if request.content_length > MAX_FORM:
            raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length)
    bad = "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items())
    if not bad and request.method in UNSAFE:
        try:
            form = await request.post()
        except (ValueError, LookupError):  # LookupError: a charset with no codec
            raise web.HTTPBadRequest() from None
        bad = any("\x00" in k or (isinstance(v, str) and "\x00" in v) for k, v in form.items())
    if bad:
        raise web.HTTPBadRequest()
    return await handler(request)


def friendly(exc: web.HTTPException, text: str) -> web.HTTPException:
    """An HTTP error whose page says `text` instead of the standard words."""
    exc.text = text
    exc.friendly = True  # type: ignore[attr-defined]
    return exc


def new_site(core: Core, settings: WebSettings, *extra: Any, home: str = "/app/") -> web.Application:
    """A sub-application with the shared middlewares (`extra` ones run inside them, after the
    session is known). `home`: where its error pages send people back to. A public surface
    (e.g. /families) builds its own with this, extends base.html (overriding the `brand` and
    `footer` blocks) and mounts with `app.add_subapp`; /static/ is added once by the dashboard."""
    from staffvoice.web.sessions import load_session

    app = web.Application(middlewares=[security_headers, friendly_errors, sane_input, load_session,
                                       csrf_protect, *extra], client_max_size=MAX_FORM)
    app[CORE] = core
    app[SETTINGS] = settings
    app[HOME] = home
    return app


def add_static(app: web.Application) -> None:
    """The shared stylesheet and images under /static/ (with the security headers)."""

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if request.path.startswith(STATIC_URL):
            for k, v in HEADERS.items():
                resp.headers.setdefault(k, v)
            resp.headers.setdefault("Cache-Control", "public, max-age=3600")
        return resp

    app.middlewares.append(headers)
    app.router.add_static(STATIC_URL, STATIC, append_version=False)
