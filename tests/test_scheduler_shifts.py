"""Night shifts: a pattern that ends before it starts belongs to the day the shift began."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core import build_router
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from bot.scheduling.prompts import send_time
from bot.workhours import Pattern, is_working_moment, next_working_moment
from tests.conftest import EXAMPLE

PROG = {"timezone": "Europe/London", "region": "GB-ENG"}
# An emergency duty worker: nights starting Monday to Friday, 22:00 to 07:00.
NIGHTS = Pattern.from_settings(PROG, None, {"start": "22:00", "end": "07:00",
                                            "days": ["mon", "tue", "wed", "thu", "fri"]})


def utc(month: int, day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=UTC)  # London is on UTC in winter


def test_a_night_shift_runs_past_midnight_and_belongs_to_the_day_it_started() -> None:
    assert is_working_moment(NIGHTS, utc(11, 30, 23))  # Monday night
    assert is_working_moment(NIGHTS, utc(12, 1, 6, 30))  # still Monday's shift
    assert not is_working_moment(NIGHTS, utc(12, 1, 7))  # shift over
    assert not is_working_moment(NIGHTS, utc(12, 1, 12))  # daytime
    assert is_working_moment(NIGHTS, utc(12, 5, 2))  # Saturday 02:00: Friday's shift
    assert not is_working_moment(NIGHTS, utc(12, 6, 2))  # Sunday 02:00: no Saturday shift
    # Christmas Eve's shift runs into Christmas morning; no shift starts on Christmas Day.
    assert is_working_moment(NIGHTS, utc(12, 25, 3))
    assert not is_working_moment(NIGHTS, utc(12, 25, 23))
    assert next_working_moment(NIGHTS, utc(12, 25, 10)) == utc(12, 29, 22)  # after Boxing Day (Mon 28)


def test_a_daytime_prompt_waits_for_the_night_workers_next_shift() -> None:
    assert send_time(NIGHTS, utc(11, 30, 10)) == utc(11, 30, 22)
    assert send_time(NIGHTS, utc(12, 1, 5)) == utc(12, 1, 5)  # already on shift


def test_the_programme_file_accepts_night_shifts_and_refuses_empty_ones() -> None:
    text = EXAMPLE.read_text()
    night = text.replace('work_pattern: {start: "17:00", end: "23:00"',
                         'work_pattern: {start: "22:00", end: "07:00"')
    assert night != text
    loader.validate(night, build_router())
    empty = text.replace('work_pattern: {start: "17:00", end: "23:00"',
                         'work_pattern: {start: "09:00", end: "09:00"')
    with pytest.raises(ProgrammeError) as e:
        loader.validate(empty, build_router())
    assert any("must differ from start" in p for p in e.value.problems)
