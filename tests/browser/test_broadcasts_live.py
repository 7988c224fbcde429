"""The change team watches a broadcast go out: the delivery figures and the progress bar move on
the open page, without reloading it, and the status line says when sending has finished."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update

from adapters.fake.port import FakePort
from bot.broadcasts import service as broadcasts
from bot.broadcasts.sender import Sender
from bot.model import ConversationRef, Message, MessageRef
from bot.people.tables import Person
from tests.browser.conftest import Browser, Server, sign_in_with_slack

CHANGE = "changelead@northbridge.example"


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


async def test_the_delivered_count_rises_on_the_open_page(server: Server, browser: Browser) -> None:
    from playwright.async_api import expect

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
    finally:
        port.let_through(total)
        await sending
