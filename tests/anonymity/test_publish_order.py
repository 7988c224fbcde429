"""A motivated intruder with the chat workspace and the change team's view: the order in which
the authors of a "you said, we did" are told (N54).

Publishing tells each author who allowed replies, by DM (N8, N15). The platform keeps those
DMs by name, to the microsecond (Slack's `ts`, Teams' timestamps): whoever reads the
workspace's DMs (an administrator's export, Microsoft Purview) knows who was told, and in
which order. N19's residue already says that being told names someone as an author of one of
the items. The order must say no more: which of them wrote which.

Before: on PostgreSQL the authors were told in the order their reply routes were stored, which
is the order the items were sent: the first author told was always the one who sent first.
The change team knows which item it read first (an earlier release), so the first DM named
that item's author.
"""

from __future__ import annotations

import pytest

from bot.core import Core
from bot.feedback import service as fb
from bot.model import Message
from bot.people import service as people
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, give, ref_for, release

STAFF = tuple(f"practitioner{i}@northbridge.example" for i in range(1, 9))
TRIALS = 6  # by chance all six right: one time in 4,096


async def test_the_order_authors_are_told_does_not_say_who_sent_first(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six times: one practitioner sends an idea, released at once (the change team reads it
    alone); three colleagues send theirs, released together; the change team publishes a
    "you said, we did" for all four. The intruder guesses that the first author told wrote
    the item the change team read first. By chance that is right one time in four; before the
    fix it was right all six times on PostgreSQL (SQLite read the routes in the order of
    their random ids).

    What is watched is the order in which the bot starts each author's DM (each goes in the
    background, N8): the platform receives them in that order but for the network's jitter,
    which the intruder can average out over publications."""
    d = FakeDriver(loaded)
    started: list[str] = []
    tell = fb._tell_later

    def watched(core: Core, person_id: str, message: Message) -> None:
        if message.fallback.startswith("You said"):
            started.append(person_id)
        tell(core, person_id, message)

    monkeypatch.setattr(fb, "_tell_later", watched)
    async with loaded.db.session() as s:
        ids = {email: p.id for email in STAFF
               if (p := await people.person_by_email(s, email)) is not None}
    right = 0
    for trial in range(TRIALS):  # four people each time, three items each at most a day
        early, *later = (STAFF[(4 * trial + j) % len(STAFF)] for j in range(4))
        first = f"Idea {trial}a: publish the duty rota a month ahead."
        assert await give(d, early, first, theme="workload", replies=True) is None
        await release(loaded)
        others = [f"Idea {trial}{c}: fewer forms per visit." for c in "bcd"]
        for email, text in zip(later, others, strict=True):
            assert await give(d, email, text, theme="workload", replies=True) is None
        await release(loaded)
        await d.say(CHANGE, "feedback list workload")
        listing = d.seen(CHANGE)[-1]
        refs = [ref_for(listing, t[:20]) for t in (first, *others)]
        started.clear()
        await d.say(CHANGE, "you said we did workload")
        assert await d.submit(CHANGE, {"title": f"Round {trial}", "text": "Done.",
                                       "items": " ".join(refs)}) is None
        await fb.settle_notices()
        assert sorted(started) == sorted(ids[e] for e in (early, *later)), started
        right += started[0] == ids[early]
    assert right < TRIALS, "the first author told is always the one who sent first"
