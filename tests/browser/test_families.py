"""The families and young people pages in a real browser, with and without JavaScript: a parent
and a young person fill in the form and send it, see the thanks page or who to call, ask to be
contacted; a bot fills the hidden field; one connection sends too much. axe-core checks every
page at phone and desktop widths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.feedback.tables import FeedbackItem
from bot.programme.core_sections import set_setting
from tests.browser.conftest import DESKTOP, Browser, Server
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, dump, release

CONCERN = "My mum hits me when she is angry and I am scared to go home."


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
async def person(request: pytest.FixtureRequest, browser: Browser) -> AsyncIterator[Browser]:
    """A browser with JavaScript on, or off (a cheap phone, or a careful person)."""
    if request.param:
        yield browser
        return
    context = await browser.context.browser.new_context(viewport=DESKTOP, locale="en-GB",
                                                        java_script_enabled=False)
    try:
        yield await Browser.open(context)
    finally:
        await context.close()


async def items(server: Server) -> list[FeedbackItem]:
    async with server.core.db.session() as s:
        return list((await s.execute(select(FeedbackItem))).scalars())


async def test_a_parent_fills_in_the_form_and_sees_thanks(server: Server, person: Browser, browser: Browser) -> None:
    page = person.page
    resp = await page.goto(f"{server.url}/families")
    assert resp is not None and "set-cookie" not in resp.headers
    assert await page.get_by_role("heading", level=1).inner_text() == "Tell us how things are going"
    assert "call 999" in await page.locator("main").inner_text()
    await browser.check_accessible() if person is browser else None
    await page.get_by_text("Good", exact=True).click()
    await page.get_by_label("What is working well?").fill("Our worker listens and comes on time.")
    await page.get_by_label("What could be better?").fill("Meetings are in school time.")
    await page.get_by_label("What is it mostly about?").select_option(label="Family network meetings")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", level=1).inner_text() == "Thank you"
    assert await page.context.cookies() == []
    [item] = await items(server)
    assert item.source == "families" and item.theme_id == "family-networks"
    assert "Rating: 4 out of 5" in item.text and "comes on time" in item.text
    if person is not browser:  # no JavaScript: axe needs it, so check the same page with it on
        await browser.page.goto(f"{server.url}/families")
    await browser.check_accessible()


async def test_a_young_person_who_discloses_sees_who_to_call_and_the_leads_are_alerted(
        server: Server, person: Browser, browser: Browser) -> None:
    leads = FakeDriver(server.core)
    page = person.page
    await page.goto(f"{server.url}/young-people")
    assert "0800 1111" in await page.locator("main").inner_text()
    await page.get_by_label("What could be better?").fill(CONCERN)
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", level=1).inner_text() == "You may need help now"
    text = await page.locator("main").inner_text()
    assert "0800 1111" in text and "999" in text and "front door" in text.lower()
    for lead in LEADS:
        urgent = [m for m in leads.seen(lead) if m.startswith("URGENT")]
        assert len(urgent) == 1 and "young person" in urgent[0]
    if person is browser:
        await browser.check_accessible()


async def test_a_parent_asks_to_be_contacted_and_only_the_change_team_can_read_it(
        server: Server, person: Browser) -> None:
    page = person.page
    await page.goto(f"{server.url}/families")
    await page.get_by_label("What could be better?").fill("Nobody rang me back about the meeting.")
    await page.get_by_label("I would like someone to contact me").check()
    await page.get_by_label("Your name").fill("Robin Example")
    await page.get_by_label("Your phone number or email").fill("robin@example.org")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_load_state()
    assert "You asked us to contact you" in await page.locator("main").inner_text()
    assert "robin@example.org" not in repr(await dump(server.core.db))  # sealed
    [item] = await items(server)
    chat = FakeDriver(server.core)
    await release(server.core)
    await chat.say(CHANGE, f"families contact #{item.id[:6]}")
    assert "robin@example.org" in chat.seen(CHANGE)[-1]


async def test_an_empty_form_shows_an_error_summary_that_is_accessible(server: Server, browser: Browser) -> None:
    page = browser.page
    await page.goto(f"{server.url}/young-people")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", name="There is a problem").is_visible()
    await browser.check_accessible()
    await page.get_by_role("link", name="Choose a number or write something in a box first.").click()
    assert await items(server) == []


async def test_a_bot_that_fills_the_hidden_field_lands_in_the_spam_queue(server: Server, browser: Browser) -> None:
    page = browser.page
    await page.goto(f"{server.url}/families")
    assert not await page.locator("#website").is_visible()
    await page.get_by_label("What is working well?").fill("cheap watches")
    await page.evaluate("document.getElementById('website').value = 'http://spam.example'")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", level=1).inner_text() == "Thank you"
    [item] = await items(server)
    assert item.status == "spam"


async def test_one_connection_sending_too_much_is_stopped_for_the_day(server: Server, browser: Browser) -> None:
    async with server.core.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 1})
    page = browser.page
    for _ in range(2):
        await page.goto(f"{server.url}/families")
        await page.get_by_text("OK", exact=True).click()
        await page.get_by_role("button", name="Send").click()
        await page.wait_for_load_state()
    assert await page.get_by_role("heading", level=1).inner_text() == \
        "We cannot take more messages from here today"
    assert len(await items(server)) == 1
    await browser.check_accessible()


async def test_the_other_pages_are_accessible(server: Server, browser: Browser) -> None:
    page = browser.page
    for path in ("/families?lang=cy", "/young-people", "/families/you-said-we-did", "/families/missing"):
        await page.goto(f"{server.url}{path}")
        await browser.check_accessible()
    await page.goto(f"{server.url}/families")
    await page.get_by_role("link", name="Cymraeg").click()
    assert await page.get_by_role("button", name="Anfon").is_visible()
