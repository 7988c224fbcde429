"""A motivated intruder in the change team, timing "you said, we did".

Publishing a "you said, we did" for some items tells each of their authors who allowed
replies, by DM, once per author. If the change team's answer waited on those DMs, how long it
took would count the authors: publish two items and wait for one DM, and they share an author;
wait for two, and they do not. N8 keeps the count out of the words ("Never how many authors
were told"); the time must not carry it either. (The platform takes a round trip or two per
DM, far more when it throttles: Slack's chat.postMessage about one a second per channel,
Teams 7 a second per conversation.)

Before: `publish` sent the authors' DMs one after the other before it returned, so the
change team's confirmation (chat) and the redirect (dashboard) came back only after every
author's DM; with the platform holding the authors' DMs it never came back at all.
"""

from __future__ import annotations

import asyncio
import re

from bot.core import Core
from bot.feedback import service as fb
from bot.model import ConversationRef, Message, MessageRef
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, dump, give, ref_for, release

MINE = ("Duty weeks leave no time for home visits.", "Caseloads in Assessment are above 20.")
THEIRS = "Admin tasks eat every afternoon."
LATER = "The new caseload tool double-counts transfers."


async def test_publishing_does_not_wait_on_the_authors_dms(loaded: Core) -> None:
    """Attack: publish a "you said, we did" for two items of one author, then for two items
    of two authors, while the platform holds every author's DM (as a slow or throttled one
    does): the change team's answers, and what each publish stored, are the same, and each
    comes back before any author's DM went."""
    d = FakeDriver(loaded)
    for text in MINE:
        assert await give(d, PRACTITIONER, text, theme="workload", replies=True) is None
    assert await give(d, OTHER, THEIRS, theme="workload", replies=True) is None
    assert await give(d, PRACTITIONER, LATER, theme="workload", replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    refs = {t: ref_for(listing, t[:30]) for t in (*MINE, THEIRS, LATER)}
    authors = {d.conv(e).conversation_id for e in (PRACTITIONER, OTHER)}
    held = asyncio.Event()
    send = d.port.send

    async def slow_send(conversation: ConversationRef, message: Message) -> MessageRef:
        if conversation.conversation_id in authors:
            await held.wait()  # the platform answers only later
        return await send(conversation, message)

    d.port.send = slow_send  # type: ignore[method-assign]
    d.wait_for_notices = False
    seen = []
    for title, items in (("One", MINE), ("Two", (THEIRS, LATER))):
        before = await dump(loaded.db)
        await d.say(CHANGE, "you said we did workload")
        values = {"title": f"Round {title}", "text": "Supervision is now protected time.",
                  "items": " ".join(refs[t] for t in items)}
        # A guard against hanging, not a measure: the answer comes back without the DMs.
        assert await asyncio.wait_for(d.submit(CHANGE, values), 10) is None
        after = await dump(loaded.db)
        changed = {t: len(after[t]) - len(before[t]) for t in after if after[t] != before[t]}
        said = re.sub(r"broadcast \w+", "broadcast ID", d.seen(CHANGE)[-1])
        seen.append((said, changed))
    assert seen[0] == seen[1], seen
    assert "2 items marked done" in seen[0][0]
    assert not any(m.startswith("You said, we did") for e in (PRACTITIONER, OTHER)
                   for m in d.seen(e))
    held.set()
    await fb.settle_notices()
    # Each author told once per publication that answered an item of theirs.
    told = {e: [m.splitlines()[0] for m in d.seen(e) if m.startswith("You said, we did")]
            for e in (PRACTITIONER, OTHER)}
    assert told == {PRACTITIONER: ["You said, we did: Round One", "You said, we did: Round Two"],
                    OTHER: ["You said, we did: Round Two"]}
