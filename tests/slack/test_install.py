"""Installing into a workspace with OAuth: the token is kept in the database, sealed, and used."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from adapters.slack.tables import SlackInstallation
from bot.core import Core
from bot.dispatch_tables import ProcessedEvent
from bot.model import text_message
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack

PRACTITIONER = "practitioner2@northbridge.example"


@pytest.fixture
async def oauth_slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    fake = FakeSlack(tokens=set())
    driver = SlackDriver(loaded, fake, env={
        "SLACK_BOT_TOKEN": "", "SLACK_CLIENT_ID": fake.client_id, "SLACK_CLIENT_SECRET": fake.client_secret,
    })
    await driver.start()
    yield driver
    await driver.close()


async def test_a_workspace_installs_the_app_and_the_bot_answers_there(oauth_slack: SlackDriver) -> None:
    slack, fake = oauth_slack, oauth_slack.fake
    assert slack.http is not None
    async with slack.http.get(f"{slack.base}/slack/install", allow_redirects=False) as resp:
        page = await resp.text()
        state = resp.cookies["slack-app-oauth-state"].value
    assert resp.status == 200
    link = re.search(r'href="([^"]+oauth/v2/authorize[^"]+)"', page)
    assert link and f"client_id={fake.client_id}" in link.group(1) and "chat:write" in link.group(1)
    assert link.group(1).startswith(fake.url.removesuffix("api/"))  # consent on the configured Slack domain

    fake.oauth_codes["code-123"] = fake.team
    async with slack.http.get(
        f"{slack.base}/slack/oauth_redirect", params={"code": "code-123", "state": state},
        headers={"Cookie": f"slack-app-oauth-state={state}"}, allow_redirects=False,
    ) as resp:
        assert resp.status == 200, await resp.text()

    async with slack.core.db.session() as s:
        [row] = (await s.execute(select(SlackInstallation))).scalars().all()
    assert row.team_id == fake.team and "xoxb" not in row.bot_token_sealed

    await slack.say(PRACTITIONER, "whoami")
    assert PRACTITIONER in slack.seen(PRACTITIONER)[-1]
    sent = fake.called("chat.postMessage")  # the privacy notice, then the answer
    assert len(sent) == 2 and {c.token for c in sent} == {f"xoxb-{fake.team}-installed"}


async def install(slack: SlackDriver, code: str = "code-123") -> None:
    """Someone installs the app from /slack/install and Slack sends them back with a code."""
    assert slack.http is not None
    async with slack.http.get(f"{slack.base}/slack/install", allow_redirects=False) as resp:
        state = resp.cookies["slack-app-oauth-state"].value
    slack.fake.oauth_codes[code] = slack.fake.team
    async with slack.http.get(
        f"{slack.base}/slack/oauth_redirect", params={"code": code, "state": state},
        headers={"Cookie": f"slack-app-oauth-state={state}"}, allow_redirects=False,
    ) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_workspace_of_an_enterprise_grid_org_installs_the_app_and_the_bot_answers_there(
    oauth_slack: SlackDriver,
) -> None:
    # A council on Enterprise Grid installs the app into one workspace (not org-wide, which
    # the manifest does not enable): Slack names the org in the install and in every event.
    slack, fake = oauth_slack, oauth_slack.fake
    fake.enterprise = "E0NORTHB01"
    await install(slack)
    async with slack.core.db.session() as s:
        [row] = (await s.execute(select(SlackInstallation))).scalars().all()
    assert (row.enterprise_id, row.team_id, row.is_enterprise_install) == ("E0NORTHB01", fake.team, False)

    await slack.say(PRACTITIONER, "whoami")
    assert PRACTITIONER in slack.seen(PRACTITIONER)[-1]
    # Writing first works too (a pulse question, a broadcast): the core only knows the workspace.
    port = slack.core.ports["slack"]
    user = await port.find_user(PRACTITIONER)
    assert user is not None and user.workspace == fake.team
    dm = await port.open_dm(user)
    await port.send(dm, text_message("The December pulse is open."))
    assert slack.seen(PRACTITIONER)[-1] == "The December pulse is open."
    assert {c.token for c in fake.called("chat.postMessage")} == {f"xoxb-{fake.team}-installed"}

    # Uninstalled from the workspace (app_uninstalled names the org too): the token is gone.
    assert await slack.post_event({"type": "app_uninstalled"}) == 200
    async with slack.core.db.session() as s:
        assert (await s.execute(select(SlackInstallation))).first() is None


async def test_a_forged_oauth_state_installs_nothing(oauth_slack: SlackDriver) -> None:
    slack, fake = oauth_slack, oauth_slack.fake
    assert slack.http is not None
    fake.oauth_codes["code-9"] = fake.team
    async with slack.http.get(f"{slack.base}/slack/oauth_redirect",
                              params={"code": "code-9", "state": "made-up"}) as resp:
        assert resp.status >= 400
    async with slack.core.db.session() as s:
        assert (await s.execute(select(SlackInstallation))).first() is None


async def test_an_event_from_a_workspace_that_never_installed_is_refused(oauth_slack: SlackDriver) -> None:
    status = await oauth_slack.post_event({"type": "message", "channel": "D1", "user": "U1", "text": "hi",
                                           "ts": "1.1", "channel_type": "im"})
    # Bolt acks (so Slack stops retrying) but no listener runs and nothing is sent.
    assert status == 200 and oauth_slack.fake.calls == []
    async with oauth_slack.core.db.session() as s:
        assert (await s.execute(select(ProcessedEvent))).first() is None
