"""`/privacy` and `/terms`: the pages the Teams app package links to (its privacy and terms of
use URLs). Plain, accessible HTML generated from the programme file, no JavaScript."""

from __future__ import annotations

import html

from aiohttp import web

from bot.core import Core
from bot.privacy import notice
from bot.programme.core_sections import get_setting

STYLE = ("body{font-family:system-ui,Arial,sans-serif;line-height:1.5;margin:0;color:#0b0c0c}"
         "main{max-width:40rem;margin:0 auto;padding:1.5rem}"
         "a{color:#1d4f91}a:focus{outline:3px solid #fd0;outline-offset:0}")


def page(title: str, programme: str, paragraphs: list[str], more: str = "") -> str:
    """One page: a heading, the programme's name, paragraphs (blank lines split them)."""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        "<!doctype html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)} – {html.escape(programme)}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(title)}</h1>\n<p><strong>{html.escape(programme)}</strong></p>\n"
        f"{body}\n{more}</main>\n</body>\n</html>\n"
    )


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


class Pages:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def _programme(self) -> dict[str, str]:
        async with self.core.db.session() as s:
            return dict(await get_setting(s, "programme", {}) or {})

    async def privacy(self, _request: web.Request) -> web.Response:
        p = await self._programme()
        async with self.core.db.session() as s:
            text = await notice.text_of(s)  # the programme's notice and its retention periods
        return web.Response(text=page("Privacy notice", str(p.get("name") or "staffvoice"),
                                      paragraphs(text)),
                            content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def terms(self, _request: web.Request) -> web.Response:
        p = await self._programme()
        text = (
            "This chat bot is for staff taking part in the change programme: answering pulse "
            "questions, giving feedback, following the roadmap and its early wins.\n\n"
            "Anonymous feedback is not a referral route. If a child may be at risk, or you "
            "have a concern about a colleague, use the council's safeguarding routes at once; "
            "the bot shows them before you send feedback.\n\n"
            "Please be respectful: feedback is read by the change team. Do not name or "
            "describe colleagues, children or families in a way that identifies them."
        )
        more = '<p><a href="/privacy">How we use your information (privacy notice)</a></p>\n'
        return web.Response(text=page("Terms of use", str(p.get("name") or "staffvoice"),
                                      paragraphs(text), more),
                            content_type="text/html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, core: Core) -> None:
    pages = Pages(core)
    app.router.add_get("/privacy", pages.privacy)
    app.router.add_get("/terms", pages.terms)
