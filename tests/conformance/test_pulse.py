"""Story: a weekly pulse round, from opening to the late tap after it closed, on every adapter."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from bot.pulse.tables import PulseParticipation, PulsePending, PulseRound, PulseTally

P1 = "practitioner1@northbridge.example"
P2 = "practitioner2@northbridge.example"
P3 = "practitioner3@northbridge.example"
CHANGE = "changelead@northbridge.example"
WEDNESDAY_10 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
FRIDAY_17 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


async def _stored(driver) -> int:  # type: ignore[no-untyped-def]
    async with driver.core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(PulsePending))).scalar_one())


async def test_a_whole_weekly_round(driver) -> None:  # type: ignore[no-untyped-def]
    # Monday 10:00 London: the round opens and everyone at work gets question 1 in a DM.
    await driver.core.tick()
    first = driver.seen(P1)
    assert len(first) == 1
    assert "Weekly pulse: question 1 of 7" in first[0]
    assert "shared vision" in first[0]
    assert "Anonymous" in first[0]

    # One tap answers and the same message moves on to question 2 (no flood of messages).
    await driver.tap(P1, "4")
    shown = driver.seen(P1)
    assert len(shown) == 1
    # It says the answer was saved, never which (tests/anonymity/test_chat_history.py).
    assert "question 2 of 7" in shown[0] and "Saved your answer to question 1." in shown[0]
    assert "4 for" not in shown[0]

    # Going back says it was answered; tapping the same answer again stores nothing new.
    await driver.tap(P1, "Previous")
    assert "You have answered this question" in driver.seen(P1)[0]
    await driver.tap(P1, "4")
    assert await _stored(driver) == 1

    # The rest: an answer, a skip, two answers, an eNPS score, and no comment.
    for label in ("5", "Skip", "3", "4", "9", "Skip"):
        await driver.tap(P1, label)
    done = driver.seen(P1)
    assert len(done) == 1
    assert "Thank you!" in done[0] and "You skipped 1 question" in done[0]
    assert await _stored(driver) == 5

    # Another person answers one question and stops for now.
    await driver.tap(P2, "2")
    await driver.tap(P2, "Finish later")
    assert "Tap Continue when you have a minute" in driver.seen(P2)[-1]

    # Wednesday 10:00: one reminder, only to those who have not finished, naming nobody.
    driver.core.clock.set(WEDNESDAY_10)
    await driver.core.tick()
    assert len(driver.seen(P1)) == 1
    p2 = driver.seen(P2)
    assert len(p2) == 2
    assert "gentle reminder" in p2[-1] and "question 2 of 7" in p2[-1]
    assert "continues in a newer message" in p2[0]
    assert "northbridge.example" not in p2[-1] and "Social Worker" not in p2[-1]
    assert "gentle reminder" in driver.seen(P3)[-1]
    await driver.core.tick()  # only once
    assert len(driver.seen(P2)) == 2

    # The change team sees counts, never names.
    await driver.say(CHANGE, "pulse")
    listing = driver.seen(CHANGE)[-1]
    # While the round is open the counts are rounded to 5 (two answered, one finished).
    assert "weekly-pulse" in listing and "about 0 of 25 answered" in listing
    assert "about 0 finished" in listing
    assert "practitioner" not in listing

    # Friday 17:00 the round closes; a late tap is turned away politely and nothing is stored.
    driver.core.clock.set(FRIDAY_17)
    await driver.core.tick()
    await driver.tap(P2, "3")
    assert "This round has closed" in driver.seen(P2)[-1]
    # Closed: six answers kept as counts, who was asked and who finished become numbers.
    async with driver.core.db.session() as s:
        kept = (await s.execute(select(func.sum(PulseTally.n)))).scalar_one()
        parts = (await s.execute(select(func.count()).select_from(PulseParticipation))).scalar_one()
        rnd = (await s.execute(select(PulseRound))).scalar_one()
    assert (kept, parts, await _stored(driver)) == (6, 0, 0)
    assert (rnd.n_respondents, rnd.n_finished, rnd.n_asked) == (2, 1, 25)
