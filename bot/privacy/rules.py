"""How long each kind of data is kept: the `retention:` programme section and its defaults.

docs/data-protection.md lists the same defaults; tests/dataprotection checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.programme.core_sections import get_setting, set_setting
from bot.programme.schema import Doc

SETTING = "retention"


@dataclass(frozen=True)
class Retention:
    """Each kind's period, in the unit its name says (0 never for those allowed none)."""

    # Feedback items marked done or closed, with their conversation, after their last message.
    feedback_months: int = 24
    # Sealed reply routes to feedback authors (at most 90); the feedback form and the notice
    # tell staff this figure, and the daily run is the one place that expires them.
    reply_routes_days: int = 90
    # Comment text of closed pulse rounds; the counts (and so every report) stay.
    pulse_comments_months: int = 24
    # Answers kept by name, in attributed surveys only, after their round closed.
    attributed_answers_months: int = 24
    # Per-recipient rows of finished broadcasts (the broadcast and its totals stay).
    broadcast_ledger_days: int = 90
    # Milestone check-in prompts once closed (the milestone's updates stay).
    checkins_months: int = 12
    # How a leaver is reached in chat (DM routes) after they left.
    leaver_conversations_days: int = 30
    # A leaver's person record and everything naming them, erased after they left.
    leavers_erase_days: int = 90
    # The record of each people import or sync (counts only).
    people_runs_months: int = 24
    # The scheduler's record of skipped and caught-up prompts.
    scheduler_history_days: int = 90


# Limits per kind: (least, most). Most periods may not be zero: "keep nothing" would break the
# feature that needs the data (a reply route of 0 days cannot be used).
LIMITS: dict[str, tuple[int, int]] = {
    "feedback_months": (1, 120),
    "reply_routes_days": (1, 90),
    "pulse_comments_months": (1, 120),
    "attributed_answers_months": (1, 120),
    "broadcast_ledger_days": (1, 3650),
    "checkins_months": (1, 120),
    "leaver_conversations_days": (0, 3650),
    "leavers_erase_days": (0, 3650),
    "people_runs_months": (1, 120),
    "scheduler_history_days": (8, 3650),  # the scheduler looks back 8 days for missed work
}
KINDS = tuple(f.name for f in fields(Retention))


def from_value(value: dict[str, Any] | None) -> Retention:
    """The stored setting (validated when loaded) over the defaults."""
    v = {k: int(x) for k, x in (value or {}).items() if k in KINDS}
    return Retention(**v)


async def current(s: AsyncSession | AsyncConnection, *, ttl: float = 0) -> Retention:
    """The programme's periods: read fresh by default (the retention run); text shown in chat
    may pass a `ttl` and read the settings cache."""
    return from_value(await get_setting(s, SETTING, {}, ttl=ttl))


class RetentionSection:
    """`retention:` in the programme file: a whole number per kind, within its limits."""

    key = "retention"
    order = 40

    def validate(self, doc: Doc, value: Any) -> None:
        p = (self.key,)
        m = doc.mapping(value, p)
        if m is None:
            return
        doc.unknown_keys(m, p, set(KINDS))
        for k in KINDS:
            n = doc.get(m, p, k, int)
            if n is None:
                continue
            lo, hi = LIMITS[k]
            if not lo <= n <= hi:
                doc.problem(p + (k,), f"must be between {lo} and {hi}, not {n}")

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        await set_setting(s, SETTING, {k: int(value[k]) for k in KINDS if value.get(k) is not None})

    async def export(self, s: AsyncSession) -> Any:
        return await get_setting(s, SETTING, None, ttl=0) or None
