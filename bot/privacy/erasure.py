"""Finding and erasing everything that names a person.

One table of rules says, for every column that can name a person (their id, email or a
platform account id), what erasure does to the row: delete it, blank the column, or drop
the id from a list. The same rules find the rows for a subject access export, so the export
and the erasure cannot disagree about what names someone. Tables are found by name on the
shared metadata, so the adapters' tables (Teams conversation references and members) are
covered without the core importing an adapter; a table not imported is simply not there.

What is never touched, because nothing in it can be found by person (docs/invariants.md):
pulse tallies, cells, summaries and comments, pending answers of open rounds (sealed under a hash of the
round's secret), feedback items and their threads, and sealed reply routes (encrypted under
the server key, expiring by themselves). Destroying a route on erasure would show the change
team which items lost "replies possible", and so who wrote them: they are left to expire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import trail
from bot.people.tables import Identity, Person
from storage.base import Base

Match = Literal["person", "email", "user", "list", "recipient"]
Do = Literal["delete", "blank", "drop"]


@dataclass(frozen=True)
class Rule:
    table: str
    column: str
    match: Match  # person id; email; a platform user id of theirs; id in a JSON list; "person:<id>"
    do: Do  # delete the row; set the column to None (or "" if required); drop the id from a list
    why: str


RULES: tuple[Rule, ...] = (
    Rule("person_roles", "person_id", "person", "delete", "their roles"),
    Rule("pulse_participation", "person_id", "person", "delete",
         "who was asked in a round still open"),
    Rule("pulse_attributed_answers", "person_id", "person", "delete",
         "their answers to attributed (named) surveys"),
    Rule("milestone_owners", "person_id", "person", "delete", "milestones they own"),
    Rule("milestone_checkins", "person_id", "person", "delete", "check-in prompts sent to them"),
    Rule("milestone_updates", "person_id", "person", "blank",
         "updates they wrote (the update stays, without their name)"),
    Rule("milestones", "offer_to", "list", "drop", "early-win offers waiting for them"),
    Rule("teams", "lead_person_id", "person", "blank", "teams they lead"),
    Rule("broadcasts", "author_person_id", "person", "blank",
         "broadcasts they authored (the broadcast stays, without its author)"),
    Rule("broadcast_deliveries", "person_id", "person", "delete", "broadcasts sent to them"),
    Rule("broadcast_deliveries", "recipient", "recipient", "delete", "broadcasts sent to them"),
    Rule("broadcast_celebrations", "person_id", "person", "delete", "celebrations they sent"),
    Rule("feedback_alerts", "person_id", "person", "delete",
         "urgent feedback alerts addressed to them as a safeguarding lead"),
    Rule("feedback_messages", "team_person_id", "person", "blank",
         "replies they wrote for the change team (the reply stays, without their name)"),
    Rule("feedback_responses", "published_by", "person", "blank",
         "\u201cyou said, we did\u201d they published (it stays, without their name)"),
    Rule("teams_conversations", "user_id", "user", "delete",
         "how to reach them in Microsoft Teams"),
    Rule("teams_members", "user_id", "user", "delete", "their Microsoft Teams membership"),
    Rule("teams_members", "email", "email", "delete", "their Microsoft Teams membership"),
    Rule("privacy_notices_shown", "user_id", "user", "delete",
         "that they were shown the privacy notice"),
    Rule("web_sessions", "person_id", "person", "delete", "their signed-in dashboard sessions"),
    Rule("web_login_links", "person_id", "person", "delete", "one-time dashboard sign-in links"),
    Rule("audit_actors", "person_id", "person", "delete",
         "their name on audit entries (the entries stay, by \u201can erased person\u201d)"),
    Rule("identities", "person_id", "person", "delete", "their Slack and Teams accounts"),
    Rule("people", "id", "person", "delete", "their profile: name, email, team, time zone"),
)

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


@dataclass
class Subject:
    """Everything that identifies one person in the database."""

    person_id: str
    email: str | None
    user_ids: set[str] = field(default_factory=set)


async def subject_of(s: AsyncSession, person: Person) -> Subject:
    ids = set((await s.execute(select(Identity.user_id).where(
        Identity.person_id == person.id))).scalars())
    return Subject(person.id, person.email, ids)


def _table(name: str) -> Table | None:
    return Base.metadata.tables.get(name)


def _where(t: Table, rule: Rule, who: Subject) -> Any:
    col = t.c[rule.column]
    if rule.match == "person":
        return col == who.person_id
    if rule.match == "email":
        return col == who.email if who.email else None
    if rule.match == "user":
        return col.in_(sorted(who.user_ids)) if who.user_ids else None
    if rule.match == "recipient":
        return col == f"person:{who.person_id}"
    return None  # lists are filtered in Python (JSON)


async def matching(s: AsyncSession, rule: Rule, who: Subject) -> list[dict[str, Any]]:
    """The rows `rule` finds for the person, as plain dicts (binary columns left out)."""
    t = _table(rule.table)
    if t is None:
        return []
    if rule.match == "list":
        rows = (await s.execute(select(t))).mappings().all()
        return [_plain(r) for r in rows if who.person_id in (r[rule.column] or [])]
    cond = _where(t, rule, who)
    if cond is None:
        return []
    return [_plain(r) for r in (await s.execute(select(t).where(cond))).mappings().all()]


def _plain(row: Any) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, bytes | bytearray | memoryview):
            continue  # sealed values: nothing readable, and no use to the person
        out[k] = json.loads(json.dumps(v, default=str))
    return out


@dataclass
class Erased:
    """What an erasure removed (rows per table, by what they were) and what it kept."""

    removed: dict[str, int] = field(default_factory=dict)
    kept: Sequence[str] = KEPT

    def lines(self) -> list[str]:
        out = [f"  {why}: {n:,} row(s) ({table})" for (table, why), n in
               ((k.split("|", 1), v) for k, v in self.removed.items()) if n]
        return out or ["  nothing but the person record"]


async def erase(s: AsyncSession, person: Person) -> Erased:
    """Remove or blank every row naming `person`, in the caller's transaction."""
    who = await subject_of(s, person)
    done = Erased()
    # Shell-created actor rows stay; only the link from the person goes (rule above).
    for rule in RULES:
        t = _table(rule.table)
        if t is None:
            continue
        label = f"{rule.table}|{rule.why}"
        if rule.match == "list":
            rows = await matching(s, rule, who)
            pk = [c.name for c in t.primary_key.columns]
            for r in rows:
                kept = [x for x in r[rule.column] if x != who.person_id]
                await s.execute(update(t).where(*(t.c[k] == r[k] for k in pk))
                                .values({rule.column: kept}))
            done.removed[label] = done.removed.get(label, 0) + len(rows)
            continue
        cond = _where(t, rule, who)
        if cond is None:
            continue
        if rule.do == "delete":
            res = await s.execute(delete(t).where(cond))
        else:
            col = t.c[rule.column]
            res = await s.execute(update(t).where(cond).values(
                {rule.column: None if col.nullable else ""}))
        done.removed[label] = done.removed.get(label, 0) + int(res.rowcount or 0)  # type: ignore[attr-defined]
    s.expunge_all()  # the ORM's copy of the person is gone from the database
    return done


async def named_in_settings(s: AsyncSession, who: Subject) -> list[str]:
    """Programme settings whose text names the person (a safeguarding route's email, say):
    they come from the programme file, so the file is where they change."""
    from bot.people.tables import Setting

    ids = [x for x in (who.email, who.person_id) if x]
    return sorted(row.key for row in (await s.execute(select(Setting))).scalars()
                  if any(i in json.dumps(row.value, default=str) for i in ids))


async def find(s: AsyncSession, email: str) -> Person | None:
    return (await s.execute(select(Person).where(
        Person.email == email.strip().lower()))).scalar_one_or_none()


async def held_about(s: AsyncSession, person: Person) -> dict[str, list[dict[str, Any]]]:
    """Every row naming the person, by table (for a subject access export)."""
    who = await subject_of(s, person)
    out: dict[str, list[dict[str, Any]]] = {}
    for rule in RULES:
        if rule.table == "audit_actors":
            continue  # the key is an internal detail; the entries follow below
        rows = await matching(s, rule, who)
        if rows:
            have = out.setdefault(rule.table, [])
            have.extend(r for r in rows if r not in have)
    key, entries = await trail.entries_by(s, person.id)
    if entries:
        out["audit_entries"] = [
            {"seq": e.seq, "at": e.at.strftime("%Y-%m-%d %H:%M UTC"), "surface": e.surface,
             "action": e.action, "target": e.target, "detail": e.detail,
             "them": "did this" if e.actor == key else "this was about them"}
            for e in entries]
    return out
