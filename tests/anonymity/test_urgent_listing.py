"""A motivated intruder in the change team: an urgent item listed at once is dated (N37).

Ordinary items wait for a release moment so that no listing dates them (N22). Urgent items (text
that looks like a safeguarding concern) were readable to everyone at once, because the
safeguarding leads must be alerted at once (N20). But the change team is a wider audience than
the leads: listing every few minutes, they saw the urgent item appear between 10:40 and 10:45,
and beside the platform's record of who submitted a form then (Slack's and Microsoft's logs of
app interactions) named the sender of the most sensitive item there is. The rule asked for:
the leads keep it at once (alerts, `feedback list urgent`, the dashboard's urgent queue);
everyone else's views show it from the release it would have gone with had it not been urgent.
"""

from __future__ import annotations

from bot.core import Core
from bot.feedback import counts
from bot.feedback import service as fb
from bot.people.service import grant_role, person_by_email
from bot.roles import SAFEGUARDING_LEAD
from tests.anonymity.story import at
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for
from tests.web.server import Server
from tests.web.test_signin import _client, _oidc

CONCERN = "I saw a child being slapped by her mother in the waiting room."
IDEA = "Group supervision keeps getting cancelled at short notice."
OTHER_IDEA = "The duty rota is published too late to plan visits."
OFFICER = "changeofficer@northbridge.example"  # change team, made a lead too below


async def test_an_urgent_item_is_not_listed_to_the_change_team_before_its_release(
        server: Server, loaded: Core) -> None:
    """Attack: two practitioners send ideas at 9:10 and 9:20; one sends a disclosure at 10:43.
    The change team lists feedback in chat and on the dashboard (items and counts) every five
    minutes from 10:00. Before the fix the disclosure was in the 10:45 listing (sent between
    10:40 and 10:45); now it is in none before the noon release, while both leads are alerted
    at 10:43 and read it in their urgent queue (chat and dashboard) at once, and a change-team
    member who is also a lead reads it in their urgent queue at once, not in their listing."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=9, minute=10, second=0, microsecond=0)
    async with loaded.db.session() as s:
        officer = await person_by_email(s, OFFICER)
        assert officer is not None
        await grant_role(s, officer.id, SAFEGUARDING_LEAD)
    at(loaded, day, 9, 10)
    assert await give(d, PRACTITIONER, IDEA) is None
    at(loaded, day, 9, 20)
    assert await give(d, OTHER, OTHER_IDEA) is None
    await counts.flush(loaded)
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303

        async def views(hour: int, minute: int) -> tuple[str, str, str, str]:
            at(loaded, day, hour, minute)
            await d.say(CHANGE, "feedback list all")
            chat = d.seen(CHANGE)[-1]
            await d.say(CHANGE, "feedback list urgent")
            urgent = d.seen(CHANGE)[-1]
            assert (await _oidc(http, server)).status == 303  # the session's idle time ran out
            page = await http.get(f"{server.url}/app/feedback?status=all")
            assert page.status == 200
            assert "Sign in to the programme dashboard" not in await page.text()
            async with loaded.db.session() as s:
                tally = sum((await fb.theme_counts(s)).values())
            return chat, urgent, await page.text(), str(tally)

        before = await views(10, 0)
        at(loaded, day, 10, 43)
        assert await give(d, PRACTITIONER, CONCERN) is None
        # The leads, at once: their alert, chat's urgent queue, the dashboard's queue.
        for lead in LEADS:
            assert any(m.startswith("URGENT") and CONCERN in m for m in d.seen(lead))
        await d.say(LEADS[0], "feedback list urgent")
        assert CONCERN in d.seen(LEADS[0])[-1]
        ref = ref_for(d.seen(LEADS[0])[-1], CONCERN)
        await d.say(LEADS[1], f"feedback show #{ref}")
        assert CONCERN in d.seen(LEADS[1])[-1]
        async with loaded.db.session() as s:
            assert CONCERN in [u.item.text for u in await fb.urgent_queue(s)]
        # Change team and lead: the urgent queue is theirs at once; the listing is not.
        await d.say(OFFICER, "feedback list urgent")
        assert CONCERN in d.seen(OFFICER)[-1]
        await d.say(OFFICER, "feedback list all")
        assert CONCERN not in d.seen(OFFICER)[-1]
        # The change team, every five minutes until noon: nothing changes, nothing says 10:43.
        for hour, minute in [(10, 45), (10, 50), (11, 0), (11, 30), (11, 55)]:
            chat, urgent, page, tally = await views(hour, minute)
            assert CONCERN not in chat and CONCERN not in urgent and CONCERN not in page
            assert tally == before[3]  # before the fix: one more from 10:45
            assert "URGENT" not in chat and "URGENT" not in page
        await d.say(CHANGE, f"feedback show #{ref}")
        assert "There is no feedback" in d.seen(CHANGE)[-1]  # a guessed ref finds nothing
        # The noon release: the urgent item goes with the two ideas, as it would have.
        chat, urgent, page, tally = await views(12, 1)
        assert CONCERN in chat and IDEA in chat and OTHER_IDEA in chat
        assert CONCERN in urgent
        assert CONCERN in page
        assert int(tally) == int(before[3]) + 3
