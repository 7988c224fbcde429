"""The release schedule's moments: when non-urgent feedback becomes readable (pure functions).

The moments of a programme day are its `safeguarding.feedback.release_times` in the
programme's time zone (bot/feedback/release.py applies them; bot/feedback/service.py dates
what waits by the day of the moment it waits for, docs/invariants.md N29)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Moment:
    """A release moment: when (UTC), the programme day it belongs to, and whether it is the
    day's last (which releases whatever waits)."""

    at: datetime
    day: date
    last: bool
    skip_after: datetime | None  # not the day's last: found after this, it is skipped


def describe(release_times: tuple[str, ...]) -> str:
    """The release times as people read them: "12:00 and 17:00"."""
    ts = [t.strftime("%H:%M") for t in _times(release_times)]
    return ts[0] if len(ts) == 1 else ", ".join(ts[:-1]) + " and " + ts[-1]


def last(release_times: tuple[str, ...]) -> str:
    """The day's last release time as people read it ("17:00"); "" with none. Feedback sent
    after it counts as the next day's (N29), which reply routes expire by (N6)."""
    ts = _times(release_times)
    return ts[-1].strftime("%H:%M") if ts else ""


def _times(release_times: tuple[str, ...]) -> list[time]:
    return sorted({time(int(t[:2]), int(t[3:5])) for t in release_times})


def moments_of(day: date, zone: ZoneInfo, release_times: tuple[str, ...]) -> list[Moment]:
    """The day's release moments, earliest first."""
    ats = [datetime.combine(day, t, tzinfo=zone).astimezone(UTC) for t in _times(release_times)]
    out = []
    for i, at in enumerate(ats):
        nxt = ats[i + 1] if i + 1 < len(ats) else None
        out.append(Moment(at, day, nxt is None, None if nxt is None else at + (nxt - at) / 2))
    return out


def due(now: datetime, zone: ZoneInfo, release_times: tuple[str, ...]) -> Moment | None:
    """The latest release moment at or before `now`."""
    today = now.astimezone(zone).date()
    for day in (today, today - timedelta(days=1)):
        past = [m for m in moments_of(day, zone, release_times) if m.at <= now]
        if past:
            return past[-1]
    return None


def after(now: datetime, zone: ZoneInfo, release_times: tuple[str, ...]) -> Moment:
    """The first release moment after `now`."""
    today = now.astimezone(zone).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        for m in moments_of(day, zone, release_times):
            if m.at > now:
                return m
    raise ValueError("no release moment in the next two days")  # release_times is never empty
