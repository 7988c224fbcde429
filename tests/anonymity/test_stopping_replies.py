"""A motivated intruder in the change team, watching which items can still be answered.

An author may stop replies to everything they sent ("feedback stop replies"). If the listing's
"replies possible" (and the reply form's answer) changed for exactly those items at once, the
change team, listing before and after, would learn that these items share one author: the
"you said, we did" oracle of N8, handed over for free, and a detail in one item then narrows
the author of the other. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio

from bot.core import Core
from bot.feedback import service as fb
from bot.model import ConversationRef, Message, MessageRef
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, dump, give, ref_for, release

ONE = ("As the only part-time worker in Assessment, I cannot make the 4pm network meetings.",
       "My supervisor cancels supervision every other week and nobody notices.")
TWO = "Court deadlines clash with network meetings."


async def _tags(d: FakeDriver, refs: dict[str, str]) -> dict[str, tuple[bool, str]]:
    """What the change team sees of each item: "replies possible", and what a reply says."""
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    out = {}
    for text, ref in refs.items():
        part = listing.split(f"#{ref}", 1)[1].split("#", 1)[0] if f"#{ref}" in listing else ""
        await d.say(CHANGE, f"feedback reply #{ref}")
        form = d.form(CHANGE)
        said = d.seen(CHANGE)[-1] if form is None else None
        if form is not None:
            errors = await d.submit(CHANGE, {"text": "Thank you; tell us more?"})
            said = str(errors) if errors else d.seen(CHANGE)[-1]
        out[text] = ("replies possible" in part, (said or "").replace(ref, "REF"))
    return out


def _holding_dms_to(d: FakeDriver, email: str) -> asyncio.Event:
    """The platform holds every message to `email`'s DM until the event is set; the driver
    no longer waits for notices sent in the background."""
    author = d.conv(email).conversation_id
    held = asyncio.Event()
    send = d.port.send

    async def slow_send(conversation: ConversationRef, message: Message) -> MessageRef:
        if conversation.conversation_id == author:
            await held.wait()  # the platform answers only later
        return await send(conversation, message)

    d.port.send = slow_send  # type: ignore[method-assign]
    d.wait_for_notices = False
    return held


async def test_stopping_every_reply_does_not_show_which_items_share_an_author(loaded: Core) -> None:
    """Attack: list feedback, let an author stop replies to all they sent, list again; the items
    whose "replies possible" went (or whose reply now fails) are that author's.

    Before: the author's routes were deleted, so their two items lost "replies possible" and
    a reply to either was refused ("did not allow replies, or has stopped them"), while the
    other author's item kept it.
    """
    d = FakeDriver(loaded)
    for text in ONE:
        assert await give(d, PRACTITIONER, text, replies=True) is None
    assert await give(d, OTHER, TWO, replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    refs = {t: ref_for(listing, t[:30]) for t in (*ONE, TWO)}
    before = await _tags(d, refs)
    assert all(possible for possible, _ in before.values()), before
    await d.say(PRACTITIONER, "feedback stop replies")
    assert "replies to any feedback of yours are stopped" in d.seen(PRACTITIONER)[-1]  # N43: never how many
    after = await _tags(d, refs)
    assert after == before
    # The author's routes are gone for good: their buttons no longer work.
    await d.tap(PRACTITIONER, "Read the answer")
    assert "stopped" in d.seen(PRACTITIONER)[-1]
    if not loaded.db.is_sqlite:  # nor do the stored rows say which routes went together
        async with loaded.db.engine.connect() as conn:
            xmins = [r[0] for r in await conn.exec_driver_sql(
                "SELECT xmin::text FROM feedback_handles")]
        assert len(xmins) == 3 and len(set(xmins)) == 1, xmins
    tables = await dump(loaded.db)
    assert len(tables["feedback_handles"]) == 3


async def test_a_reply_to_a_stopped_route_is_answered_as_one_to_a_live_route(loaded: Core) -> None:
    """Attack: time the answer to each reply. The platform is slow to deliver a DM (here it
    holds the author's until the replies are done); a reply whose answer waits on it reaches
    a live route, one answered at once a stopped route.

    Before: the reply waited for the author's DM before the change team's answer came back,
    so with the author's DM held it never came back (the guard below gives up).
    """
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, ONE[0], replies=True) is None
    assert await give(d, OTHER, TWO, replies=True) is None
    await d.say(OTHER, "feedback stop replies")
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    live, stopped = ref_for(listing, ONE[0][:30]), ref_for(listing, TWO[:30])
    held = _holding_dms_to(d, PRACTITIONER)
    seen = {}
    for ref in (live, stopped):
        before = await dump(loaded.db)
        await d.say(CHANGE, f"feedback reply #{ref}")
        # A guard against hanging, not a measure: the answer comes back without the DM.
        assert await asyncio.wait_for(d.submit(CHANGE, {"text": "Tell us more?"}), 30) is None
        after = await dump(loaded.db)
        changed = {t: len(after[t]) - len(before[t]) for t in after if after[t] != before[t]}
        [message] = [m for m in after["feedback_messages"] if m not in before["feedback_messages"]]
        seen[ref] = (d.seen(CHANGE)[-1].replace(ref, "REF"), changed,
                     {k: v for k, v in message.items() if k not in ("id", "item_id", "seq")})
    assert seen[live] == seen[stopped]
    assert not any(m.startswith("The change team answered") for m in d.seen(PRACTITIONER))
    held.set()
    await fb.settle_notices()
    assert d.seen(PRACTITIONER)[-1].startswith("The change team answered your feedback")
    assert not d.seen(OTHER)[-1].startswith("The change team answered")


async def test_a_you_said_we_did_is_answered_before_any_author_is_told(loaded: Core) -> None:
    """Attack: time the answer to a "you said, we did" of chosen items. The platform is slow to
    deliver a DM (here it holds one author's until the publications are done); a publication
    whose answer waits on it answered that author's item, one answered at once another's. (The
    same timing counts the authors of any set of items: one DM per author, N8.)

    Before: the authors were told one by one before the publisher's answer came back, so with
    the author's DM held it never came back (the guard below gives up)."""
    d = FakeDriver(loaded)
    assert await give(d, PRACTITIONER, "Caseloads are too high.", theme="workload",
                      replies=True) is None
    assert await give(d, OTHER, "Admin eats our time.", theme="workload", replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    theirs = {PRACTITIONER: ref_for(listing, "Caseloads are too high."),
              OTHER: ref_for(listing, "Admin eats our time.")}
    held = _holding_dms_to(d, PRACTITIONER)
    said = {}
    for who, ref in theirs.items():
        before = await dump(loaded.db)
        await d.say(CHANGE, "you said we did workload")
        # A guard against hanging, not a measure: the answer comes back without the DM.
        assert await asyncio.wait_for(d.submit(CHANGE, {
            "title": "Caseload cap", "items": ref,
            "text": "From January no caseload goes above 18."}), 30) is None
        after = await dump(loaded.db)
        said[who] = (d.seen(CHANGE)[-1].split(";", 1)[1].split(") and ", 1)[1],
                     {t: len(after[t]) - len(before[t]) for t in after if after[t] != before[t]})
    assert said[PRACTITIONER] == said[OTHER]
    assert not any(m.startswith("You said, we did") for m in d.seen(PRACTITIONER))
    held.set()
    await fb.settle_notices()
    for who in theirs:
        assert [m for m in d.seen(who) if m.startswith("You said, we did: Caseload cap")], who


async def _route_rows(core: Core) -> tuple[list[dict[str, object]], set[str]]:
    """The reply-route rows as a dump shows them, and (PostgreSQL) their `xmin`s."""
    rows = sorted((await dump(core.db))["feedback_handles"], key=lambda r: str(r["id"]))
    xmins: set[str] = set()
    if not core.db.is_sqlite:
        async with core.db.engine.connect() as conn:
            xmins = {r[0] for r in await conn.exec_driver_sql(
                "SELECT xmin::text FROM feedback_handles")}
    return rows, xmins


async def test_stopping_replies_rewrites_the_routes_whether_or_not_the_person_had_any(
        loaded: Core) -> None:
    """Attack: a database reader who also reads the DMs (N43's intruder) dumps the route rows
    before and after each "feedback stop replies" (its second is in the person's DM, by name).
    One practitioner sent two items allowing replies, another one that does not; each types it.

    Before: the second's stop wrote nothing (bot/feedback/service.py `revoke_all` rewrote the
    rows only for someone with a route), so on PostgreSQL every row kept its `xmin`, while the
    first's gave every row a new one: the DM's words were the same (N43), the rows were not,
    and the first had sent feedback allowing replies. Now both rewrite every row, and a stop
    by someone without routes leaves everyone else's route working."""
    d = FakeDriver(loaded)
    for text in ONE:
        assert await give(d, PRACTITIONER, text, replies=True) is None
    assert await give(d, OTHER, TWO, replies=False) is None
    rows, xmins = await _route_rows(loaded)
    assert len(rows) == 2
    await d.say(OTHER, "feedback stop replies")
    after, after_xmins = await _route_rows(loaded)
    assert after == rows  # nothing of theirs to stop: every route still as it was
    if not loaded.db.is_sqlite:
        assert len(after_xmins) == 1 and not after_xmins & xmins, (xmins, after_xmins)
    await d.say(PRACTITIONER, "feedback stop replies")
    stopped, stopped_xmins = await _route_rows(loaded)
    assert [r["id"] for r in stopped] == [r["id"] for r in rows]
    assert all(s["sealed"] != r["sealed"] for s, r in zip(stopped, rows, strict=True))
    if not loaded.db.is_sqlite:
        assert len(stopped_xmins) == 1 and not stopped_xmins & after_xmins
    assert d.seen(OTHER)[-1] == d.seen(PRACTITIONER)[-1]  # the same words (N43)
