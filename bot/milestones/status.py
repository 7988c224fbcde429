"""The words of the roadmap: statuses, their emoji, check-in cadences."""

from __future__ import annotations

from datetime import date, datetime, timedelta

NOT_STARTED, ON_TRACK, AT_RISK, OFF_TRACK, DONE = (
    "not_started", "on_track", "at_risk", "off_track", "done",
)
STATUSES = (NOT_STARTED, ON_TRACK, AT_RISK, OFF_TRACK, DONE)
LABELS = {
    NOT_STARTED: "Not started",
    ON_TRACK: "On track",
    AT_RISK: "At risk",
    OFF_TRACK: "Off track",
    DONE: "Done",
}
EMOJI = {NOT_STARTED: "⚪", ON_TRACK: "🟢", AT_RISK: "🟠", OFF_TRACK: "🔴", DONE: "✅"}
STALE_EMOJI = "⏳"

CADENCES = {"weekly": 7, "fortnightly": 14, "monthly": 28, "none": 0}
DEFAULT_CADENCE = "fortnightly"
DEFAULT_GRACE_DAYS = 2


def parse_status(word: str) -> str | None:
    """'on track', 'On-track' or 'on_track' -> 'on_track'; None if it is not a status."""
    key = "_".join(word.strip().lower().replace("-", " ").split())
    return key if key in STATUSES else None


def cadence_delta(cadence: str) -> timedelta | None:
    days = CADENCES.get(cadence, 0)
    return timedelta(days=days) if days else None


def age(then: datetime, now: datetime) -> str:
    """'today', 'yesterday', '5 days ago', '3 weeks ago', '2 months ago'."""
    days = (now.date() - then.date()).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    return f"{days // 30} months ago"


def due_words(due: date, today: date) -> str:
    """'31 Mar 2027 (in 4 months)' or '30 Oct 2026 (31 days overdue)'."""
    days = (due - today).days
    if days < 0:
        rel = f"{-days} day{'s' if days != -1 else ''} overdue"
    elif days == 0:
        rel = "due today"
    elif days < 14:
        rel = f"in {days} day{'s' if days != 1 else ''}"
    elif days < 60:
        rel = f"in {days // 7} weeks"
    else:
        rel = f"in {days // 30} months"
    return f"{due.day} {due:%b %Y} ({rel})"
