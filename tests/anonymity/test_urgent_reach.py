"""A motivated intruder in the change team: the leads' reach dates an urgent item (N37).

The change team is told when a safeguarding lead cannot be reached (chat's `feedback list
urgent`, the dashboard's home: "Only 1 of 2 safeguarding leads can be reached"). A lead who
blocked the app is found so when something is sent to them, and the first thing sent may be
an urgent item's alert: the warning then appeared at the minute of the alert, so a change team
looking every few minutes dated an urgent item that it cannot read before its release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from bot.core import Core
from bot.feedback import counts
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CONCERN = "I saw a child being slapped by her mother in the waiting room."
IDEA = "Group supervision keeps getting cancelled at short notice."
OTHER_IDEA = "The duty rota is published too late to plan visits."
ONLY_ONE = "Only 1 of 2 safeguarding leads can be reached"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


def _at(core: Core, day: datetime, hour: int, minute: int) -> None:
    core.clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]


async def test_a_lead_found_unreachable_by_an_urgent_alert_does_not_date_it_for_the_change_team(
        server: Server, loaded: Core) -> None:
    """A lead has blocked the app, which nobody knows yet. A disclosure comes at 10:43; its
    alert reaches the other lead and finds this one unreachable. The change team's urgent
    queue in chat and its dashboard home, looked at every few minutes, say nothing new before
    the noon release that shows the item (before the fix: "Only 1 of 2" from 10:45); the
    leads are told at once."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=9, minute=10, second=0, microsecond=0)
    await d.say(LEADS[1], "help")  # known to the platform (its account stored), then blocks
    await loaded.tick()
    d.port.blocked.add(f"U-{LEADS[1]}")
    _at(loaded, day, 9, 10)
    assert await give(d, PRACTITIONER, IDEA) is None
    assert await give(d, OTHER, OTHER_IDEA) is None
    await counts.flush(loaded)
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:

        async def views(hour: int, minute: int) -> str:
            _at(loaded, day, hour, minute)
            await d.say(CHANGE, "feedback list urgent")
            chat = d.seen(CHANGE)[-1]
            assert (await _oidc(http, server)).status == 303
            home = await http.get(f"{server.url}/app/")
            assert home.status == 200
            return chat + "\n" + await home.text()

        assert ONLY_ONE not in await views(10, 40)
        _at(loaded, day, 10, 43)
        assert await give(d, PRACTITIONER, CONCERN) is None
        assert any(m.startswith("URGENT") for m in d.seen(LEADS[0]))
        await d.say(LEADS[0], "feedback list urgent")
        assert ONLY_ONE in d.seen(LEADS[0])[-1]  # the leads know at once
        for hour, minute in ((10, 45), (11, 0), (11, 55)):
            seen = await views(hour, minute)
            assert ONLY_ONE not in seen and CONCERN not in seen, (hour, minute)
        seen = await views(12, 1)  # with the release that shows the item, the warning too
        assert ONLY_ONE in seen and CONCERN in seen
