"""Stories: an admin deactivates a safeguarding lead's Slack account.

Slack keeps taking posts in a deactivated account's DM that was already open (python-slack-sdk
#1156, in tests/fakes/slack_api.py): an urgent alert there counts as sent and is never read.
Slack tells apps with users:read through the `user_change` event (`user.deleted: true`), signed
like every event; the adapter marks the account unreachable at once, so:

- the next urgent alert goes to the other lead only, nothing is posted in the closed account's
  DM, and the alert is not counted as sent; the change team reading the urgent queue and the
  operator reading the log are told how many leads remain reachable;
- with no reachable lead left, the warning says so (an error in the log);
- reactivated, the lead gets the alert that waited;
- the event about someone outside the programme, or an ordinary profile change, writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.feedback import service as fb
from bot.people import reach
from bot.people.tables import Identity
from tests.conformance.drivers.slack import SlackDriver
from tests.slack_fixture import slack_with_leads_heard
from tests.test_platform_errors_slack import CHANGE, CONCERN, LEADS, _pid, alerts, urgent_in_dm


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    async with slack_with_leads_heard(loaded, LEADS) as d:  # their DMs are open
        yield d


async def concern(core: Core) -> None:
    await fb.store(core, await _pid(core, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])


def posts_to(d: SlackDriver, email: str) -> int:
    dm = d.fake.dm_of(d.user(email).id)
    return len([c for c in d.fake.called("chat.postMessage") if c.args.get("channel") == dm])


async def identities(core: Core) -> list[tuple[str, bool, str | None]]:
    async with core.db.session() as s:
        return sorted((i.user_id, i.reachable, i.unreachable_reason)
                      for i in (await s.execute(select(Identity))).scalars())


async def test_a_deactivated_lead_is_skipped_and_the_urgent_alert_reaches_the_other(
    loaded: Core, slack: SlackDriver, caplog: pytest.LogCaptureFixture
) -> None:
    d = slack
    with caplog.at_level(logging.WARNING, logger="staffvoice.people"):
        assert await d.user_change(LEADS[0]) == 200
    await concern(loaded)
    await fb.deliver_alerts(loaded)
    assert urgent_in_dm(d.fake, LEADS[1]) == 1
    assert urgent_in_dm(d.fake, LEADS[0]) == 0 and posts_to(d, LEADS[0]) == 0, (
        "nothing is posted where nobody will read it")
    assert (await alerts(loaded))[LEADS[0]] != "sent", "never counted as delivered"
    assert (await alerts(loaded))[LEADS[1]] == "sent"
    said = [r for r in caplog.records if "safeguarding lead" in r.getMessage()]
    assert [r.getMessage() for r in said] == [
        "a safeguarding lead's slack account was deactivated: 1 of 2 leads reachable"]
    assert said[0].levelno == logging.WARNING
    assert LEADS[0] not in caplog.text and d.user(LEADS[0]).id not in caplog.text
    # The change team reads the urgent queue and is told a lead cannot be reached.
    seen = await d.command(CHANGE, "feedback list urgent")
    assert seen[0] == 200
    queue = "\n".join(d.seen(CHANGE))
    assert "Only 1 of 2 safeguarding leads can be reached" in queue, queue


async def test_no_reachable_lead_left_is_an_error_and_the_queue_says_nobody_is_alerted(
    loaded: Core, slack: SlackDriver, caplog: pytest.LogCaptureFixture
) -> None:
    d = slack
    with caplog.at_level(logging.WARNING, logger="staffvoice.people"):
        for lead in LEADS:
            await d.user_change(lead)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "a safeguarding lead's slack account was deactivated: 0 of 2 leads reachable"]
    async with loaded.db.session() as s:
        warning = (await reach.leads_reach(s)).warning()
    assert warning is not None and "No safeguarding lead can be reached" in warning
    await concern(loaded)
    await fb.deliver_alerts(loaded)
    assert [posts_to(d, lead) for lead in LEADS] == [0, 0]
    await d.command(CHANGE, "feedback list urgent")
    assert "No safeguarding lead can be reached in chat (0 of 2)" in "\n".join(d.seen(CHANGE))


async def test_a_reactivated_lead_gets_the_alert_that_waited(
    loaded: Core, slack: SlackDriver
) -> None:
    d = slack
    await d.user_change(LEADS[0])
    await concern(loaded)
    await fb.deliver_alerts(loaded)
    assert (await alerts(loaded))[LEADS[0]] == "pending"
    await d.user_change(LEADS[0], deleted=False)
    assert await fb.deliver_alerts(loaded) == 1
    assert urgent_in_dm(d.fake, LEADS[0]) == 1
    assert await alerts(loaded) == {LEADS[0]: "sent", LEADS[1]: "sent"}
    async with loaded.db.session() as s:
        assert not (await reach.leads_reach(s)).short


async def test_someone_outside_the_programme_or_a_profile_change_writes_nothing(
    loaded: Core, slack: SlackDriver
) -> None:
    d = slack
    before = await identities(loaded)
    stranger = d.fake.add_user("visitor@elsewhere.example")
    assert await d.post_event(d.fake.user_change_event(stranger.id)) == 200
    d.fake.deactivate(stranger.id)
    assert await d.post_event(d.fake.user_change_event(stranger.id)) == 200
    # A lead changes their status: the same event with deleted false.
    assert await d.post_event(d.fake.user_change_event(d.user(LEADS[1]).id)) == 200
    assert await identities(loaded) == before
    assert all(ok for _u, ok, _why in before)
