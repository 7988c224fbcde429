"""A motivated intruder with the platform's copy of every chat, against the pulse reminder.

The reminder is a new message in the DM of everyone asked who has not finished, carrying the
survey on where they left off. The intruder (a compliance administrator, docs/invariants.md
N19) reads every version of every message the bot sent to each person. The card never says
whether someone wrote a comment (N19); the question the reminder picks must not say it either.
The change team designs the surveys, so it can put a comment question before others.

Before: the reminder took the first question with no stored answer, and a comment question
has one only when a comment was written, so the reminder of someone who wrote a comment went
past it ("question 5 of 7") while a colleague who skipped it was sent back to it ("question 4
of 7"), by name, beside a team's short list of comments.
"""

from __future__ import annotations

from datetime import timedelta

from bot.core import Core
from bot.programme import loader
from tests.anonymity.test_chat_history import every_version
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE, MONDAY_10

WROTE = "practitioner1@northbridge.example"
SKIPPED = "practitioner2@northbridge.example"
EMPTY = "practitioner3@northbridge.example"
NEVER_LOOKED = "practitioner4@northbridge.example"

COMMENT = ('      - {id: comment, kind: text, text: "Anything else you want the change team to '
           'hear? (optional)"}\n')
WORKLOAD = "      - {id: workload, kind: likert5"


async def _comment_fourth(core: Core) -> None:
    """The weekly pulse with its comment question moved to fourth of seven."""
    text = EXAMPLE.read_text()
    assert COMMENT in text and WORKLOAD in text
    text = text.replace(COMMENT, "").replace(WORKLOAD, COMMENT + WORKLOAD)
    await loader.load(core.db, text, core.router)


async def test_the_reminder_does_not_say_who_wrote_a_comment(loaded: Core) -> None:
    """Attack: four people answer the first three questions and reach the comment question
    (fourth of seven). One writes a comment, one skips it, one opens the form and sends it
    empty, and each taps Finish later at the fifth; a fourth stops at the comment question
    without touching it. On Wednesday the reminder reaches all four. The intruder compares
    every version of every message in their DMs.

    Before: the writer's reminder showed question 5 of 7, the others' question 4 of 7."""
    await _comment_fourth(loaded)
    d = FakeDriver(loaded)
    await loaded.tick()  # Monday 10:00: the round opens; question 1 in each DM
    for email in (WROTE, SKIPPED, EMPTY, NEVER_LOOKED):
        for label in ("4", "4", "4"):
            await d.tap(email, label)
    await d.tap(WROTE, "Write a comment")
    assert await d.submit(WROTE, {"comment": "Supervision keeps being moved for court."}) is None
    await d.tap(SKIPPED, "Skip")
    await d.tap(EMPTY, "Write a comment")
    assert await d.submit(EMPTY, {"comment": ""}) is None
    for email in (WROTE, SKIPPED, EMPTY):
        await d.tap(email, "Finish later")
    loaded.clock.set(MONDAY_10 + timedelta(days=2, minutes=30))  # type: ignore[attr-defined]
    await loaded.tick()  # Wednesday 10:30: the reminder
    wrote, skipped, empty, never = (every_version(d, e) for e in
                                    (WROTE, SKIPPED, EMPTY, NEVER_LOOKED))
    assert "A gentle reminder" in wrote[-1]
    # The three who went on from the comment question read the same, whatever they did there.
    assert wrote == skipped == empty
    # And the reminder is the same card for the one who never went past it: back at the
    # comment question, where they stopped (the others may skip it again).
    assert wrote[-1] == never[-1]
    assert "question 4 of 7" in wrote[-1]
