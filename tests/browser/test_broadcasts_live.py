"""The change team watches a broadcast go out: the delivery figures and the progress bar move on
the open page, without reloading it, and the status line says when sending has finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, update

from adapters.fake.port import FakePort
from bot.broadcasts import service as broadcasts
from bot.broadcasts.sender import Sender
from bot.model import ConversationRef, Message, MessageRef
from bot.people.tables import Person
from staffvoice.web.pages import broadcasts as live_page
from tests.browser.conftest import Browser, Server, sign_in_with_slack

CHANGE = "changelead@northbridge.example"
LIVE = "/app/broadcasts/live"


class HeldPort(FakePort):
    """The in-memory platform, but each send waits until the test lets one through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Semaphore(0)

    def let_through(self, n: int) -> None:
        for _ in range(n):
            self.gate.release()

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        await self.gate.acquire()
        return await super().send(conversation, message)


async def _sent(browser: Browser) -> int:
    return int(await browser.page.locator("[data-figure=sent]").first.inner_text())


@asynccontextmanager
async def _sending(server: Server) -> AsyncIterator[tuple[HeldPort, int, asyncio.Task[None]]]:
    """A broadcast to all staff held at its first send, the sender draining it in the
    background; at the end every send is let through and the sender finishes."""
    core = server.core
    port = HeldPort()
    core.add_port(port)
    async with core.db.session() as s:
        await s.execute(update(Person).values(work_pattern=None))  # nobody waits for a shift
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
        await s.commit()
    bid = await broadcasts.publish_to_staff(core, author, title="Group supervision starts",
                                            text="Every team now has a fortnightly slot.")
    total = (await broadcasts.status(core, bid)).total
    sending = asyncio.create_task(Sender(core, batch=5).drain())
    try:
        yield port, total, sending
    finally:
        port.let_through(10 * total)  # whatever else the sender posts
        await sending


async def test_the_delivered_count_rises_on_the_open_page(server: Server, browser: Browser) -> None:
    from playwright.async_api import expect

    async with _sending(server) as (port, total, _):
        await sign_in_with_slack(server, browser, CHANGE)
        page = browser.page
        await page.goto(f"{server.url}/app/broadcasts")
        assert await _sent(browser) == 0
        assert f"0 of {total} settled" in await page.locator("article").first.inner_text()
        await page.evaluate("window.notReloaded = true")
        await browser.check_accessible()

        port.let_through(3)
        await expect(page.locator("[data-figure=sent]").first).to_have_text("3")
        assert await page.evaluate("window.notReloaded") is True
        assert f"3 of {total} settled" in await page.locator("article").first.inner_text()
        bar = page.locator("article .chart-bar").first
        assert 0 < float(await bar.get_attribute("width") or 0) < 300
        # The status line is read out at most every few seconds, not at every figure.
        assert "Group supervision starts: " in await page.locator("#live-status").inner_text()

        port.let_through(total)
        await expect(page.locator("#live-status")).to_contain_text("Sending has finished", timeout=15_000)
        assert await _sent(browser) == total
        assert await page.evaluate("window.notReloaded") is True
        assert await page.locator("[data-figure=state]").first.inner_text() == "Done"
        assert float(await bar.get_attribute("width") or 0) == 300
        await browser.check_accessible()


async def test_a_busy_stream_is_tried_again_by_itself_after_retry_after(
        server: Server, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live figures are full: the page says so once, politely, waits the Retry-After the
    server gave, and follows the figures when there is room, without a reload."""
    from playwright.async_api import expect

    monkeypatch.setattr(live_page, "MAX_STREAMS", 0)
    monkeypatch.setattr(live_page, "RETRY_S", 1)
    async with _sending(server) as (port, total, sending):
        await sign_in_with_slack(server, browser, CHANGE)
        page = browser.page
        await page.goto(f"{server.url}/app/broadcasts")
        await page.evaluate("window.notReloaded = true")
        status = page.get_by_role("status")
        await expect(status).to_have_text(
            "The live figures are busy: too many pages are following them. The figures shown "
            "are as they were; trying again in 1 second.")
        await browser.check_accessible()

        monkeypatch.setattr(live_page, "MAX_STREAMS", 200)  # room again
        await expect(status).to_have_text(f"Group supervision starts: 0 of {total} settled (0%).")
        port.let_through(total)
        await expect(status).to_contain_text("Sending has finished", timeout=15_000)
        assert await _sent(browser) == total
        assert await page.evaluate("window.notReloaded") is True
        await browser.check_accessible()


async def test_a_stream_refused_again_and_again_stops_trying_and_asks_for_a_reload(
        server: Server, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.async_api import expect

    monkeypatch.setattr(live_page, "MAX_PER_SESSION", 0)  # this sign-in has too many open
    monkeypatch.setattr(live_page, "RETRY_S", 1)
    async with _sending(server) as (port, total, sending):
        await sign_in_with_slack(server, browser, CHANGE)
        page = browser.page
        tries: list[str] = []
        page.on("request", lambda r: tries.append(r.url) if LIVE in r.url else None)
        await page.goto(f"{server.url}/app/broadcasts")
        status = page.get_by_role("status")
        await expect(status).to_contain_text("This sign-in already follows the live figures")
        await expect(status).to_have_text(
            "Live figures stopped. Reload the page for the latest figures.", timeout=15_000)
        assert len(tries) == 6  # the first and five more, then it stops
        await browser.check_accessible()


async def test_a_long_retry_after_is_waited_at_most_two_minutes(
        server: Server, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.async_api import expect

    monkeypatch.setattr(live_page, "MAX_STREAMS", 0)
    monkeypatch.setattr(live_page, "RETRY_S", 3600)
    async with _sending(server) as (port, total, sending):
        await sign_in_with_slack(server, browser, CHANGE)
        await browser.page.goto(f"{server.url}/app/broadcasts")
        await expect(browser.page.get_by_role("status")).to_contain_text(
            "trying again in 120 seconds.")


async def test_a_broadcast_that_finished_while_the_page_waited_shows_its_final_figures(
        server: Server, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream that finally gets room is asked about the card still shown as sending and
    sends its final figures first: the page shows them, with no reload."""
    from playwright.async_api import expect

    monkeypatch.setattr(live_page, "MAX_STREAMS", 0)
    monkeypatch.setattr(live_page, "RETRY_S", 2)
    async with _sending(server) as (port, total, sending):
        await sign_in_with_slack(server, browser, CHANGE)
        page = browser.page
        await page.goto(f"{server.url}/app/broadcasts")
        await page.evaluate("window.notReloaded = true")
        status = page.get_by_role("status")
        await expect(status).to_contain_text("trying again in 2 seconds.")
        assert await _sent(browser) == 0
        port.let_through(10 * total)
        await sending  # every send settled while the page waits
        monkeypatch.setattr(live_page, "MAX_STREAMS", 200)
        await expect(status).to_have_text(
            f"Sending has finished. Group supervision starts: {total} of {total} settled (100%).",
            timeout=15_000)
        assert await _sent(browser) == total
        await expect(page.locator("[data-figure=state]").first).to_have_text("Done")
        assert await page.evaluate("window.notReloaded") is True
        await browser.check_accessible()
