"""Stories: anonymous feedback on the core's fake driver, and what is stored, sealed and logged."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import logs
from bot.core import Core
from bot.feedback import counts, sealing
from bot.feedback import service as fb
from bot.feedback.tables import (
    FeedbackDailyCount,
    FeedbackHandle,
    FeedbackItem,
    FeedbackMessage,
    FeedbackResponse,
)
from bot.model import ActionEvent, FormSubmitEvent
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import (
    CHANGE,
    LEADS,
    OTHER,
    PRACTITIONER,
    REF,
    give,
    identity_strings,
    ref_for,
    release,
)

IDEA = "Group supervision keeps getting cancelled at short notice."
CONCERN = "I saw a child being slapped by her mother in the waiting room."


async def items(core: Core) -> list[FeedbackItem]:
    async with core.db.session() as s:
        return list((await s.execute(select(FeedbackItem))).scalars())


async def handles(core: Core) -> list[FeedbackHandle]:
    async with core.db.session() as s:
        return list((await s.execute(select(FeedbackHandle))).scalars())


def urgent_seen(d: FakeDriver, email: str) -> list[str]:
    return [m for m in d.seen(email) if m.startswith("URGENT")]


async def test_feedback_typed_into_the_chat_is_not_kept_and_the_form_opens(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "feedback my manager cancels supervision")
    assert "I haven't kept what you typed" in d.seen(PRACTITIONER)[-1]
    form = d.form(PRACTITIONER)
    assert form is not None and form.form_id == "feedback.submit"
    names = [i.name for i in form.inputs]
    assert names == ["text", "theme", "replies"]
    assert form.inputs[0].max_length == 2000  # type: ignore[union-attr]
    assert {o.value for o in form.inputs[1].options} >= {"workload", "supervision"}  # type: ignore[union-attr]
    assert await items(loaded) == []


async def test_the_open_action_lets_an_adapter_offer_a_feedback_button(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.handle(ActionEvent("a-open", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                    action_id="feedback.open", value="open", trigger="t"), d.port)
    assert d.form(PRACTITIONER) is not None


async def test_a_stored_item_has_no_author_a_day_and_a_sealed_route(loaded: Core) -> None:
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, IDEA, theme="supervision", replies=True) is None
    [item] = await items(loaded)
    assert item.text == IDEA and item.day == date(2026, 11, 30) and item.theme_id == "supervision"
    assert not item.urgent and item.status == "new"
    [handle] = await handles(loaded)
    who = await identity_strings(loaded.db, PRACTITIONER)
    assert not any(w.encode() in handle.sealed for w in who)
    route = sealing.open_sealed(loaded.secret, handle.id, handle.sealed)
    assert route.person_id in who
    # Without the server key, or moved to another row, the route does not open.
    with pytest.raises(sealing.RouteUnavailable):
        sealing.open_sealed(b"another-server-key-32-bytes-long", handle.id, handle.sealed)
    with pytest.raises(sealing.RouteUnavailable):
        sealing.open_sealed(loaded.secret, "some-other-handle", handle.sealed)


async def test_reply_answer_back_and_revoke_through_the_sealed_route(loaded: Core) -> None:
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, IDEA, replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    ref = REF.search(d.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Which day would suit you better?"}) is None
    assert "The author is told there is an answer when the app can reach them" in d.seen(CHANGE)[-1]
    assert d.seen(PRACTITIONER)[-1].startswith("The change team answered your feedback")
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": "Tuesdays, please."}) is None
    async with loaded.db.session() as s:
        # As the author reads it: readable messages, then their answer waiting for its release
        # (numbered below zero until the release places it after the replies, N27).
        thread = sorted((await s.execute(select(FeedbackMessage))).scalars(),
                        key=lambda m: (m.seq < 0, abs(m.seq)))
    assert [(m.sender, m.text) for m in thread] == [
        ("team", "Which day would suit you better?"), ("author", "Tuesdays, please.")]
    assert thread[1].team_person_id is None

    # Someone else tapping a forwarded button is refused.
    token = next(o.value for p in d.port.messages(d.conv(PRACTITIONER).conversation_id)
                 for b in p.message.blocks if getattr(b, "action_id", "") == "feedback.revoke"
                 for o in b.options)  # type: ignore[attr-defined]
    await loaded.handle(ActionEvent("fwd", d.user(OTHER), d.conv(OTHER), action_id="feedback.read",
                                    value=token, trigger="t"), d.port)
    assert "Only the person who sent this feedback" in d.seen(OTHER)[-1]

    [before] = await handles(loaded)
    await d.tap(PRACTITIONER, "Stop replies")
    # The route is destroyed where it lies (tests/anonymity/test_stopping_replies.py): random
    # bytes that no key opens, and a token key no button matches; the row goes at 90 days.
    [after] = await handles(loaded)
    assert after.id == before.id and after.sealed != before.sealed
    assert after.token_key != before.token_key
    with pytest.raises(sealing.RouteUnavailable):
        sealing.open_sealed(loaded.secret, after.id, after.sealed)
    # The stale buttons and a forged answer form are all refused; the thread is unchanged.
    await loaded.handle(ActionEvent("old", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                    action_id="feedback.read", value=token, trigger="t"), d.port)
    assert "this conversation is closed" in d.seen(PRACTITIONER)[-1]
    res = await loaded.handle(FormSubmitEvent("forged", d.user(PRACTITIONER), None,
                                              form_id="feedback.answer", values={"text": "hi"},
                                              metadata=f"{token}|ack:"), d.port)
    assert res.form_errors and "closed" in res.form_errors["_"]
    # The change team is told nothing new: a reply is saved as before and reaches nobody.
    seen = len(d.seen(PRACTITIONER))
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Anything else?"}) is None
    assert "The author is told there is an answer when the app can reach them" in d.seen(CHANGE)[-1]
    assert len(d.seen(PRACTITIONER)) == seen


async def test_a_revoked_route_leaves_no_copy_in_the_sqlite_file(loaded: Core) -> None:
    if not loaded.db.is_sqlite:
        pytest.skip("file scan is for SQLite; PostgreSQL keeps dead tuples until VACUUM")
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, IDEA, replies=True) is None
    [handle] = await handles(loaded)
    sealed = bytes(handle.sealed)
    await d.say(PRACTITIONER, "feedback stop replies")
    assert "replies to any feedback of yours are stopped" in d.seen(PRACTITIONER)[-1]
    path = Path(loaded.db.url.split("///", 1)[1])
    async with loaded.db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert sealed[12:40] not in raw


async def test_a_safeguarding_item_shows_the_routes_again_then_reaches_each_lead_once(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(OTHER, "feedback")
    values = {"text": CONCERN, "theme": "", "replies": "false"}
    assert await d.submit(OTHER, values) is None
    confirm = d.form(OTHER)
    assert confirm is not None and confirm.submit_label == "Send anyway"
    assert "possible risk to a child" in "\n".join(getattr(b, "text", "") for b in confirm.intro)
    assert confirm.inputs[0].initial == CONCERN  # type: ignore[union-attr]
    assert await items(loaded) == []  # not stored before the author confirms
    form = d.port.forms[f"U-{OTHER}"]
    ev = FormSubmitEvent("sg-1", d.user(OTHER), None, form_id=form.form_id, values=values,
                         metadata=form.metadata, trigger="t")
    await loaded.handle(ev, d.port)
    again = await loaded.handle(ev, d.port)  # the platform redelivers the submission
    assert again.duplicate
    [item] = await items(loaded)
    assert item.urgent and item.concerns == ["child_risk"]
    for lead in LEADS:
        assert len(urgent_seen(d, lead)) == 1 and CONCERN in urgent_seen(d, lead)[0]
    await loaded.tick()
    await fb.deliver_alerts(loaded)
    for lead in LEADS:
        assert len(urgent_seen(d, lead)) == 1
    thanks = d.form(OTHER)  # shown in the form: nothing in the DM (docs/invariants.md N19)
    assert thanks is not None and thanks.notice
    assert any("went to the safeguarding leads straight away" in getattr(b, "text", "")
               for b in thanks.intro)
    assert not any("sent anonymously" in m for m in d.seen(OTHER))


async def test_an_unreachable_lead_gets_the_alert_once_when_reachable_again(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(LEADS[1], "help")  # known to the fake platform
    d.port.blocked.add(f"U-{LEADS[1]}")
    assert await give(d, OTHER, "My supervisor has been bullying me for months.") is None
    assert len(urgent_seen(d, LEADS[0])) == 1 and urgent_seen(d, LEADS[1]) == []
    d.port.blocked.clear()
    await loaded.tick()
    assert urgent_seen(d, LEADS[1]) == []  # still marked unreachable until they talk to the bot
    await d.say(LEADS[1], "help")
    await loaded.tick()
    await loaded.tick()
    assert len(urgent_seen(d, LEADS[0])) == 1 and len(urgent_seen(d, LEADS[1])) == 1


async def test_identifiers_are_warned_about_and_never_silently_altered(loaded: Core) -> None:
    d = FakeDriver(loaded)
    text = "Mrs Patel on reception gave my number 07700 900123 to a parent."
    await d.say(PRACTITIONER, "feedback")
    assert await d.submit(PRACTITIONER, {"text": text, "replies": "false"}) is None
    warn = d.form(PRACTITIONER)
    assert warn is not None and warn.title == "Before you send"
    shown = "\n".join(getattr(b, "text", "") for b in warn.intro)
    assert "what looks like a person's name and a phone number" in shown
    assert warn.inputs[0].initial == text  # type: ignore[union-attr]
    edited = "Reception gave my personal number to a parent."
    assert await d.submit(PRACTITIONER, {"text": edited, "replies": "false"}) is None
    assert [i.text for i in await items(loaded)] == [edited]
    # Sent anyway: stored exactly as written.
    assert await give(d, OTHER, text) is None
    assert text in [i.text for i in await items(loaded)]


async def test_over_long_and_giant_text_is_refused_with_the_limit_and_nothing_stored(loaded: Core) -> None:
    d = FakeDriver(loaded)
    for size in (2001, 100_000):
        await d.say(PRACTITIONER, "feedback")
        errors = await d.submit(PRACTITIONER, {"text": "x" * size, "replies": "false"})
        assert errors is not None and "the limit is 2,000" in errors["text"]
        assert f"{size:,} characters" in errors["text"]
        d.port.forms.clear()
    assert await items(loaded) == []


async def test_the_daily_limit_uses_a_keyed_counter_that_is_forgotten_the_next_day(loaded: Core) -> None:
    d = FakeDriver(loaded)
    for i in range(5):
        assert await give(d, PRACTITIONER, f"Idea number {'abcde'[i]} about the tools.") is None
    await d.say(PRACTITIONER, "feedback")
    assert d.form(PRACTITIONER) is not None  # refused in the form when sent, not the chat (N39)
    errors = await d.submit(PRACTITIONER, {"text": "A sixth idea.", "replies": "false"})
    assert not any("daily limit" in m for m in d.seen(PRACTITIONER))
    assert errors is not None and "daily limit" in errors["text"]
    await counts.flush(loaded)  # written in a batch, apart from the items
    async with loaded.db.session() as s:
        [row] = list((await s.execute(select(FeedbackDailyCount))).scalars())  # the day's one
    [counters] = (await counts.STAFF.every(loaded)).values()  # opened with the server key
    [(key, n)] = counters.items()
    who = await identity_strings(loaded.db, PRACTITIONER)
    assert n == 5 and not any(w in key or w.encode() in row.sealed for w in who)
    assert await give(d, OTHER, "Someone else can still send one.") is None

    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    await loaded.tick()
    async with loaded.db.session() as s:
        left = list((await s.execute(select(FeedbackDailyCount))).scalars())
    assert left == []
    assert await give(d, PRACTITIONER, "A new day, a new idea.") is None


async def test_a_form_left_open_past_the_daily_limit_is_refused_in_the_form(loaded: Core) -> None:
    """Two forms opened before the limit was reached: the second one sent is refused in the
    form itself with the limit's words, and neither the item nor the count moves."""
    d = FakeDriver(loaded)
    for i in range(4):
        assert await give(d, PRACTITIONER, f"Idea number {'abcd'[i]} about the tools.") is None
    await d.say(PRACTITIONER, "feedback")
    early = d.form(PRACTITIONER)
    assert await give(d, PRACTITIONER, "The fifth idea, about supervision.") is None
    d.port.forms[f"U-{PRACTITIONER}"] = early  # the form opened before the fifth was sent
    errors = await d.submit(PRACTITIONER, {"text": "A sixth idea.", "theme": "", "replies": "false"})
    assert errors is not None and "daily limit" in errors["text"]
    assert len(await items(loaded)) == 5
    await counts.flush(loaded)
    [counters] = (await counts.STAFF.every(loaded)).values()
    assert list(counters.values()) == [5]


async def test_listing_filters_by_theme_and_status_and_shuffles_within_a_day(loaded: Core) -> None:
    async with loaded.db.session() as s:
        for i in range(6):
            s.add(FeedbackItem(day=date(2026, 11, 30), theme_id="workload", text=f"w{i}", concerns=[]))
        s.add(FeedbackItem(day=date(2026, 11, 27), theme_id="workload", text="older", concerns=[]))
        s.add(FeedbackItem(day=date(2026, 11, 30), theme_id="tools", text="t", concerns=[]))
        s.add(FeedbackItem(day=date(2026, 11, 30), theme_id="workload", text="done", status="done",
                           concerns=[]))
    orders = set()
    async with loaded.db.session() as s:
        await release(loaded)
        for _ in range(8):
            got = [i.text for i in await fb.list_items(s, theme_id="workload")]
            assert got[-1] == "older" and sorted(got[:6]) == [f"w{i}" for i in range(6)]
            orders.add(tuple(got))
        assert len(orders) > 1
        assert [i.text for i in await fb.list_items(s, statuses=("done",))] == ["done"]
    d = FakeDriver(loaded)
    await d.say(CHANGE, "feedback list tools")
    assert "t\n" in d.seen(CHANGE)[-1] + "\n" and "w1" not in d.seen(CHANGE)[-1]
    await d.say(PRACTITIONER, "feedback list")
    assert "only the change team or safeguarding leads" in d.seen(PRACTITIONER)[-1]
    ref = REF.search(d.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await d.say(CHANGE, f"feedback status #{ref} in_progress")
    assert "is now in_progress" in d.seen(CHANGE)[-1]


async def test_you_said_we_did_reaches_staff_and_every_author_who_allowed_replies(loaded: Core) -> None:
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, "Caseloads are too high in assessment.", theme="workload",
                      replies=True) is None
    assert await give(d, PRACTITIONER, "Duty weeks leave no time for visits.", theme="workload",
                      replies=True) is None
    assert await give(d, OTHER, "Admin tasks eat our afternoons.", theme="workload") is None
    third = "practitioner3@northbridge.example"
    assert await give(d, third, "Too many forms.", theme="tools", replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "you said we did workload")
    form = d.form(CHANGE)
    assert form is not None and form.form_id == "feedback.publish"
    assert await d.submit(CHANGE, {"title": "Caseload cap", "items": "",
                                   "text": "From January no caseload goes above 18."}) is None
    assert "3 items marked done" in d.seen(CHANGE)[-1]
    assert "to the authors who allowed replies." in d.seen(CHANGE)[-1]
    personal = [m for m in d.seen(PRACTITIONER) if m.startswith("You said, we did: Caseload cap")]
    assert len(personal) == 1 and "Stop replies" in personal[0]
    assert not [m for m in d.seen(third) if "You said, we did: Caseload cap" == m.splitlines()[0]]
    async with loaded.db.session() as s:
        [response] = list((await s.execute(select(FeedbackResponse))).scalars())
    if response.broadcast["via"].startswith("dm"):  # type: ignore[index]
        # No broadcast feature: every member of staff got it by DM.
        assert any("Caseload cap" in m for m in d.seen("practitioner9@northbridge.example"))
    else:
        # Queued through the broadcast feature's ledger for its sender to deliver.
        from bot.broadcasts.tables import Broadcast

        async with loaded.db.session() as s:
            b = await s.get(Broadcast, response.broadcast["via"].split()[1])  # type: ignore[index]
        assert b is not None and "Caseload cap" in b.title
    assert {i.status for i in await items(loaded) if i.theme_id == "workload"} == {"done"}


async def test_no_log_line_carries_feedback_text_next_to_its_author(loaded: Core) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logs.JsonFormatter().format(record))

    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {n: logging.getLogger(n).level for n in ("slack_bolt", "slack_sdk", "aiohttp.access", "microsoft_agents", "sqlalchemy", "msal", "alembic", "apscheduler", "asyncio", "aiosqlite", "asyncpg")})
    logs.setup("DEBUG", json_lines=True)  # exactly what production does at debug level
    root.addHandler(Keep())
    try:
        d = FakeDriver(loaded)
        words = "Our recording system crashes every Friday afternoon."
        assert await give(d, PRACTITIONER, words, theme="recording", replies=True) is None
        assert await give(d, PRACTITIONER, CONCERN) is None
        await release(loaded)
        await d.say(CHANGE, "feedback list")
        ref = ref_for(d.seen(CHANGE)[-1], words)
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": "We have raised it with the supplier."}) is None
        await d.tap(PRACTITIONER, "Read the answer")
        await d.submit(PRACTITIONER, {"text": "Thank you, it crashed again today."})
        await d.tap(PRACTITIONER, "Stop replies")
        await loaded.tick()
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for n, lvl in saved[2].items():
            logging.getLogger(n).setLevel(lvl)
    assert lines, "debug logging captured nothing"
    who = await identity_strings(loaded.db, PRACTITIONER)
    texts = (words, CONCERN, "crashed again today")
    for line in lines:
        json.loads(line)
        for t in texts:
            if t in line:
                assert not any(w in line for w in who), line
    # Stronger: on these paths the text is not logged at all.
    assert not [line for line in lines if any(t in line for t in texts)]


async def test_sqlite_keeps_no_hidden_insertion_order_for_feedback(loaded: Core) -> None:
    if not loaded.db.is_sqlite:
        pytest.skip("rowid is SQLite's")
    from sqlalchemy.exc import OperationalError

    async with loaded.db.engine.connect() as conn:
        with pytest.raises(OperationalError):
            await conn.exec_driver_sql("SELECT rowid FROM feedback_items")


async def test_an_urgent_alert_is_sent_with_no_row_locked_and_goes_once(loaded: Core) -> None:
    """While an alert is being sent to a lead, another writer can still write that alert's row
    (a lock held across a platform call would make it wait); a second sender sends nothing."""
    import asyncio

    from sqlalchemy import update

    from bot.feedback.tables import FeedbackAlert

    d = FakeDriver(loaded)
    send = d.port.send
    wrote: list[bool] = []

    async def send_and_write(conversation, message):  # type: ignore[no-untyped-def]
        if message.plain.startswith("URGENT") and not wrote:
            async def touch() -> None:
                async with loaded.db.session() as s:
                    await s.execute(update(FeedbackAlert).values(attempts=FeedbackAlert.attempts))
            try:
                await asyncio.wait_for(touch(), 3)
                wrote.append(True)
            except TimeoutError:
                wrote.append(False)
            assert await fb.deliver_alerts(Core(loaded.db, settings=loaded.settings,
                                                clock=loaded.clock)) == 0  # another replica
        return await send(conversation, message)

    d.port.send = send_and_write  # type: ignore[method-assign]
    assert await give(d, OTHER, "My supervisor has been bullying me for months.") is None
    assert wrote == [True]
    assert len(urgent_seen(d, LEADS[0])) == 1 and len(urgent_seen(d, LEADS[1])) == 1
    async with loaded.db.session() as s:
        rows = (await s.execute(select(FeedbackAlert))).scalars().all()
    assert {(a.status, a.lease_until) for a in rows} == {("sent", None)}


async def test_a_form_is_stored_and_thanked_without_an_orm_session(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    # The thanks' settings (routes, reply days) are read on the item's connection, from the
    # settings kept for a few seconds: an ORM session of its own cost every form about a
    # transaction's worth of instructions (bench/README.md, ninth session).
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, IDEA) is None  # first contact: the notice, the link
    await d.say(PRACTITIONER, "feedback")
    opened: list[str] = []
    real = loaded.db.session
    monkeypatch.setattr(loaded.db, "session", lambda: opened.append("session") or real())
    assert await d.submit(PRACTITIONER, {"text": IDEA + " Again.", "theme": "",
                                         "replies": "true"}) is None
    thanks = d.form(PRACTITIONER)
    assert thanks is not None and thanks.form_id == "feedback.thanks"
    assert "If the change team answers within" in " ".join(
        getattr(b, "text", "") for b in thanks.intro)
    assert opened == []
    assert len(await items(loaded)) == 2


async def test_a_programme_reload_changes_the_routes_the_form_shows(loaded: Core) -> None:
    # The safeguarding settings are parsed once per stored value and shared (a form reads
    # them three times); a reloaded programme's routes must show at once all the same.
    from bot.programme import loader
    from tests.conftest import EXAMPLE

    d = FakeDriver(loaded)

    async def routes_shown() -> str:
        d.port.forms.clear()
        await d.say(PRACTITIONER, "feedback")
        form = d.form(PRACTITIONER)
        assert form is not None and form.form_id == "feedback.submit"
        return "\n".join(getattr(b, "text", "") for b in form.intro)

    before = await routes_shown()
    assert "01632 960 200" in before and "01632 960 299" not in before
    async with loaded.db.transaction() as conn:
        assert await fb.config(conn) is await fb.config(conn)  # parsed once, not per read
    text = EXAMPLE.read_text()
    assert text.count('"01632 960 200"') == 1
    await loader.load(loaded.db, text.replace('"01632 960 200"', '"01632 960 299"'),
                      loaded.router)
    after = await routes_shown()
    assert "01632 960 299" in after and "01632 960 200" not in after
    # The thanks after sending shows the new routes too.
    assert await give(d, PRACTITIONER, IDEA) is None
    thanks = d.form(PRACTITIONER)
    assert thanks is not None and thanks.form_id == "feedback.thanks"
    assert "01632 960 299" in "\n".join(getattr(b, "text", "") for b in thanks.intro)


async def test_a_forms_statements_run_on_the_cursor_and_store_the_same_values(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    # The theme check, the day's count, the item and its sealed route are prepared statements
    # (storage/prepared.py): no execution context, the same values stored, in the same
    # transaction (the item's, which writes no row about the sender: docs/invariants.md N4, N21).
    from sqlalchemy.engine import Connection

    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, IDEA) is None  # first contact written, the day's key made
    sent: list[str] = []
    real = Connection._execute_context

    def counting(self: Connection, *a: object, **kw: object) -> object:
        sent.append(" ".join(str(x) for x in a))
        return real(self, *a, **kw)  # type: ignore[arg-type]

    await d.say(OTHER, "feedback")
    values = {"text": CONCERN, "theme": "supervision", "replies": "true"}
    monkeypatch.setattr(Connection, "_execute_context", counting)
    assert await d.submit(OTHER, values) is None  # "Before you send": the routes again
    assert await d.submit(OTHER, values) is None  # sent anyway
    monkeypatch.undo()
    assert any("INSERT INTO feedback_alerts" in q for q in sent)  # the counter counts
    for statement in ("INSERT INTO feedback_items", "INSERT INTO feedback_handles",
                      "FROM feedback_daily_counts", "WHERE themes.id ="):
        assert not [q for q in sent if statement in q], statement
    thanks = d.form(OTHER)
    assert thanks is not None and thanks.form_id == "feedback.thanks"
    item = next(i for i in await items(loaded) if i.text == CONCERN)
    assert (item.day, item.theme_id, item.status, item.source) == (
        date(2026, 11, 30), "supervision", "new", "staff")
    # Readable to its leads at once, to everyone else from its release (N37).
    assert item.urgent is True and item.released is False and item.concerns == ["child_risk"]
    [handle] = await handles(loaded)
    assert handle.item_id == item.id
    route = sealing.open_sealed(loaded.secret, handle.id, handle.sealed)
    assert route.person_id in await identity_strings(loaded.db, OTHER)
    # The day's count read on the cursor sees the send once written: four more reach the limit.
    await loaded.tick()
    for i in range(4):
        assert await give(d, OTHER, f"Idea number {'abcd'[i]} about rotas.") is None
    d.port.forms.clear()
    await d.say(OTHER, "feedback")
    errors = await d.submit(OTHER, {"text": "A sixth.", "replies": "false"})  # in the form (N39)
    assert errors is not None and "You have sent 5 pieces of feedback today" in errors["text"]


async def test_a_programme_reload_changes_the_day_feedback_is_dated_by(loaded: Core) -> None:
    # The programme's time zone is found once per stored programme (every form asks): a
    # reloaded programme's zone dates the next item at once.
    from bot.programme import loader
    from tests.conftest import EXAMPLE

    d = FakeDriver(loaded)
    loaded.clock.advance(timedelta(hours=2))  # noon in London; already 1 December in Auckland  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, IDEA) is None
    text = EXAMPLE.read_text()
    await loader.load(loaded.db, text.replace("timezone: Europe/London", "timezone: Pacific/Auckland", 1),
                      loaded.router)
    assert await give(d, PRACTITIONER, "Rotas come out too late to plan childcare.") is None
    assert {i.text: i.day for i in await items(loaded)} == {
        IDEA: date(2026, 11, 30), "Rotas come out too late to plan childcare.": date(2026, 12, 1)}
