"""A motivated intruder with a database dump taken while a pulse round is open (a nightly
backup during a week's round), and no key, reads what people answered from how long their
sealed answers are (docs/invariants.md N47).

Answers wait in `pulse_pending` sealed under the round's own secret (N2, N4): AES-GCM hides
the bytes, not how many there are. Sealed as they were written, `[10,null,null]` was a byte
longer than `[9,null,null]`, and a choice was as long as its words: "Yes" and "Family
network meetings" came out 21 bytes apart. Each person's rows share one response key, so the
dump held each respondent's answers to every choice question, and whether they gave 10 out
of 10, side by side; in a round that ends with fewer than k respondents, whose results are
never shown, and for a person whose key timing gives away (their invitation's row, N3).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from bot.core import Core
from bot.people.tables import Person
from bot.pulse import service as pulse
from bot.pulse.tables import (
    PulseComment,
    PulsePending,
    PulseQuestion,
    PulseRound,
    PulseTally,
)
from bot.secrets import seal_bytes
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE

ASKED = [f"practitioner{i}@northbridge.example" for i in range(1, 5)]
SHORT, LONG = "Yes", "Family network meetings, with the family's own network there"


async def _lengths(core: Core) -> dict[str, dict[str, int]]:
    """What the dump says: question text -> response key -> length of the sealed answer."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    async with core.db.session() as s:
        for text, key, n in (await s.execute(
                select(PulseQuestion.text, PulsePending.response_key,
                       func.length(PulsePending.sealed))
                .join(PulseQuestion, PulseQuestion.id == PulsePending.question_id))).all():
            out[text][key] = int(n)
    return dict(out)


async def test_a_sealed_answers_length_does_not_say_what_was_answered(loaded: Core) -> None:
    """Four practitioners answer a survey of the change team's: two give 10 out of 10 and two
    give 3, two choose "Yes" and two the long choice, two write a short comment and two a
    longer one. Before the fix the dump's lengths split every question two against two, and
    each length said which answer it was (a choice's words, 10 against 3, a comment's length);
    every answer to a question must be sealed to one length (a comment of 1,700 characters
    too: a long comment, the rarest, stood out most)."""
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse new")
    errors = await d.submit(CHANGE, {
        "id": "tools-check", "title": "Tools check-in", "every": "fortnightly",
        "when": "tue 09:30", "audience": "assessment", "close_after": "2d",
        "reminder_after": "1d",
        "questions": "enps: How likely are you to recommend working here?\n"
                     f"choice: Which helps most? | {SHORT} | {LONG}\n"
                     "text: Anything else?",
    })
    assert errors is None, errors
    await d.say(CHANGE, "pulse open tools-check")
    assert "Round 1 of Tools check-in is open" in d.seen(CHANGE)[-1]
    for i, email in enumerate(ASKED):
        high = i % 2 == 0
        await d.tap(email, "10" if high else "3")
        await d.tap(email, SHORT if high else LONG)
        await d.tap(email, "Write a comment")
        comment = ("Fine." if i < 2 else
                   "Supervision keeps being moved for court, and the new form takes twice as "
                   "long as the old one did, so the notes wait until the evening. " * (
                       1 if i == 2 else 12))[:2000]  # the last, over 1,500 characters
        assert await d.submit(email, {"comment": comment}) is None

    lengths = await _lengths(loaded)
    assert set(lengths) == {"How likely are you to recommend working here?",
                            "Which helps most?", "Anything else?"}
    for question, by_key in lengths.items():
        assert len(by_key) == len(ASKED), (question, by_key)
        assert len(set(by_key.values())) == 1, (
            f"{question!r}: the sealed lengths {sorted(by_key.values())} say who answered what")


# A practitioner writing in their own language (Ukrainian here): each Cyrillic letter was
# sealed as a six-byte JSON escape ("\u0441"), so a comment of 800 characters or more sealed
# beyond 4 KB, where nobody writing in English ever lands.
UKRAINIAN = ("Супервізію постійно переносять через судові засідання, а нова форма запису справи "
             "заповнюється вдвічі довше, ніж стара, тож нотатки чекають до вечора. ")
ENGLISH = ("Supervision keeps being moved for court, and the new form takes twice as long as "
           "the old one did, so the notes wait until the evening. ")


async def test_a_long_comment_in_another_script_is_sealed_to_the_same_length(
        loaded: Core) -> None:
    """Four practitioners comment: a short line and 1,900 characters in English, a short line
    and 1,200 characters in Ukrainian. Before the fix the Ukrainian one sealed to 8 KB against
    4 KB for the other three: in a dump of the open round, that key was the person who writes
    long comments in Ukrainian, and after the close the comment among its team's was theirs
    (N47). UTF-8 seals any comment the form takes (2,000 characters) in Latin, Greek, Cyrillic,
    Hebrew or Arabic letters within 4 KB."""
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse new")
    errors = await d.submit(CHANGE, {
        "id": "words-check", "title": "In your words", "every": "fortnightly",
        "when": "tue 09:30", "audience": "assessment", "close_after": "2d",
        "reminder_after": "1d", "questions": "text: Anything else?",
    })
    assert errors is None, errors
    await d.say(CHANGE, "pulse open words-check")
    assert "Round 1 of In your words is open" in d.seen(CHANGE)[-1]
    comments = ["Fine.", (ENGLISH * 20)[:1900].strip(), "Усе добре.",
                (UKRAINIAN * 10)[:1200].strip()]
    for email, comment in zip(ASKED, comments, strict=True):
        await d.tap(email, "Write a comment")
        assert await d.submit(email, {"comment": comment}) is None

    lengths = await _lengths(loaded)
    by_key = lengths["Anything else?"]
    assert len(by_key) == len(ASKED), by_key
    assert len(set(by_key.values())) == 1, (
        f"the sealed lengths {sorted(by_key.values())} single out the long Ukrainian comment")

    # The close reads every comment back as it was written, padding and all.
    loaded.clock.set(loaded.clock.now() + timedelta(days=3))  # type: ignore[attr-defined]
    await loaded.tick()
    async with loaded.db.session() as s:
        assert not (await s.execute(select(PulsePending.response_key))).all()
        kept = set((await s.execute(select(PulseComment.text))).scalars())
    assert kept == set(comments)


async def test_a_choice_tap_does_not_serialise_every_choice_again(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard on the tap's cost (issue 22 target 1 watches CPU per tap): the length a choice
    question's answers are padded to is worked out once per set of choices, not on every tap
    (before: each tap serialised every choice of its question to JSON, 24,000 instructions a
    choice, about 120,000 for five, counted under callgrind; the seal itself is 41,000). The
    answers are still sealed to one length."""
    encoded: list[tuple[int | None, str | None, str | None]] = []
    real = pulse._plain

    def counting(value: int | None, choice: str | None, txt: str | None) -> bytes:
        encoded.append((value, choice, txt))
        return real(value, choice, txt)

    monkeypatch.setattr(pulse, "_plain", counting)
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse new")
    choices = [SHORT, LONG, "Peer supervision", "Group case discussion", "None of these"]
    assert await d.submit(CHANGE, {
        "id": "helps-check", "title": "What helps", "every": "fortnightly",
        "when": "tue 09:30", "audience": "assessment", "close_after": "2d",
        "reminder_after": "1d", "questions": "choice: Which helps most? | " + " | ".join(choices),
    }) is None
    await d.say(CHANGE, "pulse open helps-check")
    for i, email in enumerate(ASKED):
        await d.tap(email, choices[i])
    by_key = (await _lengths(loaded))["Which helps most?"]
    assert len(by_key) == len(ASKED) and len(set(by_key.values())) == 1, by_key
    # One serialisation a tap for its seal, and each choice's at most once in all for the
    # padding (before: 24, each tap serialising all five choices again).
    assert len(encoded) <= len(ASKED) + len(choices), encoded


async def test_answers_sealed_before_the_padding_are_read_at_the_close_as_ever(
        loaded: Core) -> None:
    """A round open across the upgrade: one practitioner's answers were sealed the old way
    (unpadded, non-ASCII as JSON escapes), another's are tapped now. The close counts both
    alike and keeps the old comment's words."""
    d = FakeDriver(loaded)
    await loaded.tick()  # the weekly pulse opens
    await d.tap(ASKED[0], "4")
    old_comment = UKRAINIAN.strip()
    async with loaded.db.session() as s:
        rnd = (await s.execute(select(PulseRound))).scalars().one()
        qs = await pulse.questions_of_round(s, rnd)
        text_q = next(q for q in qs if q.kind == "text")
        rsec = await pulse.round_secret(s, rnd.id, loaded.secret)
        assert rsec is not None
        other = (await s.execute(select(Person.id).where(Person.email == ASKED[1]))).scalar_one()
        key = pulse.response_key(rsec, other)
        box = pulse.derive(rsec, pulse.ANSWER_LABEL)
        for qid, answer in ((qs[0].id, [4, None, None]), (text_q.id, [None, None, old_comment])):
            await s.execute(insert(PulsePending).values(
                round_id=rnd.id, response_key=key, question_id=qid,
                sealed=seal_bytes(box, f"{rnd.id}.{key}.{qid}",
                                  json.dumps(answer, separators=(",", ":")).encode())))
        await s.commit()
    loaded.clock.set(loaded.clock.now() + timedelta(days=5))  # type: ignore[attr-defined]
    await loaded.tick()  # the round closes
    async with loaded.db.session() as s:
        fours = (await s.execute(select(func.sum(PulseTally.n)).where(
            PulseTally.question_id == qs[0].id, PulseTally.value == 4))).scalar_one()
        kept = list((await s.execute(select(PulseComment.text))).scalars())
    assert fours == 2
    assert kept == [old_comment]
