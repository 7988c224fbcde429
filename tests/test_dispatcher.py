"""The dispatcher: routing, duplicate events, refusals and failures that never show a traceback."""

from __future__ import annotations

from bot.core import Core
from bot.model import ActionEvent, MessageEvent
from bot.people import held
from bot.people.tables import PersonRole
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.fake import FakeDriver

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"


async def test_the_same_event_twice_is_handled_once_even_after_a_restart(loaded: Core) -> None:
    d = FakeDriver(loaded)
    ev = MessageEvent("slack-Ev123", d.user(PRACTITIONER), d.conv(PRACTITIONER), text="whoami")
    await loaded.handle(ev, d.port)
    again = await loaded.handle(ev, d.port)
    assert again.duplicate
    # A new Core on the same database (a restarted process) still drops it.
    restarted = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    third = await restarted.handle(ev, d.port)
    assert third.duplicate
    assert len(replies(d.seen(PRACTITIONER))) == 1


async def test_a_practitioner_asking_for_a_change_team_action_is_refused_and_nothing_changes(
    loaded: Core,
) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "grant change team practitioner2@northbridge.example")
    assert "only the change team can do that" in d.seen(PRACTITIONER)[-1]
    assert "Nothing was changed" in d.seen(PRACTITIONER)[-1]
    async with loaded.db.session() as s:
        rows = (await s.execute(PersonRole.__table__.select().where(PersonRole.role == "change_team"))).all()
    assert len(rows) == 2  # only the two from the programme file


async def test_the_change_team_can_grant_a_role_in_chat(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "grant change team practitioner2@northbridge.example")
    assert "is now one of the change team" in d.seen(CHANGE)[-1]
    await d.say("practitioner2@northbridge.example", "help")
    assert "broadcast" in d.seen("practitioner2@northbridge.example")[-1] or "grant" in d.seen(
        "practitioner2@northbridge.example")[-1]


async def test_unknown_words_get_a_pointer_to_help(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "flibbertigibbet")
    assert "Type “help”" in d.seen(PRACTITIONER)[-1]
    assert "*" not in d.seen(PRACTITIONER)[-1]  # Teams shows text as written: no mrkdwn


async def test_an_unknown_button_is_a_friendly_message(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.handle(
        ActionEvent("a1", d.user(PRACTITIONER), d.conv(PRACTITIONER), action_id="nope.x", value="1"),
        d.port,
    )
    assert d.seen(PRACTITIONER)[-1] == "That button is no longer active."


async def test_a_crash_in_a_handler_is_a_polite_reply_and_the_event_can_be_retried(
    loaded: Core, caplog
) -> None:
    calls = []

    async def boom(ctx, args):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("database exploded with secret detail")

    loaded.router.command("boom", boom, "test only", hidden=True)
    d = FakeDriver(loaded)
    ev = MessageEvent("boom-1", d.user(PRACTITIONER), d.conv(PRACTITIONER), text="boom")
    result = await loaded.handle(ev, d.port)
    assert not result.handled
    shown = d.seen(PRACTITIONER)[-1]
    assert "something went wrong on our side" in shown
    assert "Traceback" not in shown and "secret detail" not in shown
    # The failure released the event id, so the platform's redelivery is tried again.
    await loaded.handle(ev, d.port)
    assert len(calls) == 2


async def self_enrol(core: Core) -> None:
    """Let people not listed in the programme enrol themselves (organisation.self_enrol)."""
    from bot.people.service import ENROLMENT
    from bot.programme.core_sections import set_setting

    async with core.db.session() as s:
        await set_setting(s, ENROLMENT, {"self_enrol": True, "contact": ""})


async def test_two_first_events_from_a_new_user_at_once_both_succeed(loaded: Core) -> None:
    import asyncio

    from bot.model import UserRef

    await self_enrol(loaded)
    d = FakeDriver(loaded)
    newcomer = UserRef("fake", "W1", "U-NEW", email="newcomer@northbridge.example")
    events = [
        MessageEvent(f"race-{i}", newcomer, d.conv("newcomer@northbridge.example"), text="whoami")
        for i in range(4)
    ]
    results = await asyncio.gather(*(loaded.handle(e, d.port) for e in events))
    assert all(r.handled and r.error is None for r in results)
    seen = d.seen("newcomer@northbridge.example")
    assert len(seen) - len(replies(seen)) == 1  # the privacy notice, once
    seen = replies(seen)
    assert len(seen) == 4 and not any("went wrong" in m for m in seen)


async def test_what_is_kept_of_an_event_names_nobody_and_no_precise_time(loaded: Core) -> None:
    """Slack action ids embed the user and a precise time; none of it is stored."""
    from sqlalchemy import select

    from bot.dispatch_tables import ProcessedEvent

    d = FakeDriver(loaded)
    raw = "T1:U-practitioner1@northbridge.example:1764496812.123456:pulse.answer"
    await loaded.handle(
        MessageEvent(raw, d.user(PRACTITIONER), d.conv(PRACTITIONER), text="whoami"), d.port
    )
    async with loaded.db.session() as s:
        rows = (await s.execute(select(ProcessedEvent))).scalars().all()
    assert len(rows) == 1
    assert "practitioner1" not in rows[0].event_id and "1764496812" not in rows[0].event_id
    assert (rows[0].seen_at.minute, rows[0].seen_at.second, rows[0].seen_at.microsecond) == (0, 0, 0)


async def test_handled_event_ids_are_forgotten_after_a_week(loaded: Core) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select

    from bot.dispatch_tables import ProcessedEvent

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")
    loaded.clock.advance(timedelta(days=8))  # type: ignore[attr-defined]
    await d.say(PRACTITIONER, "whoami")
    await loaded.tick()
    async with loaded.db.session() as s:
        left = (await s.execute(select(func.count()).select_from(ProcessedEvent))).scalar_one()
    assert left == 1


async def test_a_role_granted_in_chat_can_be_revoked_and_then_it_is_refused(loaded: Core) -> None:
    d = FakeDriver(loaded)
    p2 = "practitioner2@northbridge.example"
    await d.say(CHANGE, f"grant change team {p2}")
    await d.say(CHANGE, f"revoke change team {p2}")
    assert d.seen(CHANGE)[-1] == f"{p2} is no longer one of the change team."
    await d.say(CHANGE, f"revoke change team {p2}")
    assert d.seen(CHANGE)[-1] == f"{p2} was not one of the change team."
    await d.say(p2, "grant leader practitioner3@northbridge.example")
    assert "only the change team can do that" in d.seen(p2)[-1]


async def test_over_long_ids_and_a_made_up_time_zone_are_refused_or_ignored(loaded: Core) -> None:
    from sqlalchemy import func, select

    from bot.model import UserRef
    from bot.people.tables import Identity, Person

    await self_enrol(loaded)
    d = FakeDriver(loaded)
    long_user = UserRef("fake", "W1", "U" * 300, email="x@northbridge.example")
    result = await loaded.handle(
        MessageEvent("long-1", long_user, d.conv("x@northbridge.example"), text="whoami"), d.port)
    assert result.error == "invalid" and not result.handled
    odd = UserRef("fake", "W1", "U-ODD", email="odd@northbridge.example", tz="Mars/" + "x" * 500,
                  display_name="n" * 5000)
    await loaded.handle(MessageEvent("odd-1", odd, d.conv("odd@northbridge.example"), text="whoami"),
                        d.port)
    async with loaded.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Identity).where(
            Identity.user_id == "U" * 300))).scalar_one() == 0
        person = (await s.execute(select(Person).where(Person.email == "odd@northbridge.example"))).scalar_one()
    assert person.tz is None and len(person.display_name) == 200


async def test_a_known_sender_gets_the_same_person_roles_and_dm_route_as_the_full_lookup(
    loaded: Core,
) -> None:
    """The dispatcher's one-statement lookup of a known user agrees with person_for/roles_of."""
    from dataclasses import replace

    from bot.people import service as people
    from bot.people.tables import Identity

    d = FakeDriver(loaded)
    lead = "lead.frontdoor@northbridge.example"
    seen: list[object] = []

    async def spy(c, args):  # type: ignore[no-untyped-def]
        seen.append((c.person, c.roles))

    loaded.router.command("spy", spy, "test only", hidden=True)
    for email in (PRACTITIONER, CHANGE, lead):
        await d.say(email, "whoami")  # the first event links the identity (full path)
        async with loaded.db.session() as s:
            full = await people.person_for(s, d.user(email))
            full_roles = await people.roles_of(s, full.id)
        await d.say(email, "spy")
        person, roles = seen[-1]  # type: ignore[misc]
        assert (person.id, person.email, person.team_id, person.tz) == (
            full.id, full.email, full.team_id, full.tz)
        assert roles == full_roles
    assert "team_lead" in roles and "practitioner" in roles  # the last one leads a team
    # A new DM route is remembered: used at once by this process, stored by the flusher
    # (bot/people/held.py), undated.
    await held.flush(loaded)
    moved = replace(d.conv(PRACTITIONER), conversation_id="D-NEW")
    await loaded.handle(MessageEvent("moved-1", d.user(PRACTITIONER), moved, text="whoami"), d.port)
    async with loaded.db.session() as s:
        ident = await s.get(Identity, ("fake", d.port.workspace, f"U-{PRACTITIONER}"))
        assert ident is not None and ident.dm is not None
        assert ident.dm["conversation_id"] != "D-NEW"  # not in the message's transaction
    assert held.held(loaded).routes[("fake", d.port.workspace, f"U-{PRACTITIONER}")][
        "conversation_id"] == "D-NEW"
    await held.flush(loaded)
    async with loaded.db.session() as s:
        ident = await s.get(Identity, ("fake", d.port.workspace, f"U-{PRACTITIONER}"))
        assert ident is not None and ident.dm is not None
        assert ident.dm["conversation_id"] == "D-NEW" and ident.updated_at is None


# -- actions that continue the dispatcher's transaction (Router.action(joins=True)) ---------


async def _open_pulse(loaded: Core) -> tuple[FakeDriver, object]:
    from bot.model import RatingScale

    d = FakeDriver(loaded)
    await loaded.tick()  # the weekly pulse opens and invites
    posted = d.port.messages(d.conv(PRACTITIONER).conversation_id)[-1]
    scale = next(b for b in posted.message.blocks if isinstance(b, RatingScale))
    return d, (posted, scale)


async def test_a_pulse_tap_and_its_answer_are_one_commit(loaded: Core) -> None:
    from sqlalchemy import event

    d, (posted, scale) = await _open_pulse(loaded)
    commits: list[int] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(loaded.db.engine.sync_engine, "commit", listener)
    try:
        await loaded.handle(ActionEvent("tap-1", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                        action_id=scale.action_id, value="4",
                                        message=posted.ref), d.port)
    finally:
        event.remove(loaded.db.engine.sync_engine, "commit", listener)
    assert "Saved your answer" in d.seen(PRACTITIONER)[-1]
    assert len(commits) == 1


async def test_a_joining_action_whose_work_is_an_orm_session_is_one_commit_too(
    loaded: Core,
) -> None:
    """The handler does not know whether it joined: a session continues the transaction as a
    connection does, and a failure in it leaves neither the effect nor the event."""
    from sqlalchemy import event, select

    from bot.dispatch_tables import ProcessedEvent
    from bot.people.tables import Setting

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")  # known sender: admission joins at once

    async def remember(ctx):  # type: ignore[no-untyped-def]
        async with ctx.session() as s:
            s.add(Setting(key=f"tapped-{ctx.event.value}", value=1))
            if ctx.event.value == "boom":
                raise RuntimeError("disk on fire")

    loaded.router.action("test.remember", remember, joins=True)
    commits: list[int] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(loaded.db.engine.sync_engine, "commit", listener)
    try:
        ok = await loaded.handle(ActionEvent("jo-1", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                             action_id="test.remember", value="ok"), d.port)
    finally:
        event.remove(loaded.db.engine.sync_engine, "commit", listener)
    assert ok.error is None and len(commits) == 1
    failed = await loaded.handle(ActionEvent("jo-2", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                             action_id="test.remember", value="boom"), d.port)
    assert failed.error == "internal"
    async with loaded.db.session() as s:
        keys = set((await s.execute(select(Setting.key))).scalars())
        seen = await s.get(ProcessedEvent, loaded.event_key("jo-2"))
    assert "tapped-ok" in keys and "tapped-boom" not in keys and seen is None


async def test_a_tap_that_fails_while_storing_leaves_no_trace_and_its_redelivery_counts(
    loaded: Core, monkeypatch
) -> None:
    from sqlalchemy import func, select

    from bot.dispatch_tables import ProcessedEvent
    from bot.pulse import service as pulse
    from bot.pulse.tables import PulsePending

    d, (posted, scale) = await _open_pulse(loaded)

    async def count(table: type) -> int:
        async with loaded.db.session() as s:
            return int((await s.execute(select(func.count()).select_from(table))).scalar_one())

    before = await count(ProcessedEvent)
    real = pulse.respondent

    async def broken(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pulse, "respondent", broken)  # after the answer's upsert, same transaction
    tap = ActionEvent("tap-2", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                      action_id=scale.action_id, value="2", message=posted.ref)
    result = await loaded.handle(tap, d.port)
    assert result.error == "internal" and "went wrong on our side" in d.seen(PRACTITIONER)[-1]
    assert await count(PulsePending) == 0 and await count(ProcessedEvent) == before
    monkeypatch.setattr(pulse, "respondent", real)
    again = await loaded.handle(tap, d.port)  # the platform redelivers it
    assert not again.duplicate and await count(PulsePending) == 1


async def test_a_joining_action_that_replies_first_holds_no_lock_during_the_reply(
    loaded: Core,
) -> None:
    """Platform output commits the dispatcher's transaction first: a write from elsewhere
    during the reply (another request, another process) does not wait on this event."""
    import asyncio

    from bot.model import text_message
    from bot.people.tables import Setting

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")  # known sender
    wrote: list[str] = []
    real_send = d.port.send

    async def send(conv, message):  # type: ignore[no-untyped-def]
        async def write() -> None:
            async with loaded.db.session() as s:
                s.add(Setting(key="written-during-reply", value=1))
        await asyncio.wait_for(write(), 5)
        wrote.append("yes")
        return await real_send(conv, message)

    d.port.send = send  # type: ignore[method-assign]

    async def reply_first(ctx):  # type: ignore[no-untyped-def]
        await ctx.reply(text_message("on it"))
        async with ctx.connection() as conn:
            await conn.execute(Setting.__table__.delete().where(Setting.key == "nothing"))

    loaded.router.action("test.replyfirst", reply_first, joins=True)
    result = await loaded.handle(ActionEvent("rf-1", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                             action_id="test.replyfirst", value="x"), d.port)
    assert result.error is None and wrote == ["yes"]
    assert d.seen(PRACTITIONER)[-1] == "on it"


async def test_a_pulse_tap_while_the_database_is_down_is_a_polite_sorry_and_counts_later(
    loaded: Core,
) -> None:
    from sqlalchemy import func, select

    from bot.pulse.tables import PulsePending
    from tests.hardening.outage import Outage

    d, (posted, scale) = await _open_pulse(loaded)
    tap = ActionEvent("tap-down", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                      action_id=scale.action_id, value="5", message=posted.ref)
    outage = Outage(loaded.db)
    try:
        async with outage.during():
            result = await loaded.handle(tap, d.port)
    finally:
        outage.remove()
    assert result.error == "internal"  # (PostgreSQL refuses the connection itself)
    assert "went wrong on our side" in d.seen(PRACTITIONER)[-1]
    again = await loaded.handle(tap, d.port)
    assert not again.duplicate and again.error is None
    async with loaded.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(PulsePending))).scalar_one() == 1


async def test_a_reply_to_a_tap_without_a_conversation_goes_to_the_stored_dm_route(
    loaded: Core, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """Admission reads the sender's DM route; a reply with nowhere else to go uses it without
    looking the person's identities up, and a route that no longer works marks the identity
    unreachable, as the full lookup does."""
    from bot.people import service as people
    from bot.people.tables import Identity

    lookups: list[str] = []
    real = people.identities_of

    async def counted(s, person_id):  # type: ignore[no-untyped-def]
        lookups.append(person_id)
        return await real(s, person_id)

    monkeypatch.setattr(people, "identities_of", counted)
    d = FakeDriver(loaded)
    replies: list[str] = []

    async def answer(c):  # type: ignore[no-untyped-def]
        replies.append(str(c.sender_dm and c.sender_dm["conversation_id"]))
        await c.say("Noted.")

    loaded.router.action("probe.", answer)
    await d.say(PRACTITIONER, "whoami")  # links the identity and stores the DM route
    tap = ActionEvent("probe-1", d.user(PRACTITIONER), None, action_id="probe.x", value="1")
    lookups.clear()
    await loaded.handle(tap, d.port)
    assert replies == [d.conv(PRACTITIONER).conversation_id]
    assert d.seen(PRACTITIONER)[-1] == "Noted."
    assert lookups == []  # straight to the route admission read
    d.port.blocked.add(f"U-{PRACTITIONER}")
    await loaded.handle(ActionEvent("probe-2", d.user(PRACTITIONER), None, action_id="probe.x",
                                    value="1"), d.port)
    await held.flush(loaded)  # the link and what became of the route (bot/people/held.py)
    async with loaded.db.session() as s:
        ident = await s.get(Identity, ("fake", d.port.workspace, f"U-{PRACTITIONER}"))
    assert ident is not None and not ident.reachable
    assert d.seen(PRACTITIONER)[-1] == "Noted."  # nothing more reached the blocked DM


async def test_first_contact_asks_the_platform_with_no_database_connection_held(
    loaded: Core,
) -> None:
    """Finding someone by email is an HTTP call per platform: no pooled connection (on
    PostgreSQL an idle transaction) waits for it, and the account found is stored."""
    from sqlalchemy import select

    from bot.model import text_message
    from bot.people import service as people
    from bot.people.tables import Identity

    d = FakeDriver(loaded)
    held: list[int] = []
    real = d.port.find_user

    async def find_user(email: str):  # type: ignore[no-untyped-def]
        held.append(loaded.db.engine.pool.checkedout())
        return await real(email)

    d.port.find_user = find_user  # type: ignore[method-assign]
    newcomer = "practitioner7@northbridge.example"
    async with loaded.db.session() as s:
        person = await people.person_by_email(s, newcomer)
        assert person is not None
        assert (await s.execute(select(Identity).where(Identity.person_id == person.id))).first() is None
    sent = await loaded.dm(person.id, text_message("Welcome."))
    assert sent is not None and held == [0]
    assert d.seen(newcomer) == ["Welcome."]
    async with loaded.db.session() as s:
        idents = (await s.execute(select(Identity).where(Identity.person_id == person.id))).scalars().all()
    assert [(i.platform, i.user_id) for i in idents] == [("fake", f"U-{newcomer}")]


async def test_middleware_wraps_every_event_outermost_first_and_sees_the_outcome(loaded: Core) -> None:
    """Core.use: what metrics (staffvoice/serve/metrics.py) and similar concerns hook into,
    instead of replacing Core.handle."""
    d = FakeDriver(loaded)
    seen: list[str] = []

    def tracer(name: str):  # type: ignore[no-untyped-def]
        async def mw(event, port, call_next):  # type: ignore[no-untyped-def]
            seen.append(f"{name} in {event.event_id}")
            result = await call_next()
            seen.append(f"{name} out {'duplicate' if result.duplicate else 'ok'}")
            return result

        return mw

    loaded.use(tracer("outer"))
    loaded.use(tracer("inner"))
    ev = MessageEvent("ev-mw", d.user(PRACTITIONER), d.conv(PRACTITIONER), text="whoami")
    await loaded.handle(ev, d.port)
    await loaded.handle(ev, d.port)
    assert seen == ["outer in ev-mw", "inner in ev-mw", "inner out ok", "outer out ok",
                    "outer in ev-mw", "inner in ev-mw", "inner out duplicate", "outer out duplicate"]
    assert len(replies(d.seen(PRACTITIONER))) == 1  # the answer went out once
    assert "handle" not in vars(loaded)  # nobody replaced the method


async def test_a_feedback_form_and_its_admission_are_one_commit(loaded: Core) -> None:
    """The submission's de-duplication key and the item: one transaction (issue 22); a form
    refused for its content leaves neither, so the same submission can be sent again."""
    from sqlalchemy import event, func, select

    from bot.dispatch_tables import ProcessedEvent
    from bot.feedback.tables import FeedbackItem
    from bot.model import FormSubmitEvent

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "feedback")
    form = d.port.forms[f"U-{PRACTITIONER}"]

    def submission(event_id: str, text: str) -> FormSubmitEvent:
        return FormSubmitEvent(event_id, d.user(PRACTITIONER), None, form_id=form.form_id,
                               values={"text": text, "theme": "", "replies": "false"},
                               metadata=form.metadata)

    async def stored() -> tuple[int, bool]:
        async with loaded.db.session() as s:
            n = (await s.execute(select(func.count()).select_from(FeedbackItem))).scalar_one()
            return n, await s.get(ProcessedEvent, loaded.event_key("form-1")) is not None

    commits: list[int] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(loaded.db.engine.sync_engine, "commit", listener)
    try:
        refused = await loaded.handle(submission("form-1", "   "), d.port)
        assert refused.form_errors and await stored() == (0, False)
        commits.clear()
        sent = await loaded.handle(submission("form-1", "More time for network meetings."),
                                   d.port)
    finally:
        event.remove(loaded.db.engine.sync_engine, "commit", listener)
    assert sent.error is None and not sent.form_errors
    assert d.port.forms[f"U-{PRACTITIONER}"].title == "Feedback sent"
    assert await stored() == (1, True)
    assert len(commits) == 1
    again = await loaded.handle(submission("form-1", "More time for network meetings."), d.port)
    assert again.duplicate and await stored() == (1, True)


async def test_a_joined_feedback_form_holds_no_lock_while_the_platform_shows_a_form(
    loaded: Core,
) -> None:
    """The feedback form joins its admission's transaction (issue 22): while the platform
    shows "Before you send" and then the thanks, another writer does not wait on it, and a
    safeguarding form is stored once, after its author confirmed."""
    import asyncio

    from sqlalchemy import func, select

    from bot.feedback.tables import FeedbackItem
    from bot.model import FormSubmitEvent
    from bot.people.tables import Setting

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "feedback")
    shown: list[str] = []
    real_open = d.port.open_form

    async def open_form(event, form):  # type: ignore[no-untyped-def]
        async def write() -> None:
            async with loaded.db.session() as s:
                s.add(Setting(key=f"written-while-{form.form_id}-{len(shown)}", value=1))
        await asyncio.wait_for(write(), 5)
        shown.append(form.title)
        return await real_open(event, form)

    d.port.open_form = open_form  # type: ignore[method-assign]
    concern = "I saw a child being slapped by her mother in the waiting room."
    values = {"text": concern, "theme": "", "replies": "false"}
    form = d.port.forms[f"U-{PRACTITIONER}"]
    first = await loaded.handle(FormSubmitEvent("sg-a", d.user(PRACTITIONER), None,
                                                form_id=form.form_id, values=values,
                                                metadata=form.metadata), d.port)
    assert first.error is None and not first.form_errors
    async with loaded.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(FeedbackItem))).scalar_one() == 0
    confirm = d.port.forms[f"U-{PRACTITIONER}"]
    assert confirm.submit_label == "Send anyway"
    sent = await loaded.handle(FormSubmitEvent("sg-b", d.user(PRACTITIONER), None,
                                               form_id=confirm.form_id, values=values,
                                               metadata=confirm.metadata), d.port)
    assert sent.error is None and not sent.form_errors
    assert len(shown) == 2 and shown[-1] == "Feedback sent"
    async with loaded.db.session() as s:
        [item] = (await s.execute(select(FeedbackItem))).scalars().all()
    assert item.urgent and item.concerns == ["child_risk"]


async def test_a_joined_form_refused_before_its_first_block_leaves_no_key(loaded: Core) -> None:
    """A form that joins its admission's transaction and is refused (a role it lacks, a
    handler's UserError) before the handler's first database block: the refusal is shown in
    the form, the admission is rolled back rather than committed, so the same submission can
    be sent again once it is allowed."""
    import asyncio

    from bot.dispatch_tables import ProcessedEvent
    from bot.errors import UserError
    from bot.model import Form, FormSubmitEvent
    from bot.roles import CHANGE_TEAM

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")  # known sender
    ran: list[str] = []

    async def handler(ctx):  # type: ignore[no-untyped-def]
        if ctx.event.values.get("ok") != "yes":
            raise UserError("Not yet: nothing was sent.")
        async with ctx.connection():
            ran.append("stored")
        await ctx.open_form(Form(form_id="test.done", title="Done", inputs=(), intro=(),
                                 submit_label="", close_label="Close"))

    loaded.router.form("test.joined", handler, joins=True)
    loaded.router.form("test.leads", handler, roles={CHANGE_TEAM}, joins=True)

    async def kept(event_id: str) -> bool:
        async with loaded.db.session() as s:
            return await s.get(ProcessedEvent, loaded.event_key(event_id)) is not None

    for form_id, refused_values in (("test.joined", {"ok": "no"}), ("test.leads", {"ok": "yes"})):
        ev = FormSubmitEvent(f"{form_id}-1", d.user(PRACTITIONER), None, form_id=form_id,
                             values=refused_values, metadata="")
        result = await asyncio.wait_for(loaded.handle(ev, d.port), 10)
        assert result.form_errors and result.error is None, result
        assert not await kept(f"{form_id}-1")
    # Sent again, now allowed: not a duplicate.
    ev = FormSubmitEvent("test.joined-1", d.user(PRACTITIONER), None, form_id="test.joined",
                         values={"ok": "yes"}, metadata="")
    result = await loaded.handle(ev, d.port)
    assert not result.duplicate and ran == ["stored"] and await kept("test.joined-1")
