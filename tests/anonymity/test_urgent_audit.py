"""A motivated intruder in the change team reads the audit trail (`audit`, which the change
team and leaders may read) to date an urgent item it cannot read before its release (N37).

The leads are alerted the second an urgent item is stored (N20) and read their urgent queue
then: recorded to the minute, "13:16 lead ... view.urgent_queue" told the change team that
something urgent came at 13:15 or so, and, once the item was released at 17:00 with the day's
other items, which one it was: the only urgent one. The looks at the urgent queue are the
leads' (and the operator's `staffvoice audit`) alone; left out for everyone else, with their
numbers and from the count, so that neither a gap nor a count says where one was.
"""

from __future__ import annotations

import re

from bot.audit import trail
from bot.core import Core
from bot.feedback import counts
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for
from tests.web.server import serve_dashboard
from tests.web.test_signin import _client, _oidc

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
CONCERN = "I saw a child being slapped by her mother in the waiting room."
INTACT = re.compile(r"intact \(([0-9,]+) entries\)")


async def test_the_leads_looks_at_their_queue_do_not_date_an_urgent_item_in_the_audit_trail(
        loaded: Core) -> None:
    """Attack: two ideas at 9:00; at 13:00 the change team reads `audit` and `audit verify`;
    a disclosure at 13:15; the leads, alerted, read their queue at 13:16 in chat (`feedback
    list urgent`, `feedback show #ref`) and on the dashboard's urgent queue; the change team
    reads the trail again at 13:20 and after the 17:00 release. Before the fix the 13:20 trail
    read "13:16 UTC safeguarding.lead@... view.urgent_queue urgent" (and the dashboard's
    "view.dashboard safeguarding"), and after 17:00 the one urgent item was dated to 13:16;
    the entries' numbers and the count said so even with those lines left out."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, OTHER, SECOND) is None
    await counts.flush(loaded)

    async def audit(hour: int, minute: int) -> tuple[str, int]:
        clock.set(day.replace(hour=hour, minute=minute))  # type: ignore[attr-defined]
        await d.say(CHANGE, "audit")
        shown = d.seen(CHANGE)[-1]
        await d.say(CHANGE, "audit verify")
        found = INTACT.search(d.seen(CHANGE)[-1])
        assert found, d.seen(CHANGE)[-1]
        return shown, int(found.group(1).replace(",", ""))

    clock.set(day.replace(hour=12, minute=5))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")  # the noon release, applied at its moment
    assert FIRST in d.seen(CHANGE)[-1]
    _, before = await audit(13, 0)
    clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN) is None
    assert any(m.startswith("URGENT") for m in d.seen(LEADS[0]))  # alerted at once
    clock.set(day.replace(hour=13, minute=16))  # type: ignore[attr-defined]
    await d.say(LEADS[0], "feedback list urgent")
    assert CONCERN in d.seen(LEADS[0])[-1]  # the leads read it at once, as ever
    ref = ref_for(d.seen(LEADS[0])[-1], CONCERN)
    await d.say(LEADS[1], f"feedback show #{ref}")
    assert CONCERN in d.seen(LEADS[1])[-1]
    async with serve_dashboard(loaded) as server:
        server.oidc.sign_in_as(LEADS[1])
        async with _client(server) as http:
            assert (await _oidc(http, server)).status == 303
            page = await http.get(f"{server.url}/app/safeguarding")
            assert page.status == 200 and CONCERN in await page.text()
    # The operator's trail (`staffvoice audit show`, the data protection officer's) keeps them.
    full = [trail.describe(x) for x in await trail.entries(loaded.db)]
    assert [x for x in full if "13:16" in x and LEADS[0] in x and "view.urgent_queue" in x]
    assert [x for x in full if "13:16" in x and LEADS[1] in x and "safeguarding" in x]

    shown, during = await audit(13, 20)
    for lead in LEADS:
        assert lead not in shown, shown
    assert "13:16" not in shown and "view.urgent_queue" not in shown, shown
    assert not re.search(r"#\d+ ", shown), shown  # no numbers whose gaps say where
    # Only the change team's own two entries at 13:20 (`audit`, `audit verify`): before the
    # fix the count rose by the leads' three looks too.
    assert during == before + 2, (before, during)

    clock.set(day.replace(hour=17, minute=5))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    assert CONCERN in d.seen(CHANGE)[-1]  # released with the day's others
    shown, after = await audit(17, 6)
    assert "13:16" not in shown and not any(lead in shown for lead in LEADS), shown
    assert after == during + 3  # `feedback list all`, `audit`, `audit verify`
