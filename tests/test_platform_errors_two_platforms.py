"""A safeguarding lead on two platforms, one of which refuses the app (uninstalled): the alert
goes by the platform that still works, and the refusal alone never fails it (Core.dm)."""

from __future__ import annotations

from sqlalchemy import select

from adapters.fake.port import FakePort
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackAlert
from bot.model import ConversationRef, Message, MessageRef
from bot.people.tables import Identity, Person
from bot.port import AppNotAuthorised, TransientError

LEADS = ["safeguarding.lead@northbridge.example", "lado@northbridge.example"]


class Uninstalled(FakePort):
    """A second platform whose app was uninstalled: every send is refused."""

    platform = "aaa-uninstalled"

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        raise AppNotAuthorised("token_revoked: reinstall the app")


async def _two_platforms(core: Core) -> tuple[Uninstalled, FakePort, dict[str, str]]:
    """An uninstalled platform and one that works, and the leads' person ids."""
    gone, works = Uninstalled(), FakePort()
    core.add_port(gone)
    core.add_port(works)
    async with core.db.session() as s:
        leads = {e: (await s.execute(select(Person.id).where(Person.email == e))).scalar_one()
                 for e in LEADS}
    return gone, works, leads


async def _concern_alerts_each_lead_on(core: Core, works: FakePort) -> None:
    """The change lead sends a concern; each lead has the URGENT alert where the app works."""
    async with core.db.session() as s:
        change = (await s.execute(select(Person.id).where(
            Person.email == "changelead@northbridge.example"))).scalar_one()
    await fb.store(core, change, text="A boy told me his stepdad hits him.", theme_id=None,
                   replies=False, concerns=["child_risk"])
    await fb.deliver_alerts(core)
    got = {e: any(p.message.blocks and "URGENT" in str(p.message.blocks[0])
                  for p in works.messages(works.dm_id(f"U-{e}"))) for e in LEADS}
    assert got == {e: True for e in LEADS}


async def test_an_alert_reaches_a_lead_on_the_platform_that_still_works(loaded: Core) -> None:
    _gone, works, _leads = await _two_platforms(loaded)
    await _concern_alerts_each_lead_on(loaded, works)


async def test_an_alert_reaches_a_lead_known_only_on_the_refused_platform(loaded: Core) -> None:
    """Found in review: both leads were reached on the first platform before its app was
    uninstalled (the council moved to the second). Before: `Core.dm` looked a person up on
    the other platforms only when no reachable account was stored, so the urgent alert waited
    for a reinstall that would never come; now it finds them where the app still works."""
    gone, works, leads = await _two_platforms(loaded)
    async with loaded.db.session() as s:
        for e, pid in leads.items():
            s.add(Identity(platform=gone.platform, workspace="W1", user_id=f"U-{e}",
                           person_id=pid, dm={"platform": gone.platform, "workspace": "W1",
                                              "conversation_id": f"D-U-{e}"}))
    await _concern_alerts_each_lead_on(loaded, works)
    async with loaded.db.session() as s:
        assert {a.status for a in (await s.execute(select(FeedbackAlert))).scalars()} == {"sent"}


class Down(FakePort):
    """A second platform in an outage: every send fails as Slack's 5xx and timeouts do."""

    platform = "aaa-down"

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        raise TransientError("service_unavailable")


async def test_an_alert_reaches_a_lead_on_the_platform_that_works_while_the_other_is_down(
        loaded: Core) -> None:
    """Both leads have accounts on two platforms (a council moving from one to the other);
    the first is having an outage. The alert goes by the second, at once.

    Before: `Core.dm` gave up at the first account's transient failure, so no lead was told
    until the outage ended, though the other platform worked throughout."""
    down, works = Down(), FakePort()
    loaded.add_port(down)
    loaded.add_port(works)
    async with loaded.db.session() as s:
        for e in LEADS:
            pid = (await s.execute(select(Person.id).where(Person.email == e))).scalar_one()
            for port in (down, works):  # both accounts known, the failing one first
                s.add(Identity(platform=port.platform, workspace="W1", user_id=f"U-{e}",
                               person_id=pid, dm={"platform": port.platform, "workspace": "W1",
                                                  "conversation_id": f"D-U-{e}"}))
    await _concern_alerts_each_lead_on(loaded, works)
    async with loaded.db.session() as s:
        assert {a.status for a in (await s.execute(select(FeedbackAlert))).scalars()} == {"sent"}
