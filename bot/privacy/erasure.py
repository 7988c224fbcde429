"""Erasing everything that names a person, and finding it for a subject access export.

Each part of the system declares the rows of its own tables that can name a person, and what
erasure does to each (bot/privacy/personal.py): the features in bot/<feature>/erasure.py, the
Teams adapter and the web dashboard beside their tables. This module keeps the order the parts
are erased in (the person record last: everything else refers to it), what is kept and why,
and the audit entries of a subject access export (through the audit trail). It reads no table
of another part. A part whose module is not imported is simply not there.

What is never touched, because nothing in it can be found by person (docs/invariants.md):
pulse tallies, cells, summaries and comments, pending answers of open rounds (sealed under a hash of the
round's secret), feedback items and their threads, and sealed reply routes (encrypted under
the server key, expiring by themselves). Destroying a route on erasure would show the change
team which items lost "replies possible", and so who wrote them: they are left to expire.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

import bot
from bot.audit import trail
from bot.people.service import identities_of
from bot.privacy.notice import hold_flushes
from bot.privacy.personal import PersonalRows, Rule, Subject, register, registered, table_of
from bot.privacy.tables import NoticeShown
from bot.programme.core_sections import settings_naming

# This feature's own rows.
register(PersonalRows("privacy", (
    Rule(table_of(NoticeShown), "user_id", "user", "delete",
         "that they were shown the privacy notice"),
)))

# The order parts are erased in; a part not listed goes just before the audit trail's link
# and the person record, which go last.
ORDER = ("pulse", "milestones", "broadcasts", "feedback", "teams", "privacy", "web", "audit",
         "people")


def _load_features() -> None:
    """Import every feature's `erasure` module (found on disk, as its tables are), so each
    has registered its rows before anything is erased or exported."""
    for info in pkgutil.iter_modules(bot.__path__):
        if info.ispkg and info.name != "privacy":
            try:
                importlib.import_module(f"bot.{info.name}.erasure")
            except ModuleNotFoundError as e:
                if e.name != f"bot.{info.name}.erasure":
                    raise


def parts() -> list[PersonalRows]:
    """Every registered part, in the order erasure applies them."""
    _load_features()
    late = ORDER.index("audit")
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(registered().values(), key=lambda p: rank.get(p.part, late - 0.5))


def rules() -> list[Rule]:
    """Every rule of every part, in order (what docs/data-protection.md must account for)."""
    return [r for p in parts() for r in p.rules]


class Named(Protocol):
    """A person, as erasure needs one (a `people` row)."""

    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def display_name(self) -> str: ...


KEPT = (
    "Pulse answers: stored without a name and reduced to counts per group when each round "
    "closes. Nothing links them to anyone, so they cannot be found or removed by person.",
    "Anonymous feedback: stored without its author. It cannot be found by person. A sealed "
    "reply route, if replies were allowed, cannot be opened by anyone at the council and "
    "expires by itself; replies through it now reach no one.",
    "Audit entries of what they did as a leader, lead or change team member: kept, because the "
    "audit trail cannot be changed, but now say \u201can erased person\u201d.",
    "Broadcasts, milestone updates and replies they wrote for the organisation: kept without "
    "their name.",
)


async def subject_of(s: AsyncSession, person: Named) -> Subject:
    ids = {i.user_id for i in await identities_of(s, person.id)}
    return Subject(person.id, person.email, ids)


@dataclass
class Erased:
    """What an erasure removed (rows per table, by what they were) and what it kept."""

    removed: dict[str, int] = field(default_factory=dict)
    kept: Sequence[str] = KEPT

    def lines(self) -> list[str]:
        out = [f"  {why}: {n:,} row(s) ({table})" for (table, why), n in
               ((k.split("|", 1), v) for k, v in self.removed.items()) if n]
        return out or ["  nothing but the person record"]


async def erase(s: AsyncSession, person: Named) -> Erased:
    """Remove or blank every row naming `person`, in the caller's transaction."""
    await hold_flushes(s)  # no flush of notice rows or held people writes this account back
    who = await subject_of(s, person)
    done = Erased()
    for part in parts():
        for label, n in (await part.erase(s, who)).items():
            done.removed[label] = done.removed.get(label, 0) + n
    s.expunge_all()  # the ORM's copy of the person is gone from the database
    return done


async def named_in_settings(s: AsyncSession, who: Subject) -> list[str]:
    """Programme settings whose text names the person (a safeguarding route's email, say):
    they come from the programme file, so the file is where they change."""
    return await settings_naming(s, [x for x in (who.email, who.person_id) if x])


async def held_about(s: AsyncSession, person: Named) -> dict[str, list[dict[str, Any]]]:
    """Every row naming the person, by table (for a subject access export)."""
    who = await subject_of(s, person)
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts():
        for table, rows in (await part.held(s, who)).items():
            have = out.setdefault(table, [])
            have.extend(r for r in rows if r not in have)
    key, entries = await trail.entries_by(s, person.id)
    if entries:
        # In the trail's order, without its numbers: the trail numbers everyone's entries,
        # and the gap between two of theirs, less what `audit` in chat shows between them,
        # counted the looks at the urgent queue it leaves out for them (N37, N38).
        out["audit_entries"] = [
            {"at": e.at.strftime("%Y-%m-%d %H:%M UTC"), "surface": e.surface,
             "action": e.action, "target": e.target, "detail": e.detail,
             "them": "did this" if e.actor == key else "this was about them"}
            for e in entries]
    return out
