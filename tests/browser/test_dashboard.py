"""The dashboard in a real browser, as each role: sign in through the fake Slack provider, open
every page, see what the role may see and a 403 page for the rest, use the forms, and check
every page with axe-core at phone and desktop widths."""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest

from bot.broadcasts import service as broadcasts
from bot.core import Core
from bot.feedback import service as fb
from bot.people.service import person_by_email
from tests.browser.conftest import Browser, Server, sign_in_with_slack
from tests.conftest import MONDAY_10
from tests.test_feedback_helpers import release
from tests.test_reports_seed import emails, everyone_answers, seed_round

WEEK = timedelta(days=7)
LEADER = "director@northbridge.example"
CHANGE = "changelead@northbridge.example"
TEAM_LEAD = "lead.assessment@northbridge.example"
SAFEGUARDING = "safeguarding.lead@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"
WORKLOAD_TEXT = "Caseloads in the assessment team have gone up again this month."
URGENT_TEXT = "A child told me their parent hit them and nobody followed it up."

# page -> the roles (by email) that see it; everyone else gets 403.
PAGES = {
    "/app/": {LEADER, CHANGE, TEAM_LEAD, SAFEGUARDING, PRACTITIONER},
    "/app/roadmap": {LEADER, CHANGE, TEAM_LEAD, SAFEGUARDING},
    "/app/roadmap/group-supervision": {LEADER, CHANGE, TEAM_LEAD, SAFEGUARDING},
    "/app/pulse": {LEADER, CHANGE, TEAM_LEAD},
    "/app/feedback": {CHANGE, SAFEGUARDING},
    "/app/safeguarding": {SAFEGUARDING},
    "/app/broadcasts": {CHANGE},
    "/app/team": {TEAM_LEAD, LEADER},  # the director leads Children's Services
}


async def _person(core: Core, email: str) -> str:
    async with core.db.session() as s:
        p = await person_by_email(s, email)
        assert p is not None
        return p.id


@pytest.fixture
async def seeded(server: Server) -> Server:
    """Three closed pulse rounds everyone answered, feedback (one urgent), a broadcast."""
    core = server.core
    everyone = await emails(core)
    for weeks, score in ((3, 2), (2, 3), (1, 5)):  # favourable: 0%, 0%, 100%
        await seed_round(core, MONDAY_10 - weeks * WEEK, everyone_answers(everyone, default=score, comments=12))
    author = await _person(core, PRACTITIONER)
    await fb.store(core, author, text=WORKLOAD_TEXT, theme_id="workload", replies=True, concerns=())
    await fb.store(core, await _person(core, "practitioner2@northbridge.example"), text=URGENT_TEXT,
                   theme_id=None, replies=False, concerns=("harm",))
    await release(core)
    await broadcasts.publish_to_staff(core, await _person(core, CHANGE), title="Group supervision starts",
                                      text="Every team now has a fortnightly group supervision slot.")
    return server


@pytest.mark.parametrize("email", [LEADER, CHANGE, TEAM_LEAD, SAFEGUARDING, PRACTITIONER],
                         ids=["leader", "change-team", "team-lead", "safeguarding-lead", "practitioner"])
async def test_each_role_sees_its_pages_and_is_refused_the_rest(seeded: Server, browser: Browser, email: str) -> None:
    await sign_in_with_slack(seeded, browser, email)
    page = browser.page
    assert page.url == f"{seeded.url}/app/"
    nav = await page.locator("nav[aria-label=Dashboard]").inner_text()
    for path, allowed in PAGES.items():
        resp = await page.goto(seeded.url + path)
        assert resp is not None
        heading = await page.get_by_role("heading", level=1).inner_text()
        if email in allowed:
            assert resp.status == 200, (path, heading)
            await browser.check_accessible()
        else:
            assert resp.status == 403, path
            assert heading == "You cannot see this page"
            assert "feedback-text" not in await page.content()
    # The navigation offers exactly the pages this role may open.
    for path, label in (("/app/pulse", "Pulse"), ("/app/feedback", "Feedback"),
                        ("/app/safeguarding", "Urgent queue"), ("/app/broadcasts", "Broadcasts"),
                        ("/app/team", "My team")):
        assert (label in nav) == (email in PAGES[path]), (label, nav)


async def test_a_leader_reads_trends_with_their_figures_and_downloads_the_csv(seeded: Server, browser: Browser) -> None:
    await sign_in_with_slack(seeded, browser, LEADER)
    page = browser.page
    await page.goto(f"{seeded.url}/app/pulse?group=team:assessment")
    directory = os.environ.get("STAFFVOICE_SCREENSHOT_DIR")  # the README's picture
    if directory:
        await page.locator("#trend-1-t").evaluate("e => e.closest('section').scrollIntoView()")
        await page.screenshot(path=str(Path(directory) / "dashboard-pulse.png"))
    await page.goto(f"{seeded.url}/app/pulse")
    main = page.locator("main")
    text = await main.inner_text()
    assert "Round 3" in text and "Groups compared" in text
    chart = page.get_by_role("img", name="I feel listened to about what is and is not working in the change. - Everyone")
    assert await chart.count() == 1
    await page.get_by_text("The figures in this chart").first.click()
    assert "100" in await page.locator("details table").first.inner_text()  # round 3: all answered 5
    assert "+100" in text  # the change since the last round
    assert "Comment number" in text  # 12 commented: at least min_comments
    async with page.expect_download() as dl:
        await page.get_by_role("link", name="Download this round as CSV").click()
    rows = list(csv.reader(io.StringIO(Path(await (await dl.value).path()).read_text())))
    assert rows[0] == ["round", "group", "label", "question_id", "question", "measure", "value"]
    assert {r[1] for r in rows[1:]} >= {"all", "team:assessment", "team:front-door"}


async def test_a_team_lead_sees_only_their_own_team_and_the_whole(seeded: Server, browser: Browser) -> None:
    await sign_in_with_slack(seeded, browser, TEAM_LEAD)
    page = browser.page
    await page.goto(f"{seeded.url}/app/team")
    assert "Assessment Team" in await page.locator("main h2").first.inner_text()
    resp = await page.goto(f"{seeded.url}/app/pulse?group=team:front-door")
    assert resp is not None and resp.status == 403
    await page.goto(f"{seeded.url}/app/pulse?group=team:assessment")
    options = await page.locator("#group option").all_inner_texts()
    assert sorted(options) == ["Assessment Team", "Everyone"]
    async with page.expect_download() as dl:
        await page.get_by_role("link", name="Download this round as CSV").click()
    groups = {r[1] for r in csv.reader(io.StringIO(Path(await (await dl.value).path()).read_text()))}
    assert groups - {"group"} == {"all", "team:assessment"}


async def test_the_change_team_replies_and_publishes_you_said_we_did(seeded: Server, browser: Browser) -> None:
    await sign_in_with_slack(seeded, browser, CHANGE)
    page = browser.page
    await page.goto(f"{seeded.url}/app/feedback")
    assert WORKLOAD_TEXT in await page.locator("main").inner_text()
    # An empty reply is refused with an error summary that links to the field; nothing is lost.
    await page.get_by_role("button", name="Send reply").click()
    assert "Write a reply. Nothing was sent." in await page.get_by_role("alert").inner_text()
    await browser.check_accessible()
    await page.get_by_label("Reply to").fill("Thank you: we are reviewing caseload weighting this month.")
    await page.get_by_role("button", name="Send reply").click()
    assert "Reply saved" in await page.get_by_role("status").inner_text()
    assert "Change team" in await page.locator("main").inner_text()
    async with seeded.core.db.session() as s:
        item = (await fb.list_items(s, theme_id="workload"))[0]
        assert [m.text for m in await fb.thread(s, item.id)] == [
            "Thank you: we are reviewing caseload weighting this month."]
    await page.get_by_text("Publish for “Workload and caseloads”").click()
    workload = page.locator("details", has_text="Publish for “Workload and caseloads”")
    await workload.get_by_label("Headline").fill("Caseload weighting reviewed")
    await workload.get_by_label("What we did").fill("We now weight complex assessments double.")
    await workload.get_by_role("button", name="Publish “you said, we did”").click()
    assert "Published" in await page.get_by_role("status").inner_text()
    await browser.check_accessible()
    await page.goto(f"{seeded.url}/app/")
    assert "Caseload weighting reviewed" in await page.locator("main").inner_text()
    await page.goto(f"{seeded.url}/app/broadcasts")
    assert "You said, we did: Caseload weighting reviewed" in await page.locator("main").inner_text()


async def test_a_safeguarding_lead_acknowledges_an_urgent_item(seeded: Server, browser: Browser) -> None:
    await sign_in_with_slack(seeded, browser, SAFEGUARDING)
    page = browser.page
    await page.goto(f"{seeded.url}/app/safeguarding")
    waiting = page.locator("main")
    assert URGENT_TEXT in await waiting.inner_text()
    await page.get_by_role("button", name="Acknowledge").click()
    assert await page.get_by_role("status").inner_text() == "Acknowledged."
    text = await page.locator("main").inner_text()
    assert "Waiting for you (0)" in text and "Acknowledged by you (1)" in text
    assert "Designated Safeguarding Lead: acknowledged" in text
    await browser.check_accessible()


async def test_a_form_without_its_csrf_token_is_refused(seeded: Server, browser: Browser) -> None:
    await sign_in_with_slack(seeded, browser, SAFEGUARDING)
    resp = await browser.page.request.post(f"{seeded.url}/app/safeguarding/acknowledge",
                                           form={"item": "x"})
    assert resp.status == 403 and "This form has expired" in await resp.text()


async def test_the_urgent_queue_home_and_pulse_pages_say_what_chat_says(
    server: Server, browser: Browser
) -> None:
    """A lead's Slack account deactivated, an open round's invitations refused: the urgent
    queue, the change team's home and their pulse page say so, as chat does, and stay
    accessible."""
    from bot.model import text_message
    from tests.conformance.drivers.slack import SlackDriver
    from tests.fakes.slack_api import FakeSlack
    from tests.test_platform_errors_slack import LEADS
    from tests.test_pulse_not_invited import SURVEY, _three_refusals
    from tests.web.test_chat_warnings import ONLY_ONE

    core = server.core
    d = SlackDriver(core, FakeSlack(retry_after=0))
    await d.start()
    try:
        for lead in LEADS:
            assert await core.dm(await _person(core, lead), text_message("Welcome")) is not None
        other = next(lead for lead in LEADS if lead != SAFEGUARDING)
        assert await d.user_change(other) == 200  # Slack: that lead's account was deactivated
        await _three_refusals(core, d)
        await d.say(CHANGE, f"pulse open {SURVEY}")
        await d.say(CHANGE, "pulse")
        said = d.seen(CHANGE)[-1]
    finally:
        await d.close()
    page = browser.page
    await sign_in_with_slack(server, browser, SAFEGUARDING)
    await page.goto(f"{server.url}/app/safeguarding")
    alert = page.get_by_role("alert")
    assert await alert.is_visible()
    assert await alert.inner_text() == ONLY_ONE
    await browser.check_accessible()
    await browser.context.clear_cookies()
    await sign_in_with_slack(server, browser, CHANGE)
    await page.goto(f"{server.url}/app/")  # the change team cannot open the leads' queue
    alert = page.get_by_role("alert")
    assert await alert.is_visible()
    assert await alert.inner_text() == ONLY_ONE, "their home says it, in chat's words"
    await browser.check_accessible()
    await page.goto(f"{server.url}/app/pulse")
    alert = page.get_by_role("alert")
    assert await alert.is_visible()
    shown = " ".join((await alert.inner_text()).split())
    missing = shown.split("(open): ", 1)[1].rstrip(".")
    # The same words as chat's `pulse`: counts by kind of reason only.
    assert " could not be invited (" in missing and missing in said, (shown, said)
    await browser.check_accessible()
