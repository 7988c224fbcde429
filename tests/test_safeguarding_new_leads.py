"""An urgent item reaches a current safeguarding lead, whoever was a lead when it came (N51).

The alert ledger (`feedback_alerts`) was written once, when the item was stored, for the
leads of that moment: a council that named its leads after a disclosure came (none were set
up yet), or whose leads all changed before any of them was alerted (both blocked the app, or
were away from the platform; their roles went to others by a programme reload), had an urgent
item that no current lead was ever told of. It waited, unannounced, in a queue the new leads
had no reason to open.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.feedback import counts, safeguarding
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackAlert
from bot.people import service as people
from bot.programme import loader
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, REF, give

CONCERN = "A boy on my caseload told me his stepdad hits him."
NO_LEADS = ", roles: [safeguarding_lead]}"
# The programme of a council whose leads changed: the two leads of the example lose the role,
# the Front Door Team Manager takes it on.
NEW_LEAD = "lead.frontdoor@northbridge.example"


def _urgent(d: FakeDriver, email: str) -> list[str]:
    return [m for m in d.seen(email) if m.startswith("URGENT")]


def _with_new_lead() -> str:
    text = EXAMPLE.read_text().replace(NO_LEADS, "}")
    line = "name: Front Door Team Manager, team: front-door}"
    assert text.count(line) == 1
    return text.replace(line, line[:-1] + ", roles: [safeguarding_lead]}")


async def test_a_disclosure_sent_before_any_lead_was_named_reaches_the_leads_once_named(
        loaded: Core) -> None:
    """A council loads its programme before naming its safeguarding leads. A practitioner
    sends a disclosure anyway (the form told them no lead is set up). Next morning the
    programme is loaded again with its two leads: both are alerted at the next tick, once.

    Before: no alert row was ever written for them; the item sat in their queue unannounced."""
    text = EXAMPLE.read_text()
    assert text.count(NO_LEADS) == 2
    await loader.load(loaded.db, text.replace(NO_LEADS, "}"), loaded.router)
    d = FakeDriver(loaded)
    for lead in LEADS:
        await d.say(lead, "help")  # known to the platform
    assert await give(d, PRACTITIONER, CONCERN) is None
    await loaded.tick()
    assert all(_urgent(d, lead) == [] for lead in LEADS)
    await loader.load(loaded.db, text, loaded.router)  # the leads are named
    await loaded.tick()
    await loaded.tick()
    for lead in LEADS:
        [alert] = _urgent(d, lead)
        assert CONCERN in alert
    await loaded.tick()
    assert all(len(_urgent(d, lead)) == 1 for lead in LEADS)  # once


async def test_an_alert_waiting_for_leads_who_lost_the_role_goes_to_the_lead_named_instead(
        loaded: Core) -> None:
    """Both leads have blocked the app (on leave, a new phone) when a disclosure comes: their
    alerts wait for them (N45). Before either is back, the programme is reloaded with a new
    safeguarding lead in their place: the new lead is alerted at the next tick, once; the
    former leads are not (test_an_alert_waiting_for_a_lead_is_not_sent_once_they_are_no_
    longer_a_lead).

    Before: the former leads' alerts were withdrawn and nobody else's written: no current lead
    was ever told of the disclosure."""
    d = FakeDriver(loaded)
    for who in (*LEADS, NEW_LEAD):
        await d.say(who, "help")
    for lead in LEADS:
        d.port.blocked.add(f"U-{lead}")
    assert await give(d, PRACTITIONER, CONCERN) is None
    await loaded.tick()
    assert all(_urgent(d, lead) == [] for lead in LEADS)
    await loader.load(loaded.db, _with_new_lead(), loaded.router)
    await loaded.tick()
    await loaded.tick()
    [alert] = _urgent(d, NEW_LEAD)
    assert CONCERN in alert
    d.port.blocked.clear()
    for lead in LEADS:
        await d.say(lead, "help")
    await loaded.tick()
    assert all(_urgent(d, lead) == [] for lead in LEADS)
    assert len(_urgent(d, NEW_LEAD)) == 1


async def test_a_new_lead_is_not_alerted_of_what_a_current_lead_was_told_or_took_on(
        loaded: Core) -> None:
    """What a current lead was alerted of, or any lead took on, is not sent again to a lead
    named later (their queue holds it): a grant must not become a way to re-announce, or to
    probe for, what the leads already have."""
    d = FakeDriver(loaded)
    await d.say(NEW_LEAD, "help")
    assert await give(d, PRACTITIONER, CONCERN) is None
    assert all(len(_urgent(d, lead)) == 1 for lead in LEADS)
    await d.say(CHANGE, f"grant safeguarding_lead {NEW_LEAD}")
    await loaded.tick()
    await loaded.tick()
    assert _urgent(d, NEW_LEAD) == []
    async with loaded.db.session() as s:
        new = await people.person_by_email(s, NEW_LEAD)
        assert new is not None
        rows = (await s.execute(select(FeedbackAlert.person_id))).scalars().all()
    assert new.id not in rows
    assert await fb.deliver_alerts(loaded) == 0


async def test_a_disclosure_stored_while_its_first_lead_is_named_reaches_them(
        loaded: Core) -> None:
    """No lead is set up yet. A disclosure's transaction reads the leads (none) and, before
    it commits, the change team grants the role in chat and the scheduler ticks: the leads
    changed, so it looks for what no lead was told of, and this item is not committed yet.
    After the commit the form alerts the item's leads (`deliver_alerts(core, item_id)`): the
    lead named meanwhile is one of them, at once.

    Before: on PostgreSQL the item was stored with no alert row after the tick had looked,
    and the leads did not change again, so no lead was ever told of it. (SQLite has one
    writer: the grant waits for the item's commit, and the tick finds the item.)"""
    await loader.load(loaded.db, EXAMPLE.read_text().replace(NO_LEADS, "}"), loaded.router)
    d = FakeDriver(loaded)
    for who in (CHANGE, NEW_LEAD):
        await d.say(who, "help")
    await loaded.tick()  # the leads this process has seen: none
    async with loaded.db.session() as s:
        sender = await people.person_by_email(s, PRACTITIONER)
        concerns = safeguarding.concerns(CONCERN, await fb.config(s))
    assert sender is not None and concerns

    async def named() -> None:
        await d.say(CHANGE, f"grant safeguarding_lead {NEW_LEAD}")
        await loaded.tick()

    async with counts.holding(loaded) as hold, loaded.db.transaction() as conn:
        stored = await fb.store(loaded, sender.id, text=CONCERN, theme_id=None, replies=False,
                                concerns=concerns, conn=conn, hold=hold)
        if not loaded.db.is_sqlite:
            await named()
    if loaded.db.is_sqlite:
        await named()
    await fb.deliver_alerts(loaded, stored.item_id)  # after the commit, as the form does
    await loaded.tick()
    [alert] = _urgent(d, NEW_LEAD)
    assert CONCERN in alert
    await loaded.tick()
    assert len(_urgent(d, NEW_LEAD)) == 1


async def test_a_new_lead_is_not_alerted_of_what_a_former_lead_was_told_and_closed(
        loaded: Core) -> None:
    """Two disclosures reach both leads. One lead deals with the first and closes it in chat
    (`feedback status REF closed`); the second is left as it came. The leads then hand over:
    the programme is reloaded with the Front Door Team Manager as the lead in their place.
    The new lead is alerted of the open one, not of the one a lead was told of and closed.

    Before: every urgent item a former lead had closed (two years of them are kept) came to
    the new lead as URGENT at the next tick, and again at every handover."""
    d = FakeDriver(loaded)
    await d.say(NEW_LEAD, "help")
    other = "My manager slapped a colleague in the office today."
    assert await give(d, PRACTITIONER, CONCERN) is None
    assert await give(d, OTHER, other) is None
    alerts = _urgent(d, LEADS[0])
    [closed] = [REF.findall(a)[0] for a in alerts if CONCERN in a]
    await d.say(LEADS[0], f"feedback status {closed} closed")
    assert "closed" in d.seen(LEADS[0])[-1].lower()
    await loader.load(loaded.db, _with_new_lead(), loaded.router)
    await loaded.tick()
    await loaded.tick()
    [alert] = _urgent(d, NEW_LEAD)
    assert other in alert and CONCERN not in alert


async def test_a_lead_named_while_the_leads_cannot_be_reached_is_alerted(loaded: Core) -> None:
    """Both leads have blocked the app (on leave, a new phone) when a disclosure comes: their
    alerts wait for them (N45). The change team names the Front Door Team Manager as a third
    lead to cover, in chat; the two keep the role. No lead has been told of the disclosure,
    so the lead named is alerted at the next tick, once; the two still get theirs once back.

    Before: an alert waiting for a current lead counted as told, and the lead named to cover
    was never alerted of the disclosure that nobody had been told of."""
    d = FakeDriver(loaded)
    for who in (*LEADS, NEW_LEAD):
        await d.say(who, "help")
    for lead in LEADS:
        d.port.blocked.add(f"U-{lead}")
    assert await give(d, PRACTITIONER, CONCERN) is None
    await loaded.tick()
    assert all(_urgent(d, lead) == [] for lead in LEADS)
    await d.say(CHANGE, f"grant safeguarding_lead {NEW_LEAD}")
    await loaded.tick()
    [alert] = _urgent(d, NEW_LEAD)
    assert CONCERN in alert
    d.port.blocked.clear()
    for lead in LEADS:
        await d.say(lead, "help")
    await loaded.tick()
    await loaded.tick()
    assert all(len(_urgent(d, who)) == 1 for who in (*LEADS, NEW_LEAD))


async def test_a_failed_look_for_untold_items_holds_back_no_waiting_alert(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both leads blocked the app when a disclosure came; they are back. The look for what
    no current lead was told of (the heaviest read of the alerts' tick) fails, a statement
    timeout say: the alerts waiting for the two still go at that tick.

    Before: the look ran first in the tick's delivery and its failure ended it, at every tick
    while it failed (it is looked for again until it succeeds): no alert reached anyone."""
    d = FakeDriver(loaded)
    for lead in LEADS:
        await d.say(lead, "help")
        d.port.blocked.add(f"U-{lead}")
    assert await give(d, PRACTITIONER, CONCERN) is None
    await loaded.tick()
    d.port.blocked.clear()
    for lead in LEADS:
        await d.say(lead, "help")

    async def failing(core: Core, item_id: str | None = None) -> int:
        raise TimeoutError("canceling statement due to statement timeout")

    monkeypatch.setattr(fb, "_alert_new_leads", failing)
    await loaded.tick()
    assert all(len(_urgent(d, lead)) == 1 for lead in LEADS)
