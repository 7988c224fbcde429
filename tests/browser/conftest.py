"""Browser tests: the real server in the test's event loop, Debian's Chromium driven by
Playwright, axe-core injected into every page, and a fake OpenID Connect provider to sign in.

Skipped, with the reason, only when Chromium (or Playwright) is missing. Playwright's own
browser download is never used: the browser is /usr/bin/chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.core import Core
from tests.web.server import Server, serve_dashboard

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("STAFFVOICE_CHROMIUM", "/usr/bin/chromium")
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
# WCAG 2.0, 2.1 and 2.2 A and AA rules (axe tags), plus axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def _why_skip() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"Chromium is not installed ({CHROMIUM}); `apt-get install -y chromium` (run by .ci/run)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_skip()
    if reason is None:
        return
    for item in items:
        if str(HERE) in str(item.path):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


@dataclass
class Browser:
    """One Chromium with a page; CSP violations the page reports are collected."""

    page: Any
    context: Any
    csp_violations: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, context: Any) -> Browser:
        """A new page in `context`, collecting the CSP violations it reports."""
        b = cls(await context.new_page(), context)
        b.page.on("console", lambda m: b.csp_violations.append(m.text)
                  if "Content Security Policy" in m.text else None)
        return b

    async def axe(self) -> list[dict[str, Any]]:
        """Run axe-core on the page; the serious and critical violations."""
        if not AXE.exists():
            pytest.fail(f"axe-core is missing: run `npm ci` in {HERE}")
        # page.evaluate runs through the DevTools protocol, outside the page's CSP, so the
        # strict policy stays on while axe runs.
        await self.page.evaluate(AXE.read_text(encoding="utf-8"))
        result = await self.page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
        return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                 "nodes": [n["target"] for n in v["nodes"]][:5]}
                for v in result["violations"] if v["impact"] in ("serious", "critical")]

    async def check_accessible(self) -> None:
        """0 serious or critical axe violations at phone and desktop widths, and no CSP report."""
        for size in (PHONE, DESKTOP):
            await self.page.set_viewport_size(size)
            bad = await self.axe()
            assert bad == [], f"axe at {size['width']}px on {self.page.url}: {bad}"
        assert self.csp_violations == [], self.csp_violations


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=["--no-sandbox"] if os.geteuid() == 0 else [])
        context = await chromium.new_context(viewport=DESKTOP, locale="en-GB")
        try:
            yield await Browser.open(context)
        finally:
            await context.close()
            await chromium.close()


async def sign_in_with_link(server: Server, browser: Browser, email: str) -> None:
    """Sign in as `email` the way a demo does: `staffvoice web login-link`, then Continue."""
    from staffvoice.web.auth import create_login_link

    link = await create_login_link(server.core, email, server.url)
    await browser.page.goto(link)
    await browser.page.get_by_role("button", name="Continue").click()
    await browser.page.wait_for_url(f"{server.url}/app/")


async def sign_in_with_slack(server: Server, browser: Browser, email: str) -> None:
    """Sign in as `email` through the fake Slack: real redirects, code exchange and ID token."""
    server.oidc.sign_in_as(email)
    await browser.page.goto(f"{server.url}/app/signin")
    async with browser.page.expect_navigation(url=lambda u: "/app/signin" not in u):
        await browser.page.get_by_role("link", name="Sign in with Slack").click()
