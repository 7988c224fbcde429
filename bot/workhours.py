"""Working hours: when a person may be sent a prompt, in their own time zone.

Nothing is DM'd outside the programme's working hours (or a person's own pattern), on
their non-working days, or on bank holidays for the programme's region.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from holidays.registry import COUNTRIES

DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class Pattern:
    start: time
    end: time
    days: frozenset[int]  # 0 = Monday
    tz: str
    region: str = "GB-ENG"

    @classmethod
    def from_settings(cls, programme: dict[str, Any] | None, person_tz: str | None = None,
                      own: dict[str, Any] | None = None) -> Pattern:
        prog = programme or {}
        wh = own or prog.get("working_hours") or {}
        return cls(
            start=time.fromisoformat(wh.get("start", "09:00")),
            end=time.fromisoformat(wh.get("end", "17:00")),
            days=frozenset(DAY_NAMES.index(d) for d in wh.get("days", DAY_NAMES[:5])),
            tz=person_tz or prog.get("timezone", "Europe/London"),
            region=prog.get("region", "GB-ENG"),
        )


# Every name `holidays` answers for a country (class name, alpha-2 and alpha-3 codes,
# aliases), to the module that defines it and the class's name: its own registry, read
# without importing a country.
_COUNTRY_MODULES = {name: (module, names[0]) for module, names in COUNTRIES.items() for name in names}
_COUNTRIES_PACKAGE = "holidays.countries"


def country_calendar(region: str, years: int | None = None) -> holidays.HolidayBase:
    """The bank holidays of a region such as "GB-ENG" (country, then subdivision), as
    `holidays.country_holidays` gives them; NotImplementedError or KeyError for a region it
    does not know.

    Only the region's own country module is imported. `holidays.country_holidays` goes through
    the `holidays.countries` package, whose __init__ imports all of its 250 countries (302
    modules, 7.4 MB of every serving process for the one calendar it needs: bench/README.md).
    The package is entered in sys.modules unexecuted, so importing one country module (and the
    ones it imports, a territory's mother country) runs that module alone; `holidays`' own
    lazy loader (holidays.registry.EntityLoader) imports the same modules the same way."""
    country, _, subdiv = region.partition("-")
    found = _COUNTRY_MODULES.get(country)
    if found is None:  # not a country's name: whatever `holidays` itself makes of it
        return holidays.country_holidays(country, subdiv=subdiv or None, years=years)
    if _COUNTRIES_PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(_COUNTRIES_PACKAGE)
        assert spec is not None
        sys.modules[_COUNTRIES_PACKAGE] = importlib.util.module_from_spec(spec)
    module, name = found
    entity: type[holidays.HolidayBase] = getattr(
        importlib.import_module(f"{_COUNTRIES_PACKAGE}.{module}"), name)
    return entity(years=years, subdiv=subdiv or None)


@lru_cache(maxsize=32)
def _holidays(region: str, year: int) -> holidays.HolidayBase:
    return country_calendar(region, year)


def is_holiday(region: str, day: date) -> bool:
    return day in _holidays(region, day.year)


def is_working_moment(p: Pattern, when: datetime) -> bool:
    """True when `when` falls inside the pattern's hours on a working, non-holiday day.

    A pattern that ends before it starts (22:00 to 07:00) is a night shift: its hours after
    midnight belong to the day the shift started.
    """
    local = when.astimezone(ZoneInfo(p.tz))
    t = local.time()
    if p.start < p.end:
        day = local.date() if p.start <= t < p.end else None
    elif t >= p.start:
        day = local.date()
    elif t < p.end:
        day = local.date() - timedelta(days=1)
    else:
        day = None
    return day is not None and day.weekday() in p.days and not is_holiday(p.region, day)


def next_working_moment(p: Pattern, when: datetime) -> datetime:
    """`when` itself if it is a working moment, else the start of the next working period."""
    if is_working_moment(p, when):
        return when
    zone = ZoneInfo(p.tz)
    local = when.astimezone(zone)
    day = local.date()
    for _ in range(400):
        start = datetime.combine(day, p.start, zone)
        if start >= local and day.weekday() in p.days and not is_holiday(p.region, day):
            return start.astimezone(when.tzinfo)
        day += timedelta(days=1)
    raise ValueError("no working day within 400 days: check the working pattern")


async def pattern_for(s: Any, person: Any) -> Pattern:
    """The working pattern that applies to a person (their own, else the programme's)."""
    from bot.programme.core_sections import get_setting

    prog = await get_setting(s, "programme", {})
    return Pattern.from_settings(prog, person.tz, person.work_pattern)
