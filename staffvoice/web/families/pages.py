"""/families and /young-people: the form, the thanks page, and "you said, we did".

No cookies at all: the form carries a signed, time-limited token in a hidden field instead of a
CSRF cookie, the browser's Origin and Sec-Fetch-Site must say the form is ours, and a token is
used once (a replayed form is recognised and not stored again). Every error is a page in the
visitor's language; nothing here answers with a traceback or a 500 page of the server's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.core import Core
from bot.families import service
from bot.feedback import service as fb
from bot.programme.core_sections import get_setting
from staffvoice.web.config import WebSettings, client_address
from staffvoice.web.families import strings
from staffvoice.web.site import (
    CORE,
    SETTINGS,
    Handler,
    friendly_errors,
    same_origin,
    security_headers,
    templates,
)

log = logging.getLogger("staffvoice.web.families")

PATHS = {"families": "/families", "young_people": "/young-people"}
AUDIENCE = web.AppKey("audience", str)
HONEYPOT = "website"  # hidden from people by CSS; bots that fill every field fill it
MAX_BODY = 64 * 1024  # a full form is under 10 KB; anything bigger is refused with a page
CHILDLINE = "0800 1111"


class Page:
    """What every page needs: the audience, language, words, the safety routes."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.core: Core = request.app[CORE]
        self.audience = request.app[AUDIENCE]
        self.path = PATHS[self.audience]

    async def load(self, *, themes: bool = True) -> Page:
        """Read the settings (cached by get_setting) and, for a page with the form, the themes."""
        self.themes: list[tuple[str, str]] = []
        async with self.core.db.session() as s:
            self.cfg = await service.config(s)
            self.sg = await fb.config(s)
            if themes:
                self.themes = [(t.id, t.name) for t in await fb.themes(s)]
        self.lang = strings.choose(self.request.query.get("lang"),
                                   self.request.headers.get("Accept-Language"),
                                   self.offered())
        self.t = strings.words(self.lang, self.audience, self.cfg.wording)
        return self

    def offered(self) -> tuple[str, ...]:
        """The languages this programme offers (English always), each with a strings file."""
        wanted = self.cfg.languages or strings.available()
        return tuple(lang for lang in dict.fromkeys(("en", *wanted)) if lang in strings.available())

    def url(self, suffix: str = "") -> str:
        q = f"?lang={self.lang}" if self.lang != strings.DEFAULT else ""
        return f"{self.path}{suffix}{q}"

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        offered = self.offered()
        languages = [{"code": lang, "name": strings.words(lang, self.audience, {})["lang_name"],
                      "href": f"{self.path}?lang={lang}", "current": lang == self.lang}
                     for lang in offered] if len(offered) > 1 else []
        other = "young_people" if self.audience == "families" else "families"
        ctx = {"t": self.t, "audience": self.audience, "path": self.path, "url": self.url,
               "routes": self.cfg.shown_routes(self.sg.routes), "childline": CHILDLINE, "languages": languages,
               "other_href": PATHS[other] + (f"?lang={self.lang}" if self.lang != "en" else ""),
               "html_lang": self.t.get("html_lang", "en-GB"), "session": None, "nav": [],
               "csrf": "", "title": self.t["title"], "days": self.cfg.contact_days,
               "max": service.MAX_TEXT, **context}
        html = templates().get_template(template).render(ctx)
        resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        resp.headers["Content-Language"] = ctx["html_lang"]
        resp.headers["Vary"] = "Accept-Language"
        return resp

    def message(self, status: int, key: str, *, form_link: bool = True) -> web.Response:
        return self.render("families/message.html", status=status, heading=self.t[f"{key}_title"],
                           text=self.t[f"{key}_text"], form_link=form_link)


async def _form_page(page: Page, *, values: Mapping[str, str] | None = None,
               errors: list[tuple[str, str]] | None = None, notice: str = "",
               status: int = 200) -> web.Response:
    if not page.themes:
        async with page.core.db.session() as s:
            page.themes = [(t.id, t.name) for t in await fb.themes(s)]
    # Missing names read as "" (the templates are strict about undefined names).
    return page.render("families/form.html", status=status, values=defaultdict(str, values or {}),
                       errors=errors or [], error_for=defaultdict(str, errors or []), notice=notice,
                       themes=page.themes, token=service.issue_token(
                           page.core.secret, page.audience, page.core.clock.now()),
                       honeypot=HONEYPOT)


async def form(request: web.Request) -> web.StreamResponse:
    page = await Page(request).load()
    return await _form_page(page)


def _text(form: Mapping[str, Any], name: str) -> str:
    v = form.get(name)
    return v.replace("\r\n", "\n").replace("\x00", "") if isinstance(v, str) else ""


def _check(page: Page, form: Mapping[str, Any]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The values to show again and the problems, each with the field it is about."""
    t = page.t
    values = {k: _text(form, k) for k in ("rating", "working", "better", "theme", "contact",
                                          "name", "how")}
    errors: list[tuple[str, str]] = []
    if values["rating"] and values["rating"] not in {"1", "2", "3", "4", "5"}:
        errors.append(("rating", t["err_rating"]))
    for name in ("working", "better"):
        if len(values[name]) > service.MAX_TEXT:
            errors.append((name, t["err_too_long"].format(max=service.MAX_TEXT)))
    if not errors and not values["rating"] and not values["working"].strip() \
            and not values["better"].strip():
        errors.append(("rating", t["err_empty"]))
    if values["contact"]:
        if len(values["name"]) > service.MAX_NAME:
            errors.append(("name", t["err_contact_long"]))
        elif not values["name"].strip():
            errors.append(("name", t["err_contact"]))
        if len(values["how"]) > service.MAX_HOW:
            errors.append(("how", t["err_contact_long"]))
        elif not values["how"].strip():
            errors.append(("how", t["err_contact"]))
    return values, errors


async def send(request: web.Request) -> web.StreamResponse:
    page = await Page(request).load(themes=False)
    if not same_origin(request):
        return page.message(403, "cross_site")
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return await _form_page(page, notice=page.t["expired"], status=400)
    if (request.content_length or 0) > MAX_BODY:
        return page.message(413, "too_big")
    try:
        # The server's own limit is larger (the chat platforms' payloads): this form's is 64 KB.
        form = await request.clone(client_max_size=MAX_BODY).post()
    except web.HTTPRequestEntityTooLarge:
        return page.message(413, "too_big")
    except (ValueError, LookupError, web.HTTPException):  # LookupError: a charset with no codec
        return page.message(400, "bad")
    values, errors = _check(page, form)
    token = _text(form, "token")
    now = page.core.clock.now()
    if service.check_token(page.core.secret, page.audience, token, now) is None:
        return await _form_page(page, values=values, notice=page.t["expired"], status=400)
    if errors:
        return await _form_page(page, values=values, errors=errors, status=400)
    contact = (service.Contact(values["name"].strip(), values["how"].strip())
               if values["contact"] else None)
    sub = service.Submission(
        audience=page.audience, rating=int(values["rating"]) if values["rating"] else None,
        working=values["working"].strip(), better=values["better"].strip(),
        theme_id=values["theme"] or None, contact=contact,
        honeypot=bool(_text(form, HONEYPOT).strip()), lang=page.lang)
    # Every X-Forwarded-For line, in order: a proxy may add its own line rather than extend
    # the visitor's, and the first line alone would then be whatever the visitor wrote.
    forwarded = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    address = client_address(request.remote, forwarded,
                             request.app[SETTINGS].trusted_proxies)
    outcome = await service.submit(page.core, sub, token=token, address=address)
    if outcome.status == "replayed":
        return page.message(200, "replayed")
    if outcome.status == "limited":
        return page.message(429, "limited")
    if outcome.status == "expired":
        return await _form_page(page, values=values, notice=page.t["expired"], status=400)
    return page.render("families/thanks.html", urgent=outcome.urgent, contact=contact is not None)


async def you_said_we_did(request: web.Request) -> web.StreamResponse:
    page = await Page(request).load()
    async with page.core.db.session() as s:
        responses = await service.published(s)
        names = {t.id: t.name for t in await fb.themes(s)}
    return page.render("families/yswd.html", responses=responses, theme_names=names,
                       title=page.t["yswd_title"])


def _errors_as_pages() -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Errors in the visitor's language and the page's layout; never a traceback."""
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            key = {404: "not_found", 405: "bad", 413: "too_big"}.get(e.status, "bad")
            try:
                page = await Page(request).load()
            except Exception:
                raise e from None
            resp = page.message(e.status if e.status in (404, 405, 413) else 400, key)
            if e.status == 405:
                resp.headers["Allow"] = e.headers.get("Allow", "")
            return resp
        except Exception:
            log.exception("families page failed", extra={"path": request.path[:100]})
            page = await Page(request).load()
            return page.message(500, "server_error")

    return middleware


def build(core: Core, settings: WebSettings, audience: str) -> web.Application:
    """One public sub-application. Not `new_site`: that one's CSRF sets a cookie, and these
    pages set none (the shared security headers and error pages are still used)."""
    app = web.Application(middlewares=[security_headers, friendly_errors, _errors_as_pages()],
                          client_max_size=MAX_BODY)
    app[CORE] = core
    app[SETTINGS] = settings
    app[AUDIENCE] = audience
    app.router.add_get("", form)

    async def no_slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(PATHS[audience] + (f"?{request.query_string}"
                                                          if request.query_string else ""))

    app.router.add_get("/", no_slash)
    app.router.add_post("", send)
    app.router.add_get("/you-said-we-did", you_said_we_did)
    return app


def mount(app: web.Application, core: Core, env: Mapping[str, str]) -> str:
    """Add /families and /young-people to the server; one status line."""
    settings = WebSettings.from_env(env)
    for audience, path in PATHS.items():
        app.add_subapp(path, build(core, settings, audience))
    return "families: /families and /young-people (public, no sign-in)"


async def short_link(core: Core, base_url: str) -> str:
    """The address a poster or text message points to."""
    async with core.db.session() as s:
        link = ((await get_setting(s, "families")) or {}).get("short_link") or ""
    return link or f"{base_url.rstrip('/')}/families"


