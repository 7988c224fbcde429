"""When a survey's rounds are due: weekly, fortnightly, monthly or cron, in a time zone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

EVERY = ("weekly", "fortnightly", "monthly", "cron")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Fortnights are counted from this Monday unless the survey says when it starts.
FORTNIGHT_ANCHOR = date(2024, 1, 1)
DURATION = re.compile(r"(\d+)\s*([dhm])")


class ScheduleError(ValueError):
    """A recurrence that cannot be understood; the message says what is wrong."""


def parse_duration(text: Any) -> int:
    """'2d', '4d 7h', '90m' or a number of hours -> minutes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text * 60
    s = str(text).strip().lower()
    if not s or DURATION.sub("", s).strip():
        raise ScheduleError(f"{text!r:.40} is not a duration like 2d, 4d 7h or 90m")
    unit = {"d": 1440, "h": 60, "m": 1}
    return sum(int(n) * unit[u] for n, u in DURATION.findall(s))


def format_duration(minutes: int) -> str:
    d, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    return " ".join(p for p in parts if p) or "0m"


def trigger(schedule: Mapping[str, Any], tz: str) -> CronTrigger:
    """The cron trigger behind a schedule; ScheduleError when it is malformed."""
    every = schedule.get("every")
    zone = ZoneInfo(tz)
    if every not in EVERY:
        raise ScheduleError(f"'every' should be one of {', '.join(EVERY)}, not {every!r:.40}")
    try:
        if every == "cron":
            expr = str(schedule.get("cron") or "").strip()
            if not expr:
                raise ScheduleError("a cron schedule needs 'cron', like \"0 10 * * mon\"")
            return CronTrigger.from_crontab(expr, timezone=zone)
        hour, minute = _clock(schedule.get("time", "10:00"))
        if every == "monthly":
            return CronTrigger(day=str(schedule.get("day", "1st mon")), hour=hour, minute=minute,
                               timezone=zone)
        day = str(schedule.get("day", "mon")).lower()
        if day not in DAYS:
            raise ScheduleError(f"'day' should be one of {', '.join(DAYS)}, not {day!r:.20}")
        return CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=zone)
    except ScheduleError:
        raise
    except (ValueError, TypeError) as e:
        raise ScheduleError(_cron_message(schedule, e)) from None


def _cron_message(schedule: Mapping[str, Any], e: Exception) -> str:
    if schedule.get("every") == "cron":
        return (f"'{schedule.get('cron')}' is not a valid cron expression "
                f"(minute hour day-of-month month day-of-week): {e}")
    return f"the schedule cannot be understood: {e}"


def _clock(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 10:00 as 600
        return divmod(value, 60)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise ScheduleError(f"'time' should be HH:MM, not {value!r:.20}")
    return int(m[1]), int(m[2])


def check(schedule: Any, tz: str) -> None:
    """Raise ScheduleError if the schedule is malformed."""
    if not isinstance(schedule, Mapping):
        raise ScheduleError("should be a mapping like {every: weekly, day: mon, time: \"10:00\"}")
    unknown = set(schedule) - {"every", "day", "time", "cron", "starts"}
    if unknown:
        raise ScheduleError(f"unknown field {sorted(unknown)[0]!r} "
                            "(expected every, day, time, cron, starts)")
    trigger(schedule, tz)


def fire_times(schedule: Mapping[str, Any], tz: str, after: datetime, until: datetime
               ) -> list[datetime]:
    """Every fire time in (after, until], in UTC order."""
    trig = trigger(schedule, tz)
    out: list[datetime] = []
    prev: datetime | None = None
    t = trig.get_next_fire_time(None, after + timedelta(seconds=1))
    starts = schedule.get("starts")
    first = date.fromisoformat(str(starts)) if starts else date.min
    while t is not None and t <= until and len(out) < 10_000:
        if _in_fortnight(schedule, t, tz) and t.astimezone(ZoneInfo(tz)).date() >= first:
            out.append(t.astimezone(UTC))
        prev = t
        t = trig.get_next_fire_time(prev, prev + timedelta(seconds=1))
    return out


def latest_due(schedule: Mapping[str, Any], tz: str, now: datetime, window_min: int
               ) -> datetime | None:
    """The last fire time at or before `now` whose window (open to close) has not ended."""
    times = fire_times(schedule, tz, now - timedelta(minutes=window_min), now)
    return times[-1] if times else None


def next_after(schedule: Mapping[str, Any], tz: str, now: datetime) -> datetime | None:
    """The next fire time after `now` (for listings and the scheduler's wake-up)."""
    trig = trigger(schedule, tz)
    starts = schedule.get("starts")
    first = date.fromisoformat(str(starts)) if starts else date.min
    # apscheduler is untyped: its fire times are datetimes or None.
    t: datetime | None = trig.get_next_fire_time(None, now + timedelta(seconds=1))
    for _ in range(1000):  # a fortnight skips every other fire time; bounded all the same
        if t is None or t > now + timedelta(days=400):
            return None
        if _in_fortnight(schedule, t, tz) and t.astimezone(ZoneInfo(tz)).date() >= first:
            return t.astimezone(UTC)
        t = trig.get_next_fire_time(t, t + timedelta(seconds=1))
    return None


def _in_fortnight(schedule: Mapping[str, Any], t: datetime, tz: str) -> bool:
    if schedule.get("every") != "fortnightly":
        return True
    starts = schedule.get("starts")
    anchor = date.fromisoformat(str(starts)) if starts else FORTNIGHT_ANCHOR
    anchor -= timedelta(days=anchor.weekday())
    local = t.astimezone(ZoneInfo(tz)).date()
    return ((local - anchor).days // 7) % 2 == 0


def describe(schedule: Mapping[str, Any], tz: str) -> str:
    """'weekly on mon at 10:00 (Europe/London)' for listings."""
    every = schedule.get("every")
    if every == "cron":
        return f"cron '{schedule.get('cron')}' ({tz})"
    hour, minute = _clock(schedule.get("time", "10:00"))
    default_day = "1st mon" if every == "monthly" else "mon"
    return f"{every} on {schedule.get('day', default_day)} at {hour:02d}:{minute:02d} ({tz})"
