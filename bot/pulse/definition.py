"""A survey definition: checked the same way from the programme file and from chat."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.pulse import schedule as sched
from bot.pulse.tables import KINDS
from bot.roles import ALL_ROLES

Path = tuple[str | int, ...]
Report = Callable[[Path, str], None]
# IANA names: letters, digits, '_', '-', '+' in '/'-separated parts (Europe/London, Etc/GMT+1).
TZ_NAME = re.compile(r"^[A-Za-z0-9_+-]{1,30}(?:/[A-Za-z0-9_+-]{1,30}){0,2}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
FIELDS = {"id", "title", "intro", "audience", "schedule", "timezone", "reminder_after",
          "close_after", "anonymity", "results_url", "questions"}
QUESTION_FIELDS = {"id", "kind", "text", "choices", "low", "high"}
DEFAULT_LABELS = {
    "likert5": ("Strongly disagree", "Strongly agree"),
    "enps": ("Not at all likely", "Extremely likely"),
}


@dataclass
class QuestionDef:
    key: str
    kind: str
    text: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SurveyDef:
    """A checked survey, ready to store."""

    id: str
    title: str
    intro: str
    audience: dict[str, Any]
    schedule: dict[str, Any]
    timezone: str
    remind_after_min: int
    close_after_min: int
    anonymity: str
    results_url: str | None
    starts_at: datetime | None
    questions: list[QuestionDef]


def check(v: Any, report: Report, *, teams: set[str], path: Path = ()) -> SurveyDef | None:
    """Report every problem in one survey mapping; the SurveyDef when there are none."""
    problems: list[str] = []

    def bad(p: Path, msg: str) -> None:
        problems.append(msg)
        report(path + p, msg)

    if not isinstance(v, dict):
        bad((), "should be a mapping of fields")
        return None
    for k in v:
        if k not in FIELDS:
            bad((k,), f"unknown field (expected one of: {', '.join(sorted(FIELDS))})")
    sid = v.get("id")
    if not isinstance(sid, str) or not SLUG.match(sid):
        bad(("id",), f"{sid!r:.40} should be lower-case letters, digits and dashes")
    title = v.get("title")
    if not isinstance(title, str) or not title.strip():
        bad(("title",), "'title' is required")
    tz = str(v.get("timezone") or "Europe/London")
    try:
        if not TZ_NAME.match(tz):  # ZoneInfo resolves dotted names as packages: deep ones recurse
            raise ValueError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        bad(("timezone",), f"{tz!r:.40} is not a time zone (like Europe/London)")
        tz = ""
    schedule = v.get("schedule")
    if schedule is None:
        bad(("schedule",), "'schedule' is required, like {every: weekly, day: mon, time: \"10:00\"}")
    elif tz:
        try:
            sched.check(schedule, tz)
        except sched.ScheduleError as e:
            bad(("schedule",), str(e))
    starts = _starts(schedule, bad)
    remind = _duration(v, "reminder_after", "2d", bad)
    close = _duration(v, "close_after", "4d", bad)
    if remind is not None and close is not None and not 0 < remind < close:
        bad(("reminder_after",), "must be after the opening and before close_after")
    anonymity = v.get("anonymity", "anonymous")
    if anonymity not in ("anonymous", "attributed"):
        bad(("anonymity",), f"should be anonymous or attributed, not {anonymity!r:.20}")
    audience = _audience(v.get("audience", "everyone"), teams, bad)
    questions = _questions(v.get("questions"), bad)
    url = v.get("results_url")
    if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
        bad(("results_url",), "should be an https:// link")
    if problems:
        return None
    assert isinstance(sid, str) and isinstance(title, str) and remind and close
    assert isinstance(schedule, dict) and audience is not None
    return SurveyDef(
        id=sid, title=title.strip(), intro=str(v.get("intro") or "").strip(),
        audience=audience, schedule={k: schedule[k] for k in schedule}, timezone=tz,
        remind_after_min=remind, close_after_min=close, anonymity=str(anonymity),
        results_url=url, starts_at=starts, questions=questions,
    )


def _starts(schedule: Any, bad: Report) -> datetime | None:
    if not isinstance(schedule, dict) or schedule.get("starts") is None:
        return None
    raw = schedule["starts"]
    try:
        d = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    except ValueError:
        bad(("schedule", "starts"), f"{raw!r:.30} is not a date (YYYY-MM-DD)")
        return None
    schedule["starts"] = d.isoformat()
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _duration(v: dict[str, Any], key: str, default: str, bad: Report) -> int | None:
    try:
        return sched.parse_duration(v.get(key, default))
    except sched.ScheduleError as e:
        bad((key,), str(e))
        return None


def _audience(raw: Any, teams: set[str], bad: Report) -> dict[str, Any] | None:
    if raw == "everyone":
        return {"everyone": True}
    if not isinstance(raw, dict) or not set(raw) <= {"teams", "roles"} or not raw:
        bad(("audience",), "should be 'everyone' or a mapping with teams and/or roles")
        return None
    out: dict[str, Any] = {"teams": [], "roles": []}
    ok = True
    for t in raw.get("teams") or []:
        if t not in teams:
            bad(("audience", "teams"), f"{t!r:.40} is not a team in organisation.teams")
            ok = False
        out["teams"].append(t)
    for r in raw.get("roles") or []:
        if r not in ALL_ROLES:
            bad(("audience", "roles"), f"{r!r:.40} is not a role ({', '.join(ALL_ROLES)})")
            ok = False
        out["roles"].append(r)
    return out if ok else None


def _questions(raw: Any, bad: Report) -> list[QuestionDef]:
    if not isinstance(raw, list) or not raw:
        bad(("questions",), "should be a list of at least one question")
        return []
    out: list[QuestionDef] = []
    seen: set[str] = set()
    for i, q in enumerate(raw):
        p: Path = ("questions", i)
        if not isinstance(q, dict):
            bad(p, "should be a mapping with id, kind and text")
            continue
        for k in q:
            if k not in QUESTION_FIELDS:
                bad(p + (k,), f"unknown field (expected one of: {', '.join(sorted(QUESTION_FIELDS))})")
        key, kind, text = q.get("id"), q.get("kind"), q.get("text")
        if not isinstance(key, str) or not SLUG.match(key):
            bad(p + ("id",), f"{key!r:.40} should be lower-case letters, digits and dashes")
        elif key in seen:
            bad(p + ("id",), f"question '{key}' appears twice")
        if kind not in KINDS:
            bad(p + ("kind",), f"should be one of {', '.join(KINDS)}, not {kind!r:.20}")
        if not isinstance(text, str) or not text.strip():
            bad(p + ("text",), "'text' is required")
        options: dict[str, Any] = {}
        if kind == "choice":
            choices = q.get("choices")
            if (not isinstance(choices, list) or len(choices) < 2 or len(choices) > 10
                    or not all(isinstance(c, str) and c.strip() for c in choices)
                    or len(set(choices)) != len(choices)):
                bad(p + ("choices",), "a choice question needs 2 to 10 different choices")
            else:
                options["choices"] = [c.strip()[:200] for c in choices]
        elif kind in DEFAULT_LABELS:
            low, high = DEFAULT_LABELS[kind]
            options = {"low": str(q.get("low", low)), "high": str(q.get("high", high))}
        if isinstance(key, str) and isinstance(text, str) and kind in KINDS:
            seen.add(key)
            out.append(QuestionDef(key, str(kind), text.strip(), options))
    return out


def to_yaml(survey: Any, questions: list[Any]) -> dict[str, Any]:
    """A stored survey in the programme file's shape (for export)."""
    audience: Any = "everyone" if survey.audience.get("everyone") else {
        k: v for k, v in survey.audience.items() if v
    }
    out: dict[str, Any] = {
        "id": survey.id, "title": survey.title, "intro": survey.intro or None,
        "audience": audience, "schedule": survey.schedule, "timezone": survey.timezone,
        "reminder_after": sched.format_duration(survey.remind_after_min),
        "close_after": sched.format_duration(survey.close_after_min),
        "anonymity": survey.anonymity, "results_url": survey.results_url,
        "questions": [
            {"id": q.key, "kind": q.kind, "text": q.text, **q.options} for q in questions
        ],
    }
    return {k: v for k, v in out.items() if v is not None}
