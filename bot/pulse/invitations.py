"""Pulse invitations go through the shared delivery ledger: exactly once per person per round.

Opening a round lists who is asked (`pulse_participation`). `enqueue` then writes one ledger row
(kind "pulse", subject the round) for each person asked who has none yet: a set-based anti-join
and one bulk insert in one transaction, so nothing is sent before every row is queued, and each
row waits for its person's working hours. Every sender (each replica's worker, and the pulse
ticker itself) drains these rows under the same workspace leases, rate limits and idempotency
keys as broadcasts (bot/broadcasts/sender.py), so a sender killed at any moment and restarted,
or another replica, neither repeats an invitation nor loses one.

When the ledger records an invitation as sent, the same transaction stamps the participation row
(`invited_at`, the live message) that reminders and the counts read; a person found unreachable
is marked so, and `admit_latecomers` makes them invitable again once they can be reached. The
rows link people to a round, so they are deleted with the participation when the round closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import ledger
from bot.broadcasts.ledger import Kind, NotNow, Settled
from bot.broadcasts.tables import Delivery
from bot.errors import UserError
from bot.model import Message
from bot.people.tables import Person
from bot.programme.core_sections import get_setting
from bot.pulse import cards
from bot.pulse import service as pulse
from bot.pulse.answers import load_where
from bot.pulse.tables import PulseParticipation, PulseSurvey
from bot.scheduling.jobs import fell_in_gap, note
from bot.scheduling.prompts import send_time
from bot.workhours import Pattern

log = logging.getLogger("staffvoice.pulse")
KIND = pulse.INVITATION_KIND
PAUSED_RECHECK_S = 60.0


async def _message(core: Any, round_id: str) -> Message | None:
    """The first question, as everyone in the round is invited with it (None once closed)."""
    async with core.db.session() as s:
        try:
            w = await load_where(s, round_id)
        except UserError:
            return None
        paused = await s.scalar(select(PulseSurvey.paused).where(
            PulseSurvey.id == w.round.survey_id))
    if w.round.state != "open":
        return None
    if paused:
        raise NotNow(PAUSED_RECHECK_S)  # resumed: the invitations go then
    return cards.question_card(w, 0, lead=w.survey.intro or f"{w.survey.title} is open.")


async def _settled(s: AsyncSession, items: list[Settled]) -> None:
    """Stamp the participation of those invited (or found unreachable), in the ledger's
    transaction."""
    t = cast(Table, PulseParticipation.__table__)
    who = and_(t.c.round_id == bindparam("b_round"), t.c.person_id == bindparam("b_person"))
    sent = [{"b_round": i.subject, "b_person": i.person_id, "b_at": i.at,
             "b_message": i.message_ref} for i in items if i.state == "sent" and i.person_id]
    if sent:
        await s.execute(update(t).where(who).values(invited_at=bindparam("b_at"),
                                                    message=bindparam("b_message")), sent)
    gone = [{"b_round": i.subject, "b_person": i.person_id} for i in items
            if i.state == "skipped" and i.person_id]
    if gone:
        await s.execute(update(t).where(who, t.c.invited_at.is_(None))
                        .values(unreachable=True), gone)


async def _wanted(s: AsyncSession, round_id: str, person_ids: set[str]) -> set[str]:
    """Those still asked in the round and not leavers (a queued invitation waits for no one
    who left, or was erased, since it was queued)."""
    P = PulseParticipation
    rows = await s.execute(select(P.person_id).join(Person, Person.id == P.person_id).where(
        P.round_id == round_id, P.person_id.in_(sorted(person_ids)), P.invited_at.is_(None),
        Person.left_on.is_(None)))
    return set(rows.scalars())


ledger.register_kind(KIND, Kind(message=_message, settled=_settled, wanted=_wanted))


async def enqueue(core: Any, round_id: str, opens_at: datetime, now: datetime,
                  job: str) -> int:
    """Queue an invitation for everyone asked in the round who has none yet; how many.

    Records a late-work note (`job`) for each send time that passed while the bot was down.
    """
    P = PulseParticipation
    candidates = (select(P.person_id).join(Person, Person.id == P.person_id)
                  .where(P.round_id == round_id, P.unreachable.is_(False),
                         P.invited_at.is_(None), Person.left_on.is_(None))
                  .order_by(P.person_id))
    async with core.db.session() as s:
        ids = await ledger.enqueue_missing(s, KIND, round_id, candidates, set(core.ports), now)
        late = await _late_send_times(s, ids, opens_at, now) if ids else set()
    for at in sorted(late):
        await note(core, job, f"invite:{round_id}:{at:%Y%m%dT%H%M}", at, now, "caught-up")
    return len(ids)


async def _late_send_times(s: AsyncSession, ids: list[str], opens_at: datetime,
                           now: datetime) -> set[datetime]:
    """Send times (one per work pattern) of the queued that fell while the bot was down."""
    if not fell_in_gap(now - timedelta(microseconds=1), now):
        return set()  # not a run catching up after downtime: no send time fell in a gap
    prog = await get_setting(s, "programme", {})
    seen: dict[tuple[str | None, str], Pattern] = {}
    for i in range(0, len(ids), 1000):
        rows = await s.execute(select(Person.tz, Person.work_pattern)
                               .where(Person.id.in_(ids[i : i + 1000])))
        for tz, own in rows.all():
            key = (tz, repr(sorted((own or {}).items())))
            if key not in seen:
                seen[key] = Pattern.from_settings(prog, tz, own)
    times = {send_time(p, opens_at) for p in seen.values()}
    return {t for t in times if fell_in_gap(t, now)}


async def invited(s: AsyncSession, round_id: str) -> int:
    """How many in the round have had their invitation."""
    P = PulseParticipation
    return int(await s.scalar(select(func.count()).where(
        P.round_id == round_id, P.invited_at.is_not(None))) or 0)



# Why an invitation was not delivered, by kind: what the change team can act on, never who.
# Matched against the ledger's reasons (bot/broadcasts/sender.py) and the platforms' codes
# quoted in them (adapters/slack/port.py, adapters/teams/connector.py); first match wins.
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the platform refuses the app (uninstalled, token revoked or disabled by an admin)",
     ("reinstall", "admin disabled", "refused staffvoice's token", "gave up after 24 hours")),
    ("account deactivated or removed", ("user_disabled", "deactivated", "account_inactive",
                                        "is gone", "notfound")),
    ("blocked or removed the app", ("blocked", "forbidden", "not installed", "uninstalled")),
    ("the platform refused the message", ("refused by the platform",)),
    ("their conversation takes no posts (archived or restricted)",
     ("is_archived", "restricted_action", "channel_not_found")),
    ("no account found in chat (not on a connected platform, or deactivated)",
     ("not reachable", "unreachable", "not_found")),
    ("outcome unknown, not resent to avoid a duplicate", ("outcome unknown",)),
    ("kept failing (platform errors)", ("gave up after",)),
)
# Rows settled for reasons that are nobody's failure: not counted.
_NOT_REFUSED = ("no longer asked", "no longer open")


def reason_kind(error: str | None) -> str:
    """The kind of reason an invitation was not delivered (bot/pulse/invitations.py _KINDS)."""
    low = (error or "").lower()
    for kind, words in _KINDS:
        if any(w in low for w in words):
            return kind
    return "other platform error"


@dataclass(frozen=True)
class NotInvited:
    """An open round's invitations that could not be delivered: how many, and why by kind."""

    total: int
    reasons: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        if not self.total:
            return ""
        why = ", ".join(f"{n} {kind}" for kind, n in self.reasons)
        return f"{self.total} could not be invited ({why})"


async def not_invited(s: AsyncSession, round_id: str) -> NotInvited:
    """Invitations of an open round refused for good (failed) or for now (not reachable: they
    are asked again once reachable), counted by kind of reason. Only numbers: the ledger rows
    that say whose they were are deleted when the round closes (N3)."""
    rows = await s.execute(
        select(Delivery.error, func.count()).where(
            Delivery.kind == KIND, Delivery.subject == round_id,
            Delivery.state.in_(("final_failed", "skipped")))
        .group_by(Delivery.error))
    by_kind: dict[str, int] = {}
    for error, n in rows.all():
        if any(w in (error or "") for w in _NOT_REFUSED):
            continue
        kind = reason_kind(error)
        by_kind[kind] = by_kind.get(kind, 0) + int(n)
    ordered = tuple(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])))
    return NotInvited(sum(by_kind.values()), ordered)
