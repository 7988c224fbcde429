"""A motivated intruder with the database, against replies to anonymous feedback.

The change team's reply (and a "you said, we did") goes to the author through the sealed
route, in the reply's own moment. If sending it wrote anything to a row that names the author
(their account marked unreachable because they blocked the app, their DM conversation stored),
that row would change right after the reply's commit: on PostgreSQL its `xmin` is the next
transaction id after the reply's `feedback_messages` row, on SQLite the next commit in the
write-ahead log, and its day is the reply's day. The intruder sorts by `xmin` and reads off
the author. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_design_invariants import rows_naming
from tests.test_feedback_helpers import (
    CHANGE,
    OTHER,
    dump,
    give,
    identity_strings,
    ref_for,
    release,
)

TEXT = "Court deadlines clash with network meetings."


async def _xmin_of_rows_naming(core: Core, who: set[str]) -> set[str]:
    """PostgreSQL: the transaction ids of every live row that names the author."""
    out: set[str] = set()
    async with core.db.engine.connect() as conn:
        for name in (await dump(core.db)):
            rows = (await conn.exec_driver_sql(f'SELECT xmin::text, t::text FROM "{name}" t')).all()
            out |= {x for x, text in rows if any(w in text for w in who)}
    return out


async def test_replying_to_an_author_who_blocked_the_app_changes_no_row_that_names_them(
        loaded: Core) -> None:
    """Attack: the author blocks the app; the change team replies and publishes "you said, we
    did"; the intruder looks for the row of a person that changed with the reply.

    Before: the failed DM marked the author's `identities` row unreachable ("user blocked the
    app") in the transaction right after the reply's, naming the author of that item.
    """
    d = FakeDriver(loaded)
    assert await give(d, OTHER, TEXT, theme="workload", replies=True) is None
    who = await identity_strings(loaded.db, OTHER)
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    ref = ref_for(d.seen(CHANGE)[-1], "Court deadlines clash")
    d.port.blocked.add(d.user(OTHER).user_id)  # the author blocks the app (or leaves Slack)
    before = await rows_naming(loaded, who, skip=("processed_events",))
    xmins = set() if loaded.db.is_sqlite else await _xmin_of_rows_naming(loaded, who)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Thank you, which court?"}) is None
    assert await rows_naming(loaded, who, skip=("processed_events",)) == before
    if not loaded.db.is_sqlite:
        assert await _xmin_of_rows_naming(loaded, who) == xmins
    # "You said, we did" goes to all staff (a delivery row for each, the author's among them)
    # and then to the authors through their routes: those DMs write nothing either.
    await d.say(CHANGE, "you said we did workload")
    assert await d.submit(CHANGE, {"title": "Court dates", "items": ref,
                                   "text": "Network meetings now avoid court weeks."}) is None
    skip = ("processed_events", "broadcast_deliveries")
    assert await rows_naming(loaded, who, skip=skip) == {
        k: v for k, v in before.items() if k not in skip}
    staff = (await dump(loaded.db))["broadcast_deliveries"]
    assert len({r["person_id"] for r in staff}) > 20  # everyone's row, not the author's alone


async def test_a_reply_that_opens_a_teams_chat_with_its_author_stores_nothing_about_them(
        loaded: Core) -> None:
    """Attack (Teams): the author has no personal chat with the bot stored (they removed the
    app, or only ever used it from the team's channel), so the reply's DM opens one. The
    intruder looks for a row naming the author written with the reply.

    Before: the Teams port stored the chat it opened (`teams_conversations`, the author's id,
    the day, `installed`) in the transaction right after the reply's, naming the author of
    the item replied to; "quiet" stopped at the core."""
    from sqlalchemy import delete, update

    from adapters.teams.tables import TeamsConversation
    from bot.people.held import flush as flush_links
    from bot.people.tables import Identity
    from tests.conformance.drivers.teams import make

    d = await make(loaded)
    try:
        assert await give(d, OTHER, TEXT, theme="workload", replies=True) is None
        await flush_links(loaded)
        author = d.fake.user_by_email(OTHER).id
        async with loaded.db.session() as s:  # no personal chat with the author is stored
            await s.execute(delete(TeamsConversation).where(TeamsConversation.user_id == author))
            await s.execute(update(Identity).where(Identity.user_id == author).values(dm=None))
        who = await identity_strings(loaded.db, OTHER)
        await release(loaded)
        await d.say(CHANGE, "feedback list")
        ref = ref_for(d.seen(CHANGE)[-1], "Court deadlines clash")
        await flush_links(loaded)
        before = await rows_naming(loaded, who, skip=("processed_events",))
        xmins = set() if loaded.db.is_sqlite else await _xmin_of_rows_naming(loaded, who)
        shown = len(d.seen(OTHER))
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": "Thank you, which court?"}) is None
        await flush_links(loaded)
        assert any("Read the answer" in m for m in d.seen(OTHER)[shown:])  # the notice arrived
        assert await rows_naming(loaded, who, skip=("processed_events",)) == before
        if not loaded.db.is_sqlite:
            assert await _xmin_of_rows_naming(loaded, who) == xmins
    finally:
        await d.close()


async def test_a_reply_whose_teams_chat_is_gone_reaches_its_author_and_stores_nothing(
        loaded: Core) -> None:
    """Attack (Teams): the author's stored personal chat is one Teams no longer knows (404
    ConversationNotFound), so the reply's notice makes the chat again (adapters/teams/port.py).
    The intruder looks for a row naming the author written with the reply: a new chat stored,
    the old one retired, the account marked unreachable. None may change, and the notice
    must still arrive (before the chat was made again, it never did)."""
    from bot.people.held import flush as flush_links
    from tests.conformance.drivers.teams import make

    d = await make(loaded)
    try:
        assert await give(d, OTHER, TEXT, theme="workload", replies=True) is None
        await flush_links(loaded)
        _author, chat = d.dm_id(OTHER)
        who = await identity_strings(loaded.db, OTHER)
        await release(loaded)
        await d.say(CHANGE, "feedback list")
        ref = ref_for(d.seen(CHANGE)[-1], "Court deadlines clash")
        await flush_links(loaded)
        d.fake.forget_conversation(chat)
        before = await rows_naming(loaded, who, skip=("processed_events",))
        xmins = set() if loaded.db.is_sqlite else await _xmin_of_rows_naming(loaded, who)
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": "Thank you, which court?"}) is None
        await flush_links(loaded)
        assert d.dm_id(OTHER)[1] != chat
        assert any("Read the answer" in m for m in d.seen(OTHER)), "in the chat made again"
        assert await rows_naming(loaded, who, skip=("processed_events",)) == before
        if not loaded.db.is_sqlite:
            assert await _xmin_of_rows_naming(loaded, who) == xmins
    finally:
        await d.close()
