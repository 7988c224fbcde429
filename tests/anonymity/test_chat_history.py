"""A motivated intruder with the platform's copy of every chat, against pulse answers and
feedback.

A council's Slack or Teams keeps the bot's messages in each person's DM, and often every
earlier version of an edited one too: Microsoft Purview retention and eDiscovery keep the
versions of edited Teams chat messages, and Slack's Discovery API and exports give an org
admin the DMs (with edit history on Enterprise Grid). A pulse card is one message edited at
each tap, so whatever a version of it says stays, next to the person's name, for as long as
the platform keeps chats. The intruder (a compliance administrator) reads every version of
every message the bot sent to each person, and compares people who answered differently.

Before: each version said what had just been saved ("Saved: 4 for question 1.") and a
question the person went back to said "Your answer: 4", so the platform's copy of each DM
held the person's answers by name.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.core import Core
from bot.feedback.tables import FeedbackItem
from bot.model import Message, plain_text
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import LEADS, give

P1 = "practitioner1@northbridge.example"
P2 = "practitioner2@northbridge.example"
FIRST = "Before we start"


def shown(d: FakeDriver, email: str) -> str:
    """The text of the screen shown in place of the form the person just sent."""
    form = d.form(email)
    assert form is not None and form.notice, form
    return "\n".join([form.title, *(getattr(b, "text", "") for b in form.intro)])


def every_version(d: FakeDriver, email: str) -> list[str]:
    """Every version of every message in the person's DM, oldest first, as the platform
    keeps them (edits included)."""
    out: list[Message] = []
    for posted in d.port.messages(d.conv(email).conversation_id):
        out.extend([*posted.history, posted.message])
    return [plain_text(m) for m in out if not plain_text(m).startswith(FIRST)]


async def test_no_version_of_a_pulse_card_says_what_the_person_answered(loaded: Core) -> None:
    """Attack: two people take the same path through the weekly pulse (answer, answer, back,
    change, answer, back, on, a score) with different answers; the intruder compares every
    version of every message in their DMs. Any difference would be an answer, by name."""
    d = FakeDriver(loaded)
    await loaded.tick()  # Monday 10:00: the weekly round opens; question 1 in each DM
    paths = {P1: ("4", "5", "Previous", "1", "Skip", "3", "Previous", "Skip", "4", "9", "Skip"),
             P2: ("2", "1", "Previous", "5", "Skip", "1", "Previous", "Skip", "2", "0", "Skip")}
    for email, labels in paths.items():
        for label in labels:
            await d.tap(email, label)
    one, two = every_version(d, P1), every_version(d, P2)
    assert len(one) > len(paths[P1])  # a version for each tap: the intruder has them all
    assert "Thank you!" in one[-1]
    assert one == two  # before: 'Saved: 4 for question 1.' against 'Saved: 2 for question 1.'
    # And the person is still told that each tap counted, and where they can change it.
    assert any("Saved your answer to question 1" in v for v in one)
    assert any("You have answered this question" in v for v in one)


async def test_no_version_of_a_pulse_card_says_who_wrote_a_comment(loaded: Core) -> None:
    """Attack: comments are few (a team's list may hold two), so knowing who wrote one narrows
    each comment to them. One person writes a comment, one skips the question, one opens the
    form and sends it empty; then each goes back to it. Every version in their DMs is the same.

    Before: 'Saved your comment for question 7.' for the writer alone, and 'Your answer: your
    comment' when they went back to it."""
    d = FakeDriver(loaded)
    await loaded.tick()
    wrote, skipped, empty = P1, P2, "practitioner3@northbridge.example"
    for email in (wrote, skipped, empty):
        for label in ("4", "Skip", "Skip", "Skip", "Skip", "Skip"):
            await d.tap(email, label)
    await d.tap(wrote, "Write a comment")
    assert await d.submit(wrote, {"comment": "Supervision keeps being moved for court."}) is None
    await d.tap(skipped, "Skip")
    await d.tap(empty, "Write a comment")
    assert await d.submit(empty, {"comment": ""}) is None
    for email in (wrote, skipped, empty):
        await d.tap(email, "Change my answers")
        for label in ("Skip",) * 6:
            await d.tap(email, label)
    versions = [every_version(d, e) for e in (wrote, skipped, empty)]
    assert "question 7 of 7" in versions[0][-1]  # back at the comment question
    assert versions[0] == versions[1] == versions[2]


async def test_the_thanks_for_feedback_is_the_same_whether_or_not_it_was_urgent(
        loaded: Core) -> None:
    """Attack: the safeguarding leads know which items were flagged as a possible concern, and
    when (their urgent queue is short); the intruder reads each sender's DM. One person sends a
    disclosure (flagged, "Before you send", sent anyway), another an ordinary idea.

    Before: only the first one's thanks said "Because it may describe a safeguarding concern,
    it went to the safeguarding leads straight away", naming the author of the urgent item."""
    d = FakeDriver(loaded)
    concern, idea = P1, P2
    assert await give(d, concern, "A child on my caseload told me she is hit at home.") is None
    assert await give(d, idea, "The new duty rota works well for the front door.") is None
    async with loaded.db.session() as s:
        flagged = sorted((await s.execute(select(FeedbackItem.urgent))).scalars())
    assert flagged == [False, True]
    assert every_version(d, concern) == every_version(d, idea) == []  # nothing in the DMs
    # In the form, where the platform keeps nothing, both read the same thanks.
    one, two = shown(d, concern), shown(d, idea)
    assert one == two
    assert "Thank you. Your feedback was sent anonymously." in one
    assert "went to the safeguarding leads straight away" in one  # told, as before


async def test_sending_feedback_leaves_nothing_in_the_senders_chat(loaded: Core) -> None:
    """Attack: the change team knows which item came in when (and the leads which one was
    urgent: they are alerted in the same second); the intruder reads every version of every
    message in two people's DMs. Both open the feedback form; one sends a disclosure with
    replies allowed (flagged, "Before you send", sent anyway) and an idea, the other closes
    the form without sending. Any difference between their DMs says who sent feedback, when.

    Before: the sender's DM kept "Thank you. Your feedback was sent anonymously." at the
    second of each item (the time of the leads' alert for the first), by name."""
    d = FakeDriver(loaded)
    sender, other = P1, P2
    for email in (sender, other):
        await d.say(email, "feedback")
        assert d.form(email) is not None
    assert await give(d, sender, "A child on my caseload told me she is hit at home.",
                      replies=True) is None
    assert "Thank you. Your feedback was sent anonymously." in shown(d, sender)
    assert "If the change team answers within 90 days" in shown(d, sender)
    assert await give(d, sender, "The new duty rota works well for the front door.") is None
    d.port.forms.pop(f"U-{other}")  # closed without sending
    async with loaded.db.session() as s:
        assert sorted((await s.execute(select(FeedbackItem.urgent))).scalars()) == [False, True]
    assert every_version(d, sender) == every_version(d, other)
    # The feature still works: the leads were alerted, in their own DMs.
    assert any("URGENT" in v for v in every_version(d, LEADS[0]))
