"""A motivated intruder in the change team: the leads' reach dates an urgent item (N37).

The change team is told when a safeguarding lead cannot be reached (chat's `feedback list
urgent`, the dashboard's home: "Only 1 of 2 safeguarding leads can be reached"). A lead who
blocked the app is found so when something is sent to them, and the first thing sent may be
an urgent item's alert: the warning then appeared at the minute of the alert, so a change team
looking every few minutes dated an urgent item that it cannot read before its release.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core import Core
from bot.feedback import counts
from tests.anonymity.story import at
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give
from tests.web.server import Server
from tests.web.test_signin import _client, _oidc

CONCERN = "I saw a child being slapped by her mother in the waiting room."
IDEA = "Group supervision keeps getting cancelled at short notice."
OTHER_IDEA = "The duty rota is published too late to plan visits."
ONLY_ONE = "Only 1 of 2 safeguarding leads can be reached"


async def test_a_lead_found_unreachable_by_an_urgent_alert_does_not_date_it_for_the_change_team(
        server: Server, loaded: Core) -> None:
    """A lead has blocked the app, which nobody knows yet. A disclosure comes at 10:43; its
    alert reaches the other lead and finds this one unreachable. The change team's urgent
    queue in chat and its dashboard home, looked at every few minutes, say nothing new before
    the noon release that shows the item (before the fix: "Only 1 of 2" from 10:45), and the
    warning comes with the day's last release; the leads are told at once."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=9, minute=10, second=0, microsecond=0)
    await d.say(LEADS[1], "help")  # known to the platform (its account stored), then blocks
    await loaded.tick()
    d.port.blocked.add(f"U-{LEADS[1]}")
    at(loaded, day, 9, 10)
    assert await give(d, PRACTITIONER, IDEA) is None
    assert await give(d, OTHER, OTHER_IDEA) is None
    await counts.flush(loaded)
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:

        async def views(hour: int, minute: int) -> str:
            at(loaded, day, hour, minute)
            await d.say(CHANGE, "feedback list urgent")
            chat = d.seen(CHANGE)[-1]
            assert (await _oidc(http, server)).status == 303
            home = await http.get(f"{server.url}/app/")
            assert home.status == 200
            return chat + "\n" + await home.text()

        assert ONLY_ONE not in await views(10, 40)
        at(loaded, day, 10, 43)
        assert await give(d, PRACTITIONER, CONCERN) is None
        assert any(m.startswith("URGENT") for m in d.seen(LEADS[0]))
        await d.say(LEADS[0], "feedback list urgent")
        assert ONLY_ONE in d.seen(LEADS[0])[-1]  # the leads know at once
        for hour, minute in ((10, 45), (11, 0), (11, 55)):
            seen = await views(hour, minute)
            assert ONLY_ONE not in seen and CONCERN not in seen, (hour, minute)
        seen = await views(12, 1)  # the release that shows the item
        assert CONCERN in seen
        # The warning at the day's last release, as every change of the reach is told to the
        # change team (a midday one probed for a held urgent item: the test below).
        seen = await views(17, 1)
        assert ONLY_ONE in seen and CONCERN in seen


GONE = "lead.cic@northbridge.example"  # a manager whose account the platform closed


@pytest.mark.parametrize("urgent", [False, True], ids=["nothing-urgent", "urgent-waits"])
async def test_a_role_granted_in_the_morning_does_not_probe_for_a_waiting_urgent_item(
        loaded: Core, urgent: bool) -> None:
    """Attack, an active probe: a change team member grants the safeguarding lead role, at
    11:00, to someone whose account is closed, and reads `feedback list urgent` after the noon
    release. The reach was taken at a release only when no urgent thing waited, so "Only 2 of
    3" appeared at noon unless an urgent item sent that morning was held (one other sender:
    the staff listing waits for 17:00): the warning's absence said that a disclosure waited,
    and at 17:00 dated the day's urgent item to the morning. Now the reach is taken at the
    day's last release alone, when everything of the day is released: both mornings read
    alike at noon, and the warning comes at 17:00 in both."""
    from sqlalchemy import select

    from bot.people import reach
    from bot.people.tables import Identity, Person

    d = FakeDriver(loaded)
    day0 = loaded.clock.now().replace(hour=16, minute=0, second=0, microsecond=0)
    at(loaded, day0, 16, 0)
    await d.say(GONE, "help")
    await loaded.tick()
    async with loaded.db.session() as s:
        acct = (await s.execute(select(Identity).join(Person, Person.id == Identity.person_id)
                                .where(Person.email == GONE))).scalar_one()
        account = (acct.platform, acct.workspace, acct.user_id)
    assert await reach.account_deactivated(loaded, *account)
    at(loaded, day0, 17, 5)
    await d.say(CHANGE, "feedback list urgent")  # the day's last release: the reach, 2 of 2
    assert ONLY_ONE not in d.seen(CHANGE)[-1]
    day = day0 + timedelta(days=1)
    at(loaded, day, 9, 10)
    assert await give(d, OTHER, OTHER_IDEA) is None
    if urgent:
        at(loaded, day, 10, 43)
        assert await give(d, PRACTITIONER, CONCERN) is None
    await counts.flush(loaded)
    at(loaded, day, 11, 0)
    await d.say(CHANGE, f"grant safeguarding_lead {GONE}")
    at(loaded, day, 12, 5)
    await d.say(CHANGE, "feedback list urgent")
    noon = d.seen(CHANGE)[-1]
    # Before the fix: "Only 2 of 3" here when nothing urgent waited, nothing when it did.
    assert "Only 2 of 3" not in noon, noon
    at(loaded, day, 17, 5)
    await d.say(CHANGE, "feedback list urgent")
    evening = d.seen(CHANGE)[-1]
    assert "Only 2 of 3" in evening, evening
    assert (CONCERN in evening) == urgent
    await d.say(LEADS[0], "feedback list urgent")
    assert "Only 2 of 3" in d.seen(LEADS[0])[-1]  # the leads read it live, as ever
