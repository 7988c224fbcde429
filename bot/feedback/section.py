"""The `safeguarding:` programme section: signposting wording, routes, extra patterns, limits."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.feedback.safeguarding import CATEGORIES
from bot.programme.core_sections import get_setting, set_setting
from bot.programme.schema import Doc

HHMM = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
ROUTE_FIELDS = {"name", "phone", "email", "url", "hours", "description"}


class SafeguardingSection:
    """Checks and stores `safeguarding:` as the setting the feedback feature reads."""

    key = "safeguarding"
    order = 20

    def validate(self, doc: Doc, value: Any) -> None:
        p = (self.key,)
        m = doc.mapping(value, p)
        if m is None:
            return
        doc.unknown_keys(m, p, {"signposting", "routes", "patterns", "feedback", "alert_channel"})
        doc.get(m, p, "signposting", str)
        doc.get(m, p, "alert_channel", str)
        for path, route in doc.items(m, p, "routes"):
            doc.unknown_keys(route, path, ROUTE_FIELDS)
            doc.get(route, path, "name", str, required=True)
            for k in ROUTE_FIELDS - {"name"}:
                doc.get(route, path, k, str)
        pats = doc.get(m, p, "patterns", dict)
        if pats is not None:
            for category, items in pats.items():
                cp = p + ("patterns", category)
                if category not in CATEGORIES:
                    doc.problem(cp, f"unknown category (expected one of: {', '.join(CATEGORIES)})")
                if not isinstance(items, list):
                    doc.problem(cp, "should be a list of patterns (regular expressions)")
                    continue
                for i, pat in enumerate(items):
                    try:
                        compiled = re.compile(str(pat))
                    except re.error as e:
                        doc.problem(cp + (i,), f"not a valid pattern ({e})")
                        continue
                    if compiled.search("") is not None:
                        # "" or "x*" matches every text: every piece of feedback would be
                        # marked urgent and alert the leads, and a real alert drowned.
                        doc.problem(cp + (i,), "matches empty text, so every piece of feedback "
                                    "would be marked urgent: give words it must find")
        fb = doc.get(m, p, "feedback", dict)
        if fb is not None:
            fp = p + ("feedback",)
            doc.unknown_keys(fb, fp, {"max_length", "daily_limit", "release_times"})
            ml = doc.get(fb, fp, "max_length", int)
            if ml is not None and not 100 <= ml <= 3000:
                doc.problem(fp + ("max_length",), "must be between 100 and 3000 characters")
            dl = doc.get(fb, fp, "daily_limit", int)
            if dl is not None and not 1 <= dl <= 100:
                doc.problem(fp + ("daily_limit",), "must be between 1 and 100")
            times = doc.get(fb, fp, "release_times", list)
            if times is not None:
                if not times:
                    doc.problem(fp + ("release_times",), "needs at least one time, like 17:00")
                for i, t in enumerate(times):
                    if isinstance(t, int) and not isinstance(t, bool):
                        # YAML 1.1 reads 12:00 unquoted as a number of minutes (720).
                        doc.problem(fp + ("release_times", i),
                                    'should be in quotes, like "12:00"')
                    elif not (isinstance(t, str) and HHMM.fullmatch(t)):
                        doc.problem(fp + ("release_times", i),
                                    "should be a time of day like 12:00 (24-hour, HH:MM)")

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        await set_setting(s, "safeguarding", {
            "signposting": str(value.get("signposting") or "").strip(),
            "routes": [{k: str(v) for k, v in r.items() if k in ROUTE_FIELDS}
                       for r in value.get("routes") or []],
            "patterns": {k: [str(x) for x in v] for k, v in (value.get("patterns") or {}).items()},
            "feedback": dict(value.get("feedback") or {}),
            "alert_channel": str(value.get("alert_channel") or ""),
        })

    async def export(self, s: AsyncSession) -> Any:
        v = await get_setting(s, "safeguarding")
        if not v:
            return None
        return {k: x for k, x in v.items() if x not in ("", [], {}, None)}
