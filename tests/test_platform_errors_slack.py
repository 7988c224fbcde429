"""Stories: Slack answers with the errors real councils meet (tests/fakes/slack_api.py cites
each), and every journey ends with each recipient delivered once, or failed with a reason the
change team can count; nothing retried forever, nobody blamed for the app's own token.

- The app was uninstalled or its token revoked mid-broadcast (token_revoked, account_inactive):
  the rows wait, shown as retrying with a reason that says to reinstall, and the reinstall
  delivers them once each; never reinstalled, they fail with that reason after a day. Nobody
  is marked unreachable, and the dead token is not asked again for every row.
- Slack refuses the message itself (msg_too_long): each row fails once, with the reason, and
  the broadcast finishes with its report; it is not left `sending` to be resent after every
  lease.
- A deactivated account (not found by email), an archived DM (is_archived) and a passing
  internal_error in one broadcast: two failed with their reasons, one retried, the rest sent
  once each.
- A channel that refuses posts (is_archived, restricted_action, channel_not_found) is skipped
  with the reason and asked once; a shortcut whose trigger expired (expired_trigger_id, 3 s)
  offers the form by a button in an ephemeral message.
- Safeguarding: a lead whose account is deactivated does not stop the other lead's alert; an
  uninstalled app does not mark the leads unreachable, so the alert reaches them after the
  reinstall.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.slack.port import SlackPort
from bot.broadcasts import service
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackAlert
from bot.model import text_message
from bot.people.tables import Identity, Person
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixture import reinstalled, slack_on
from tests.test_broadcast_engine import office_hours_for_all

CHANGE = "changelead@northbridge.example"
TITLE = "Early win: family network meetings"
FAST = {"slack": Limits(workspace_per_s=1000, conversation_per_s=1000, burst=50)}
LEADS = ["safeguarding.lead@northbridge.example", "lado@northbridge.example"]
CONCERN = "A boy on my caseload told me his stepdad hits him."
PRACTITIONER = "practitioner1@northbridge.example"


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    async with slack_on(loaded) as pair:
        yield pair


async def publish(core: Core, audience: str = "teams: assessment") -> str:
    await office_hours_for_all(core)
    async with core.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    return await service.publish_to_staff(core, author, title=TITLE, text="In every team now.",
                                          audience=audience)


async def rows(core: Core, bid: str) -> list[Delivery]:
    async with core.db.session() as s:
        return list((await s.execute(select(Delivery).where(Delivery.broadcast_id == bid)))
                    .scalars())


async def unreachable(core: Core) -> list[str]:
    async with core.db.session() as s:
        return list((await s.execute(select(Person.email).join(
            Identity, Identity.person_id == Person.id).where(
            Identity.reachable.is_(False)))).scalars())


def copies(fake: FakeSlack) -> list[str]:
    return [m.channel for m in fake.messages if TITLE in m.text and m.metadata and not m.deleted]


async def revoked_mid_broadcast(core: Core, fake: FakeSlack, sender: Sender) -> str:
    """Six people were found on Slack and sent to before (their DMs are known); then the app
    is uninstalled and a second early win goes out."""
    await publish(core)
    await sender.drain()
    assert len(copies(fake)) == 6
    fake.messages.clear()
    bid = await publish(core)
    fake.revoke("token_revoked")
    await sender.drain()
    return bid


async def test_an_uninstalled_app_holds_the_broadcast_and_a_reinstall_delivers_it_once(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    sender = Sender(loaded, limiter=Limiter(FAST))
    bid = await revoked_mid_broadcast(loaded, fake, sender)
    waiting = await rows(loaded, bid)
    assert [r.state for r in waiting] == ["failed"] * 6, "retrying, not given up at once"
    assert all("token_revoked" in (r.error or "") and "reinstall" in (r.error or "")
               for r in waiting), {r.error for r in waiting}
    st = await service.status(loaded, bid)
    assert st.counts["failed"] == 6 and any("reinstall" in why for why, _n in st.reasons), (
        "the change team sees why, as a count")
    asked = len(fake.calls)
    for _ in range(3):
        clock.advance(timedelta(minutes=11))
        await sender.drain()
    assert len(fake.calls) == asked, "a dead token is answered locally, not asked per row"
    assert await unreachable(loaded) == [], "the app's token says nothing about the people"
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=11))
        await sender.drain()
    assert sorted(copies(fake)) == sorted(set(copies(fake))) and len(copies(fake)) == 6
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["sent"] == 6


async def test_an_app_never_reinstalled_fails_the_broadcast_after_a_day_with_the_reason(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    sender = Sender(loaded, limiter=Limiter(FAST))
    bid = await revoked_mid_broadcast(loaded, fake, sender)
    clock.advance(timedelta(hours=23))  # Tuesday 09:00, inside everyone's working hours
    await sender.drain()
    assert {r.state for r in await rows(loaded, bid)} == {"failed"}
    clock.advance(timedelta(hours=1, minutes=1))
    await sender.drain()
    final = await rows(loaded, bid)
    assert [r.state for r in final] == ["final_failed"] * 6
    assert all("reinstall" in (r.error or "") and "gave up after 24 hours" in (r.error or "")
               for r in final), {r.error for r in final}
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["final_failed"] == 6
    assert await unreachable(loaded) == []
    assert copies(fake) == []


async def test_a_message_slack_refuses_fails_once_per_recipient_and_the_broadcast_finishes(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    bid = await publish(loaded)
    fake.failures["chat.postMessage"] = ["msg_too_long"] * 6
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    clock.advance(timedelta(minutes=10))
    await sender.drain()
    final = await rows(loaded, bid)
    assert [r.state for r in final] == ["final_failed"] * 6, [r.state for r in final]
    assert all("msg_too_long" in (r.error or "") for r in final)
    tries = [c for c in fake.called("chat.postMessage") if c.args.get("metadata")]
    assert len(tries) == 6, "each refused once, never tried again"
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["final_failed"] == 6
    report = [m.text for m in fake.messages if "has finished" in m.text]
    assert len(report) == 1 and "6 failed" in report[0], "the author is told, with the count"


async def test_a_deactivated_account_an_archived_dm_and_a_passing_error_in_one_broadcast(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, _port = slack
    bid = await publish(loaded)
    async with loaded.db.session() as s:
        emails = sorted((await s.execute(select(Person.email).join(
            Delivery, Delivery.person_id == Person.id).where(Delivery.broadcast_id == bid)))
            .scalars())
    gone, archived = fake.user_by_email(emails[0]), fake.user_by_email(emails[1])
    assert gone is not None and archived is not None
    fake.deactivate(gone.id)
    fake.refuse_posts(fake.dm_of(archived.id), "is_archived")
    fake.failures["chat.postMessage"] = ["internal_error"]  # the first post: Slack hiccups
    sender = Sender(loaded, limiter=Limiter(FAST))
    for _ in range(3):
        await sender.drain()
        clock.advance(timedelta(minutes=2))
    by_email = {e: r for e in emails for r in await rows(loaded, bid)
                if r.person_id == await _pid(loaded, e)}
    assert by_email[emails[0]].state == "skipped" and "not reachable" in str(
        by_email[emails[0]].error)
    assert by_email[emails[1]].state == "skipped" and "is_archived" in str(
        by_email[emails[1]].error)
    assert [by_email[e].state for e in emails[2:]] == ["sent"] * 4
    assert sorted(copies(fake)) == sorted(fake.dm_of(fake.user_by_email(e).id)  # type: ignore[union-attr]
                                          for e in emails[2:]), "one copy each, none twice"
    assert sender.stats.retried == 1, "the internal_error was tried again, once"
    assert await unreachable(loaded) == [emails[1]], "the one Slack never found has no account"
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and st.counts["skipped"] == 2 and st.counts["sent"] == 4


async def _pid(core: Core, email: str) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()


async def alerts(core: Core) -> dict[str, str]:
    async with core.db.session() as s:
        found = (await s.execute(select(Person.email, FeedbackAlert.status).join(
            Person, Person.id == FeedbackAlert.person_id))).all()
    return {str(e): str(st) for e, st in found}


def urgent_in_dm(fake: FakeSlack, email: str) -> int:
    user = fake.user_by_email(email)
    assert user is not None
    return sum(m.text.startswith("URGENT") for m in fake.in_channel(fake.dm_of(user.id)))

async def each_lead_alerted_once_after_the_reinstall(core: Core, fake: FakeSlack) -> None:
    """The app is installed again: the next tick alerts each lead once, and both are sent."""
    async with reinstalled(core, fake):
        assert await fb.deliver_alerts(core) == 2
    assert [urgent_in_dm(fake, lead) for lead in LEADS] == [1, 1]
    assert await alerts(core) == {LEADS[0]: "sent", LEADS[1]: "sent"}



async def test_a_deactivated_lead_does_not_stop_the_other_leads_alert(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    fake, _port = slack
    gone = fake.user_by_email(LEADS[0])
    assert gone is not None
    fake.deactivate(gone.id)
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    await fb.deliver_alerts(loaded)
    assert urgent_in_dm(fake, LEADS[1]) == 1
    assert urgent_in_dm(fake, LEADS[0]) == 0
    assert await alerts(loaded) == {LEADS[0]: "pending", LEADS[1]: "sent"}, (
        "the lead Slack cannot find keeps a pending alert, retried on the next tick")


async def test_an_uninstalled_app_keeps_the_alert_for_the_leads_until_it_is_reinstalled(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    fake, _port = slack
    for lead in LEADS:  # the leads have heard from the bot before: their DMs are known
        assert await loaded.dm(await _pid(loaded, lead), text_message("Welcome")) is not None
    fake.revoke("account_inactive")
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    await fb.deliver_alerts(loaded)
    assert await alerts(loaded) == {LEADS[0]: "pending", LEADS[1]: "pending"}
    assert await unreachable(loaded) == [], "the leads did nothing wrong"
    await each_lead_alerted_once_after_the_reinstall(loaded, fake)


@pytest.mark.parametrize("refusal", ["is_archived", "restricted_action", "channel_not_found"])
async def test_a_channel_that_refuses_posts_is_skipped_with_the_reason_and_the_others_get_it(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock, refusal: str
) -> None:
    fake, _port = slack
    for channel in ("C0UPDATES", "C0NEWS"):
        fake.add_channel(channel)
    fake.refuse_posts("C0UPDATES", refusal)
    bid = await publish(loaded, f"channels: slack:{fake.team}/C0UPDATES, slack:{fake.team}/C0NEWS")
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    clock.advance(timedelta(minutes=10))
    await sender.drain()
    got = {r.recipient.rsplit("/", 1)[-1]: r for r in await rows(loaded, bid)}
    assert got["C0UPDATES"].state == "skipped" and refusal in (got["C0UPDATES"].error or "")
    assert got["C0NEWS"].state == "sent" and copies(fake) == ["C0NEWS"]
    assert len([c for c in fake.called("chat.postMessage")
                if c.args.get("channel") == "C0UPDATES"]) == 1, "asked once, not retried"
    st = await service.status(loaded, bid)
    assert st.broadcast.state == "done" and any(refusal in why for why, _n in st.reasons)


async def test_people_not_yet_found_on_slack_wait_for_the_reinstall_not_skipped(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    """First contact while the app is uninstalled: the email lookup cannot be asked, which is
    not the same as "not on Slack"; the rows wait with the reason and go after the reinstall."""
    fake, _port = slack
    fake.revoke("token_revoked")
    bid = await publish(loaded)
    sender = Sender(loaded, limiter=Limiter(FAST))
    await sender.drain()
    waiting = await rows(loaded, bid)
    assert [r.state for r in waiting] == ["failed"] * 6, [(r.state, r.error) for r in waiting]
    assert all("reinstall" in (r.error or "") for r in waiting)
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=11))
        await sender.drain()
    assert len(copies(fake)) == 6 == len(set(copies(fake)))
    assert (await service.status(loaded, bid)).counts["sent"] == 6


async def test_a_shortcut_whose_trigger_expired_offers_the_form_by_ephemeral_button(
        loaded: Core) -> None:
    """views.open answers expired_trigger_id when the core took longer than Slack's 3 s: the
    person gets a button that opens the same form, never an error; shown ephemerally, not
    posted in their DM, which Slack keeps by name and time (N20)."""
    d = SlackDriver(loaded, FakeSlack(retry_after=0))
    await d.start()
    try:
        d.fake.trigger_ttl = 0.0  # the core was slower than the trigger's life
        await d.shortcut(PRACTITIONER, "feedback.open")
        assert d.adapter is not None
        await d.adapter.drain()
        assert [c.args.get("trigger_id") for c in d.fake.called("views.open")], "it was tried"
        assert d.fake.open_view(d.user(PRACTITIONER).id) is None
        offered = [t for t in d.shown_ephemerally(PRACTITIONER) if "Open the form" in t]
        assert len(offered) == 1 and not any("wrong" in t for t in d.shown_ephemerally(PRACTITIONER))
        assert d.seen(PRACTITIONER) == []
        d.fake.trigger_ttl = 3.0
        await d.tap(PRACTITIONER, "Open the form")
        form = d.form(PRACTITIONER)
        assert form is not None and form.form_id.startswith("feedback")
    finally:
        await d.close()


async def test_a_long_uninstall_never_gives_up_on_a_safeguarding_alert(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    """An alert is given up after MAX_ALERT_ATTEMPTS failed sends to a lead; the app being
    uninstalled for hours is not the lead's failure, so it does not count towards that."""
    fake, _port = slack
    for lead in LEADS:
        assert await loaded.dm(await _pid(loaded, lead), text_message("Welcome")) is not None
    fake.revoke("token_revoked")
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    for _ in range(fb.MAX_ALERT_ATTEMPTS + 5):  # a tick a minute for about an hour
        await fb.deliver_alerts(loaded)
    assert await alerts(loaded) == {LEADS[0]: "pending", LEADS[1]: "pending"}
    await each_lead_alerted_once_after_the_reinstall(loaded, fake)


async def test_an_uninstall_never_fails_an_alert_to_a_lead_not_yet_looked_up(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    """The leads were never DMed before (no stored Slack account), so the alert
    must look them up by email; while the token is refused the lookup cannot be asked.
    That is the app's problem, not the lead's: the alert must still be pending after the
    long uninstall, and reach them after the reinstall."""
    fake, _port = slack
    fake.revoke("token_revoked")
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    for _ in range(fb.MAX_ALERT_ATTEMPTS + 5):  # a tick a minute for about an hour
        await fb.deliver_alerts(loaded)
    assert await alerts(loaded) == {LEADS[0]: "pending", LEADS[1]: "pending"}
    assert await unreachable(loaded) == [], "the leads did nothing wrong"
    await each_lead_alerted_once_after_the_reinstall(loaded, fake)


async def test_a_row_in_doubt_during_an_uninstall_is_not_sent_twice_after_the_reinstall(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    """A sender posts a DM and dies before recording it (the row goes back in doubt);
    the app is uninstalled before another sender looks for that post. The look is refused
    (AppNotAuthorised): the row waits, and after the reinstall it must still be looked up
    before any resend: the person holds one copy."""
    from bot.broadcasts import ledger
    fake, port = slack
    bid = await publish(loaded)
    dead = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST))
    claimed = await ledger.claim(loaded.db, dead.id, clock.now(), 10, dead.lease)
    assert len(claimed) == 6
    msg = service.render((await service.status(loaded, bid)).broadcast)
    for row in claimed:
        target = await dead._target(row)
        assert target is not None
        await port.send_keyed(target[1], msg, row.id)  # posted; the sender dies after these
    assert len(copies(fake)) == 6
    clock.advance(dead.lease + timedelta(seconds=1))
    await ledger.release_stale(loaded.db, clock.now())
    fake.revoke("token_revoked")
    sender = Sender(loaded, sender_id="replica-b", limiter=Limiter(FAST))
    await sender.drain()
    async with reinstalled(loaded, fake):
        clock.advance(timedelta(minutes=11))
        await sender.drain()
    assert len(copies(fake)) == 6, [(r.state, r.error) for r in await rows(loaded, bid)]
    assert [r.state for r in await rows(loaded, bid)] == ["sent"] * 6


async def test_a_slack_outage_longer_than_the_retries_never_loses_a_safeguarding_alert(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    """Slack answers `service_unavailable` to every post for about an hour (an incident on
    its status page), then recovers. The outage is Slack's, not the leads': like an
    uninstall, it must not count towards giving an alert up, and the first tick after it
    alerts each lead once.

    Before: each failed tick counted as one of MAX_ALERT_ATTEMPTS (50: 25 minutes at the
    scheduler's 30 s tick), the alerts were marked failed, and after the outage no lead was
    ever told of the disclosure (it waited in their queue, unannounced)."""
    fake, _port = slack
    for lead in LEADS:
        assert await loaded.dm(await _pid(loaded, lead), text_message("Welcome")) is not None
    fake.failures["chat.postMessage"] = ["service_unavailable"] * 1000
    fake.tiers = False  # ticks 30 s apart never meet the 1-a-second limit; here they run back to back
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    for _ in range(fb.MAX_ALERT_ATTEMPTS + 5):  # a tick every 30 s for about half an hour
        await fb.deliver_alerts(loaded)
    assert [urgent_in_dm(fake, lead) for lead in LEADS] == [0, 0]
    assert await alerts(loaded) == {LEADS[0]: "pending", LEADS[1]: "pending"}
    assert await unreachable(loaded) == [], "the leads did nothing wrong"
    fake.failures.clear()  # Slack is back
    assert await fb.deliver_alerts(loaded) == 2
    assert [urgent_in_dm(fake, lead) for lead in LEADS] == [1, 1]
    assert await alerts(loaded) == {LEADS[0]: "sent", LEADS[1]: "sent"}


async def test_an_alert_slack_took_but_never_answered_is_not_sent_again_every_tick(
    loaded: Core, slack: tuple[FakeSlack, SlackPort]
) -> None:
    """Slack is slow for about half an hour: it posts each message, but its answer never
    comes back in time (a timeout: the outcome unknown to us). The alert is not counted
    towards giving up (N45), so it is tried at every tick; before each try the bot asks
    Slack whether the alert already landed (the alert's key in the message's metadata, as a
    broadcast does), so each lead holds it once.

    Before: one more URGENT copy in each lead's DM at every tick for as long as Slack was
    slow (31 each here); before N45, up to MAX_ALERT_ATTEMPTS (50) copies, then `failed`."""
    from bot.port import TransientError

    fake, port = slack
    for lead in LEADS:
        assert await loaded.dm(await _pid(loaded, lead), text_message("Welcome")) is not None
    fake.tiers = False  # ticks 30 s apart never meet the 1-a-second limit; here they run back to back
    slow = {"on": True}
    post = port._post

    async def answered_late(*args: object, **kwargs: object) -> object:
        ref = await post(*args, **kwargs)  # type: ignore[arg-type]
        if slow["on"]:
            raise TransientError("slack: TimeoutError")  # posted; the answer lost
        return ref

    port._post = answered_late  # type: ignore[method-assign]
    slow["on"] = False  # an alert on an ordinary day: sent, and Slack is not asked about it
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    assert await fb.deliver_alerts(loaded) == 2
    assert fake.called("conversations.history") == []  # (1 a minute for distributed apps)
    slow["on"] = True
    await fb.store(loaded, await _pid(loaded, CHANGE), text=CONCERN, theme_id=None,
                   replies=False, concerns=["child_risk"])
    for _ in range(30):
        await fb.deliver_alerts(loaded)
    slow["on"] = False
    await fb.deliver_alerts(loaded)
    assert [urgent_in_dm(fake, lead) for lead in LEADS] == [2, 2]
    assert set((await alerts(loaded)).values()) == {"sent"}
    await fb.deliver_alerts(loaded)
    assert [urgent_in_dm(fake, lead) for lead in LEADS] == [2, 2]
