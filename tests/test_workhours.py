"""Working hours in a person's own zone, with weekends and bank holidays."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.workhours import Pattern, is_working_moment, next_working_moment

PROG = {"timezone": "Europe/London", "region": "GB-ENG",
        "working_hours": {"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"]}}


def test_weekday_hours_weekends_and_bank_holidays() -> None:
    p = Pattern.from_settings(PROG)
    assert is_working_moment(p, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))  # Monday
    assert not is_working_moment(p, datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    assert not is_working_moment(p, datetime(2026, 11, 28, 10, 0, tzinfo=UTC))  # Saturday
    # Christmas Day 2026 is a Friday; Boxing Day substitute Monday 28 Dec.
    assert not is_working_moment(p, datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert not is_working_moment(p, datetime(2026, 12, 28, 10, 0, tzinfo=UTC))
    assert next_working_moment(p, datetime(2026, 12, 24, 18, 0, tzinfo=UTC)) == datetime(
        2026, 12, 29, 9, 0, tzinfo=UTC)


def test_summer_time_and_a_persons_own_zone_and_pattern() -> None:
    p = Pattern.from_settings(PROG)
    # 08:30 UTC in June is 09:30 in London.
    assert is_working_moment(p, datetime(2026, 6, 15, 8, 30, tzinfo=UTC))
    night = Pattern.from_settings(PROG, None, {"start": "17:00", "end": "23:00",
                                               "days": ["sat", "sun"]})
    assert is_working_moment(night, datetime(2026, 11, 28, 20, 0, tzinfo=UTC))
    assert not is_working_moment(night, datetime(2026, 11, 30, 20, 0, tzinfo=UTC))
    assert next_working_moment(night, datetime(2026, 11, 30, 10, 0, tzinfo=UTC)) == datetime(
        2026, 12, 5, 17, 0, tzinfo=UTC)


EVERY_REGION = """
import holidays
from holidays.registry import COUNTRIES
from bot.workhours import country_calendar

# Each country through its own module alone (the package's __init__ never runs), first of all.
ours = {name: dict(country_calendar(name, 2026)) for names in COUNTRIES.values() for name in names}
ours["GB-SCT"] = dict(country_calendar("GB-SCT", 2026))
theirs = {name: dict(holidays.country_holidays(*name.split("-"), years=2026)) for name in ours}
print(len(ours), sum(ours[n] == theirs[n] for n in ours), len(ours["GB-SCT"]))
for region in ("XX", "GB-XXX"):
    try:
        country_calendar(region)
    except NotImplementedError as e:
        print(region, "refused:", e)
"""


def test_every_region_holidays_knows_has_the_same_bank_holidays_through_its_own_module() -> None:
    """`country_calendar` imports one country's module (not all 250 through their package) and
    answers as `holidays.country_holidays` does, for every name of every country (codes,
    aliases, class names) and for a subdivision; unknown ones are refused as before."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", EVERY_REGION], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    total, same, scotland = out[0].split()
    assert int(total) > 700 and same == total and int(scotland) > 0
    assert out[1:] == ["XX refused: Country XX not available",
                       "GB-XXX refused: Entity `GB` does not have subdivision XXX"]
