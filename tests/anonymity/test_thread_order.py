"""A motivated intruder in the change team: the order of a thread dates the author's answer.

An author's answer waits for the next release (N22), so the change team cannot date it by
showing the item again and again. But a thread is shown in the order its messages were
written: the change team replies at 12:10, the author answers at 13:15, the team replies
again at 14:30 (or every ten minutes: "anything else?"), and at 17:00 the thread reads reply,
answer, reply: the answer came before 14:30, so the author was free between 12:10 and 14:30,
however long the release held it. The team knows when it wrote its own replies (and the audit
trail keeps them to the minute). The rule asked for (N27): a released answer takes its place
in the thread at its release, after every reply written before it.
"""

from __future__ import annotations

from bot.core import Core
from bot.feedback import service as fb
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give, ref_for

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
ASK, AGAIN = "Which days are cancelled most?", "Thanks. Anything else we should know?"


async def _reply(d: FakeDriver, ref: str, text: str) -> None:
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": text}) is None


async def test_the_order_of_a_thread_does_not_date_the_authors_answer(loaded: Core) -> None:
    """Two authors; the team replies to both at 12:10 and again at 14:30. One answers at
    13:15, between the replies, the other at 14:45, after both. At 17:05 both threads must read
    alike (reply, reply, answer); before the fix the first read reply, answer, reply."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, replies=True) is None
    assert await give(d, OTHER, SECOND, replies=True) is None
    clock.set(day.replace(hour=12, minute=10))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    refs = {who: ref_for(listing, text) for who, text in ((PRACTITIONER, FIRST), (OTHER, SECOND))}
    for ref in refs.values():
        await _reply(d, ref, ASK)

    async def answer(who: str, minute: tuple[int, int], text: str) -> None:
        clock.set(day.replace(hour=minute[0], minute=minute[1]))  # type: ignore[attr-defined]
        await fb.settle_notices()  # the reply notices go in the background
        await d.tap(who, "Read the answer")
        assert await d.submit(who, {"text": text}) is None
        form = d.form(who)  # said in the form just sent, not the chat (N41)
        assert form is not None and form.form_id == "feedback.answered"

    await answer(PRACTITIONER, (13, 15), "The first week of each month.")
    clock.set(day.replace(hour=14, minute=30))  # type: ignore[attr-defined]
    for ref in refs.values():
        await _reply(d, ref, AGAIN)
    await answer(OTHER, (14, 45), "mostly on the first day of the week.")
    clock.set(day.replace(hour=17, minute=5))  # type: ignore[attr-defined]
    shapes = []
    for who, said in ((PRACTITIONER, "The first week of each month."), (OTHER, "mostly on the first day of the week.")):
        await d.say(CHANGE, f"feedback show #{refs[who]}")
        shown = d.seen(CHANGE)[-1]
        at = {shown.index(ASK): "reply", shown.index(AGAIN): "reply", shown.index(said): "answer"}
        shapes.append([at[k] for k in sorted(at)])
    assert shapes[0] == shapes[1] == ["reply", "reply", "answer"], shapes
