"""A motivated intruder in the change team, watching which items can still be answered.

An author may stop replies to everything they sent ("feedback stop replies"). If the listing's
"replies possible" (and the reply form's answer) changed for exactly those items at once, the
change team, listing before and after, would learn that these items share one author: the
"you said, we did" oracle of N8, handed over for free, and a detail in one item then narrows
the author of the other. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, dump, give, ref_for

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
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    refs = {t: ref_for(listing, t[:30]) for t in (*ONE, TWO)}
    before = await _tags(d, refs)
    assert all(possible for possible, _ in before.values()), before
    await d.say(PRACTITIONER, "feedback stop replies")
    assert "replies to 2 pieces of your feedback are stopped" in d.seen(PRACTITIONER)[-1]
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
