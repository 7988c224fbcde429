"""The site's shared parts in a real browser: the sign-in page, a strict CSP, sign-in by a
one-time link and through OpenID Connect, sign-out."""

from __future__ import annotations

from tests.browser.conftest import Browser, Server, sign_in_with_link, sign_in_with_slack


async def test_a_visitor_is_sent_to_sign_in_and_the_page_is_accessible(server: Server, browser: Browser) -> None:
    page = browser.page
    resp = await page.goto(f"{server.url}/app/")
    assert page.url == f"{server.url}/app/signin"
    assert resp is not None
    csp = resp.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert await page.get_by_role("heading", level=1).inner_text() == "Sign in to the programme dashboard"
    await browser.check_accessible()


async def test_a_leader_signs_in_with_a_link_sees_the_vision_and_signs_out(server: Server, browser: Browser) -> None:
    page = browser.page
    await sign_in_with_link(server, browser, "director@northbridge.example")
    assert "network of people who know them" in await page.locator("main").inner_text()
    await browser.check_accessible()
    # The privacy notice is one link away from every dashboard page.
    await page.get_by_role("link", name="Privacy notice").click()
    assert await page.get_by_role("heading", level=1).inner_text() == "Privacy notice"
    await page.go_back()
    await page.get_by_role("button", name="Sign out").click()
    assert await page.get_by_role("heading", level=1).inner_text() == "You have signed out"
    await page.goto(f"{server.url}/app/")
    assert page.url == f"{server.url}/app/signin"


async def test_a_change_team_member_signs_in_with_slack(server: Server, browser: Browser) -> None:
    await sign_in_with_slack(server, browser, "changelead@northbridge.example")
    assert browser.page.url == f"{server.url}/app/"
    assert "Signed in as Change Programme Lead" in await browser.page.locator("header").inner_text()
    assert server.oidc.token_requests == 1 and server.oidc.refusals == []
