"""Pulse surveys: answering, anonymity, bad input, concurrency, schedules and change-team commands."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import DateTime, func, select

from bot.core import Core
from bot.model import ActionEvent, RatingScale
from bot.people.tables import Identity, Person
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from bot.pulse import cards
from bot.pulse import service as pulse
from bot.pulse.tables import (
    PulseAttributedAnswer,
    PulseCell,
    PulseComment,
    PulseCompletion,
    PulseParticipation,
    PulsePending,
    PulseRound,
    PulseRoundKey,
    PulseSurvey,
    PulseTally,
)
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE

P1 = "practitioner1@northbridge.example"
P2 = "practitioner2@northbridge.example"
NIGHT = "nightduty@northbridge.example"
CHANGE = "changelead@northbridge.example"
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


async def count(core: Core, table: type, *where: object) -> int:
    async with core.db.session() as s:
        q = select(func.count()).select_from(table)
        for w in where:
            q = q.where(w)  # type: ignore[arg-type]
        return int((await s.execute(q)).scalar_one())


async def held(core: Core) -> list[tuple[int | None, str | None, str | None]]:
    """Every answer an open round holds, opened with its round secret (value, choice, text)."""
    out = []
    async with core.db.session() as s:
        rows = (await s.execute(select(PulsePending))).scalars().all()
        for a in rows:
            secret = await pulse.round_secret(s, a.round_id, core.secret)
            assert secret is not None
            box = pulse.derive(secret, pulse.ANSWER_LABEL)
            out.append(pulse._open_answer(box, a.round_id, a.response_key, a.question_id,
                                          a.sealed))
    return out


async def open_round(loaded: Core) -> FakeDriver:
    d = FakeDriver(loaded)
    await loaded.tick()
    return d


def card_of(d: FakeDriver, email: str):  # type: ignore[no-untyped-def]
    return d.port.messages(d.conv(email).conversation_id)[-1]


def scale_of(d: FakeDriver, email: str) -> RatingScale:
    return next(b for b in card_of(d, email).message.blocks if isinstance(b, RatingScale))


async def raw_tap(d: FakeDriver, email: str, action_id: str, value: str,
                  event_id: str | None = None) -> None:
    """A tap with a hand-made payload, as a forged or replayed request would carry."""
    posted = card_of(d, email)
    await d.core.handle(
        ActionEvent(event_id or d._id(), d.user(email), d.conv(email), action_id=action_id,
                    value=value, message=posted.ref),
        d.port,
    )


# -- answering -----------------------------------------------------------------------------


async def test_a_practitioner_answers_with_one_tap_and_can_change_it_until_close(loaded: Core) -> None:
    d = await open_round(loaded)
    await d.tap(P1, "2")
    await d.tap(P1, "Previous")
    await d.tap(P1, "5")
    assert [v for v, _c, _t in await held(loaded)] == [5]
    assert len(d.seen(P1)) == 1


async def test_a_tap_knows_which_questions_were_answered_without_opening_any_answer(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard for a saving (bench/README, cpu11): the card says whether a question was
    answered and the thanks how many were skipped, from which questions have a sealed answer;
    no tap opens one (before: every tap opened each answer given so far, to drop the values)."""
    opened: list[str] = []
    real = pulse._open_answer

    def counting(box: bytes, round_id: str, key: str, question_id: str, sealed: bytes
                 ) -> tuple[int | None, str | None, str | None]:
        opened.append(question_id)
        return real(box, round_id, key, question_id, sealed)

    monkeypatch.setattr(pulse, "_open_answer", counting)
    d = await open_round(loaded)
    await d.tap(P1, "2")
    await d.tap(P1, "Skip")
    await d.tap(P1, "Previous")
    assert "question 2 of 7" in d.seen(P1)[-1]
    assert "You have answered this question" not in d.seen(P1)[-1]  # skipped
    await d.tap(P1, "Previous")
    assert "question 1 of 7" in d.seen(P1)[-1]
    assert "You have answered this question" in d.seen(P1)[-1]
    for label in ("3", "Skip", "4", "4", "4", "8", "Skip"):
        await d.tap(P1, label)
    assert "Thank you!" in d.seen(P1)[-1]
    assert "You skipped 1 question;" in d.seen(P1)[-1]
    assert opened == []  # before: each answer given so far, on every tap after it
    assert sorted(v for v, _c, _t in await held(loaded) if v is not None) == [3, 4, 4, 4, 8]


async def test_finish_later_then_continue_where_you_left_off(loaded: Core) -> None:
    d = await open_round(loaded)
    await d.tap(P1, "3")
    await d.tap(P1, "Finish later")
    await d.tap(P1, "Continue")
    assert "question 2 of 7" in d.seen(P1)[-1]


async def test_a_free_text_comment_is_stored_without_a_name_and_thanks_follow(loaded: Core) -> None:
    d = await open_round(loaded)
    for label in ("4", "4", "4", "4", "4", "8", "Write a comment"):
        await d.tap(P1, label)
    form = d.form(P1)
    assert form is not None and "not the way to report a concern" in str(form.intro)
    assert await d.submit(P1, {"comment": "Group supervision is helping a lot."}) is None
    texts = [t for _v, _c, t in await held(loaded) if t]
    assert texts == ["Group supervision is helping a lot."]
    last = d.seen(P1)
    assert len(last) == 1 and "Thank you!" in last[0]
    # Finishing is recorded by response key; the person's own row learns it later, in a batch.
    assert await count(loaded, PulseCompletion) == 1
    assert await count(loaded, PulseParticipation, PulseParticipation.finished.is_(True)) == 0


async def test_the_thank_you_points_at_the_last_published_round(loaded: Core) -> None:
    d = await open_round(loaded)
    loaded.clock.set(MONDAY_10 + timedelta(days=7))  # type: ignore[attr-defined]
    await loaded.tick()  # round 1 closed on Friday; round 2 opens
    for label in ("4", "4", "4", "4", "4", "8", "Skip"):
        await d.tap(P1, label)
    assert "Results of round 1 (closed Fri 4 Dec, 17:00)" in d.seen(P1)[-1]


# -- anonymity -----------------------------------------------------------------------------


async def test_no_answer_can_be_joined_to_a_person(loaded: Core) -> None:
    """Schema and rows: answers carry no person, no time, random keys; sealed until close."""
    d = await open_round(loaded)
    for who in (P1, P2, "practitioner3@northbridge.example"):
        for label in ("4", "2", "Skip", "5"):
            await d.tap(who, label)
    for table in (PulsePending, PulseTally, PulseCell, PulseComment):
        cols = {c.name: c for c in table.__table__.columns}
        assert not any("person" in n or "user" in n or "email" in n for n in cols), table
        assert not any(isinstance(c.type, DateTime) or "time" in n or "_at" in n
                       for n, c in cols.items()), table
        fk_targets = {fk.column.table.name for c in cols.values() for fk in c.foreign_keys}
        assert fk_targets <= {"pulse_rounds", "pulse_questions"}, table
    part_cols = set(PulseParticipation.__table__.columns.keys())
    assert not any("answer" in n or "response" in n for n in part_cols)
    assert set(PulseCompletion.__table__.columns.keys()) == {"round_id", "response_key"}

    async with loaded.db.engine.connect() as conn:
        answers = (await conn.execute(PulsePending.__table__.select())).mappings().all()
        people = (await conn.execute(Person.__table__.select())).mappings().all()
        idents = (await conn.execute(Identity.__table__.select())).mappings().all()
        parts = (await conn.execute(PulseParticipation.__table__.select())).mappings().all()
    assert len(answers) == 9
    # Values that identify a person, anywhere they are kept.
    personal = {str(v) for row in (*people, *idents) for v in row.values() if v}
    personal |= {str(r["person_id"]) for r in parts} | {str(r["message"]) for r in parts}
    personal |= {hashlib.sha256(str(p["id"]).encode()).hexdigest() for p in people}
    for a in answers:
        assert str(a["response_key"]) not in personal, "a response key matches a person's data"
    # The same respondent's answers share a key (three people), nobody's key is readable.
    assert len({a["response_key"] for a in answers}) == 3
    if loaded.db.is_sqlite:  # no hidden insert-order key either
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        with pytest.raises(OperationalError):
            async with loaded.db.engine.connect() as conn:
                await conn.execute(text("SELECT rowid FROM pulse_pending"))
    # Closing keeps counts per cell and forgets who was asked, finished, and the round's key.
    loaded.clock.set(MONDAY_10 + timedelta(days=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "pulse close weekly-pulse")
    for table in (PulsePending, PulseCompletion, PulseParticipation, PulseRoundKey):
        assert await count(loaded, table) == 0, table
    assert await count(loaded, PulseAttributedAnswer) == 0
    async with loaded.db.session() as s:
        tallies = (await s.execute(select(PulseTally.value, PulseTally.n))).all()
    assert sorted(tallies) == [(2, 3), (4, 3), (5, 3)]


async def test_an_attributed_survey_keeps_names_apart_and_says_so(loaded: Core) -> None:
    async with loaded.db.session() as s:
        sv = await s.get(PulseSurvey, "weekly-pulse")
        assert sv is not None
        sv.anonymity = "attributed"
    d = await open_round(loaded)
    assert "NOT anonymous" in d.seen(P1)[0]
    await d.tap(P1, "4")
    loaded.clock.set(MONDAY_10 + timedelta(days=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "pulse close weekly-pulse")
    async with loaded.db.session() as s:
        attr = (await s.execute(select(PulseAttributedAnswer))).scalars().one()
        person = (await s.execute(select(Person).where(Person.email == P1))).scalar_one()
    assert attr.person_id == person.id and attr.value == 4


# -- bad input -----------------------------------------------------------------------------


async def test_a_forged_out_of_range_value_is_refused_and_nothing_is_stored(loaded: Core) -> None:
    d = await open_round(loaded)
    scale = scale_of(d, P1)
    for value in ("7", "0", "-1", "99999", "4; DROP TABLE", ""):
        await raw_tap(d, P1, scale.action_id, value)
        assert d.seen(P1)[-1] == "That isn't one of the answers to this question, so nothing was saved."
    await raw_tap(d, P1, scale.action_id[:-1] + "42", "3")
    assert "no longer available" in d.seen(P1)[-1]
    await raw_tap(d, P1, "pulse.a.nosuchround.0", "3")
    assert "no longer available" in d.seen(P1)[-1]
    await raw_tap(d, P1, scale.action_id.replace(cards.ANSWER, cards.NAV), "explode")
    assert "isn't one of the answers" in d.seen(P1)[-1]
    assert await count(loaded, PulsePending) == 0
    assert "question 1 of 7" in d.seen(P1)[0]  # the survey card is untouched


async def test_someone_outside_the_audience_cannot_answer(loaded: Core) -> None:
    from bot.people.service import ENROLMENT
    from bot.programme.core_sections import set_setting

    d = await open_round(loaded)
    scale = scale_of(d, P1)
    async with loaded.db.session() as s:  # they may join (self-enrol), but were not asked
        await set_setting(s, ENROLMENT, {"self_enrol": True, "contact": ""})
    stranger = "visitor@elsewhere.example"
    await d.core.handle(ActionEvent("x1", d.user(stranger), d.conv(stranger),
                                    action_id=scale.action_id, value="3"), d.port)
    assert d.seen(stranger)[-1] == "That survey wasn't sent to you, so nothing was saved."
    assert await count(loaded, PulsePending) == 0


async def test_unknown_survey_in_a_command_changes_nothing(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse open nosuch")
    assert d.seen(CHANGE)[-1].startswith("There is no survey called 'nosuch'. Surveys: weekly-pulse.")
    await d.say(CHANGE, "pulse close")
    assert "Which survey?" in d.seen(CHANGE)[-1]
    assert await count(loaded, PulseRound) == 0


async def test_a_malformed_cron_in_the_programme_file_is_a_clear_problem(loaded: Core) -> None:
    text = EXAMPLE.read_text().replace(
        'schedule: {every: weekly, day: mon, time: "10:00"}',
        'schedule: {every: cron, cron: "61 10 * * mon"}')
    with pytest.raises(ProgrammeError) as e:
        await loader.load(loaded.db, text, loaded.router)
    msg = str(e.value)
    assert "pulse_surveys[0].schedule" in msg and "not a valid cron expression" in msg
    assert "line " in msg


async def test_a_survey_defined_in_chat_with_a_bad_cron_is_refused(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse new")
    errors = await d.submit(CHANGE, {"id": "quick-check", "title": "Quick check", "every": "cron",
                                     "when": "0 25 * * *", "questions": "rating: I feel supported"})
    assert errors is not None and "not a valid cron expression" in errors["when"]
    assert await count(loaded, PulseSurvey) == 1


async def test_a_survey_defined_in_chat_opens_now_for_its_audience(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse new")
    errors = await d.submit(CHANGE, {
        "id": "assessment-check", "title": "Assessment check-in", "every": "fortnightly",
        "when": "tue 09:30", "audience": "assessment", "close_after": "2d",
        "reminder_after": "1d",
        "questions": "rating: I have time for reflective supervision\n"
                     "choice: Which helps most? | Group supervision | Family network meetings\n"
                     "yesno: Have you used the new tools this week?",
    })
    assert errors is None, errors
    assert "Created assessment-check" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "pulse open assessment-check")
    assert "Round 1 of Assessment check-in is open" in d.seen(CHANGE)[-1]
    assert "6 of 6 people have it now" in d.seen(CHANGE)[-1]  # the assessment team and its lead
    assert d.seen("practitioner6@northbridge.example") == []  # family support: not asked
    await d.tap(P1, "4")
    await d.tap(P1, "Family network meetings")
    await d.tap(P1, "Yes")
    rows = [(v, c) for v, c, _t in await held(loaded)]
    assert sorted(rows, key=str) == sorted([(4, None), (None, "Family network meetings"),
                                            (1, None)], key=str)


# -- one answer per person per question, however it arrives -------------------------------


async def test_the_same_tap_twice_at_once_from_two_devices_is_one_answer(loaded: Core) -> None:
    d = await open_round(loaded)
    scale = scale_of(d, P1)
    await asyncio.gather(*(raw_tap(d, P1, scale.action_id, v) for v in ("4", "4", "5", "4")))
    assert await count(loaded, PulsePending) == 1


async def test_a_platform_retry_of_the_same_event_is_one_answer(loaded: Core) -> None:
    d = await open_round(loaded)
    scale = scale_of(d, P1)
    await asyncio.gather(raw_tap(d, P1, scale.action_id, "3", "retry-1"),
                         raw_tap(d, P1, scale.action_id, "3", "retry-1"))
    await raw_tap(d, P1, scale.action_id, "3", "retry-1")
    assert await count(loaded, PulsePending) == 1


async def test_the_database_refuses_a_second_answer_row(loaded: Core) -> None:
    from sqlalchemy.exc import IntegrityError

    d = await open_round(loaded)
    await d.tap(P1, "4")
    async with loaded.db.session() as s:
        a = (await s.execute(select(PulsePending))).scalars().one()
        row = {c: getattr(a, c) for c in ("round_id", "question_id", "response_key")}
    with pytest.raises(IntegrityError):
        async with loaded.db.session() as s:
            s.add(PulsePending(**row, sealed=b"x" * 40))


# -- schedule, working hours, restarts -------------------------------------------------------


async def test_someone_outside_working_hours_is_invited_at_their_next_working_moment(
    loaded: Core,
) -> None:
    d = await open_round(loaded)
    assert d.seen(NIGHT) == []
    loaded.clock.set(MONDAY_10 + timedelta(hours=7, minutes=30))  # type: ignore[attr-defined]
    await loaded.tick()
    assert "question 1 of 7" in d.seen(NIGHT)[-1]
    assert len(d.seen(P1)) == 1


async def test_a_restart_loses_nothing_and_repeats_nothing(loaded: Core) -> None:
    # The bot was down at Monday 10:00 and starts on Tuesday: the round still opens.
    d = FakeDriver(loaded)
    loaded.clock.set(MONDAY_10 + timedelta(days=1))  # type: ignore[attr-defined]
    restarted = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    restarted.add_port(d.port)
    await restarted.tick()
    await restarted.tick()
    again = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    again.add_port(d.port)
    await again.tick()
    assert await count(loaded, PulseRound) == 1
    async with loaded.db.session() as s:
        rnd = (await s.execute(select(PulseRound))).scalars().one()
    assert rnd.opens_at == MONDAY_10
    assert len(d.seen(P1)) == 1


async def test_no_round_opens_once_its_window_has_passed(loaded: Core) -> None:
    loaded.clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await loaded.tick()
    assert await count(loaded, PulseRound) == 0


def test_recurrences_weekly_fortnightly_monthly_and_cron() -> None:
    from bot.pulse import schedule as sched

    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    tz = "Europe/London"
    weekly = sched.fire_times({"every": "weekly", "day": "mon", "time": "10:00"}, tz, start, end)
    fortnightly = sched.fire_times({"every": "fortnightly", "day": "mon", "time": "10:00",
                                    "starts": "2026-11-30"}, tz, start, end)
    monthly = sched.fire_times({"every": "monthly", "day": "1st tue", "time": "09:00"}, tz,
                               start, end)
    cron = sched.fire_times({"every": "cron", "cron": "30 14 * * fri"}, "America/New_York",
                            start, end)
    assert len(weekly) == 9 and all(t.weekday() == 0 for t in weekly)
    assert fortnightly[0] == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert all((b - a) == timedelta(days=14) for a, b in zip(fortnightly, fortnightly[1:], strict=False))
    assert [t.day for t in monthly] == [3, 1]
    assert cron[0] == datetime(2026, 11, 6, 19, 30, tzinfo=UTC)  # 14:30 in New York (EST)
    with pytest.raises(sched.ScheduleError):
        sched.check({"every": "cron", "cron": "0 10 * *"}, tz)
    with pytest.raises(sched.ScheduleError):
        sched.check({"every": "daily"}, tz)
    assert sched.parse_duration("4d 7h") == 4 * 1440 + 7 * 60


# -- change-team commands ------------------------------------------------------------------


async def test_pause_resume_open_and_close_early(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse pause weekly-pulse")
    assert "is paused" in d.seen(CHANGE)[-1]
    await loaded.tick()
    assert await count(loaded, PulseRound) == 0 and d.seen(P1) == []
    await d.say(CHANGE, "pulse open weekly-pulse")
    assert "is paused" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "pulse resume weekly-pulse")
    await d.say(CHANGE, "pulse open weekly-pulse")
    assert "Round 1 of Weekly pulse is open" in d.seen(CHANGE)[-1]
    assert "still open" not in d.seen(CHANGE)[-1]
    await d.tap(P1, "4")
    await d.say(CHANGE, "pulse")  # while open, answers are counted to the nearest 5
    assert "about 0 of 25 answered, about 0 finished (rounded to 5" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "pulse close weekly-pulse")  # one answer, an hour in: not yet
    assert "Round 1 cannot be closed yet: fewer than 5 people have answered" in d.seen(CHANGE)[-1]
    assert await count(loaded, PulseRound, PulseRound.state == "open") == 1
    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "pulse close weekly-pulse")
    assert "Round 1 of Weekly pulse is closed: 1 of 25 answered" in d.seen(CHANGE)[-1]
    await d.tap(P1, "4")
    assert "This round has closed" in d.seen(P1)[-1]
    await d.say(CHANGE, "pulse weekly-pulse")
    assert "Round 1 (closed)" in d.seen(CHANGE)[-1]
    await loaded.tick()  # the manual round covers this Monday's schedule
    assert await count(loaded, PulseRound) == 1


async def test_opening_a_round_while_one_is_open_says_the_old_one_closed(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "pulse open weekly-pulse")
    await d.tap(P1, "4")
    loaded.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "pulse open weekly-pulse")  # would close round 1 early: refused
    assert "Round 1 cannot be closed yet" in d.seen(CHANGE)[-1]
    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "pulse open weekly-pulse")
    said = d.seen(CHANGE)[-1]
    assert said.startswith("Round 1 was still open and is now closed: 1 of 25 answered")
    assert "Round 2 of Weekly pulse is open" in said
    async with loaded.db.session() as s:
        states = dict((await s.execute(select(PulseRound.number, PulseRound.state))).all())
    assert states == {1: "closed", 2: "open"}


async def test_a_practitioner_cannot_run_the_surveys(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(P1, "pulse open weekly-pulse")
    assert "only the change team can do that" in d.seen(P1)[-1]
    assert await count(loaded, PulseRound) == 0


async def test_the_programme_export_keeps_the_survey(loaded: Core) -> None:
    text = await loader.export(loaded.db, loaded.router)
    assert "pulse_surveys:" in text and "shared-vision" in text and "4d 7h" in text


async def test_programme_file_problems_name_the_line_and_field(loaded: Core) -> None:
    text = EXAMPLE.read_text().replace("audience: everyone", "audience: {teams: [night-owls]}")
    text = text.replace("reminder_after: 2d ", "reminder_after: 5d ")
    text = text.replace("kind: enps", "kind: stars")
    with pytest.raises(ProgrammeError) as e:
        await loader.load(loaded.db, text, loaded.router)
    problems = e.value.problems
    assert any("pulse_surveys[0].audience.teams" in p and "night-owls" in p for p in problems)
    assert any("reminder_after" in p and "before close_after" in p for p in problems)
    assert any("questions[5].kind" in p and "stars" in p for p in problems)
    async with loaded.db.session() as s:
        sv = await s.get(PulseSurvey, "weekly-pulse")
    assert sv is not None and sv.remind_after_min == 2 * 1440  # nothing changed
