"""What each part of the system holds that names a person, declared by the part that owns it.

A feature (bot/<feature>/erasure.py), an adapter or the web dashboard (beside their tables)
registers one `PersonalRows`: for every column of its own tables that can name a person (their
id, email or a platform account id), what erasure does to the row: delete it, blank the column,
or drop the id from a list. The same rules find the rows for a subject access export, so the
export and the erasure cannot disagree about what names someone.

bot/privacy/erasure.py keeps the order the parts are erased in, what is kept and why, and the
audit; it reads no table of another part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

Match = Literal["person", "email", "user", "list", "recipient"]
Do = Literal["delete", "blank", "drop"]


@dataclass(frozen=True)
class Rule:
    table: Table
    column: str
    match: Match  # person id; email; a platform user id of theirs; id in a JSON list; "person:<id>"
    do: Do  # delete the row; set the column to None (or "" if required); drop the id from a list
    why: str
    exported: bool = True  # False: an internal key, not shown in a subject access export


def table_of(model: type[Any]) -> Table:
    """A mapped class's table (what a `Rule` is about)."""
    t = model.__table__
    assert isinstance(t, Table), model
    return t


@dataclass
class Subject:
    """Everything that identifies one person in the database."""

    person_id: str
    email: str | None
    user_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class PersonalRows:
    """One part's rows that can name a person, by its rules (in the order they are applied)."""

    part: str
    rules: tuple[Rule, ...]

    async def erase(self, s: AsyncSession, who: Subject) -> dict[str, int]:
        """Remove or blank this part's rows naming `who`, in the caller's transaction; rows
        changed per "table|why"."""
        done: dict[str, int] = {}
        for rule in self.rules:
            label = f"{rule.table.name}|{rule.why}"
            done[label] = done.get(label, 0) + await _apply(s, rule, who)
        return done

    async def held(self, s: AsyncSession, who: Subject) -> dict[str, list[dict[str, Any]]]:
        """This part's rows naming `who`, by table, as plain dicts (binary columns left out),
        each column that can name a person showing only `who`: a row found for them may name
        colleagues too (a milestone's `offer_to` list), and their export is not the place for
        other people's data."""
        out: dict[str, list[dict[str, Any]]] = {}
        for rule in self.rules:
            if not rule.exported:
                continue
            rows = await matching(s, rule, who)
            if rows:
                same = [r for r in self.rules if r.table is rule.table]
                have = out.setdefault(rule.table.name, [])
                have.extend(x for x in (_only(r, same, who) for r in rows) if x not in have)
        return out


_REGISTERED: dict[str, PersonalRows] = {}


def register(rows: PersonalRows) -> PersonalRows:
    """Declare a part's personal rows (at import of the module that owns the tables)."""
    _REGISTERED[rows.part] = rows
    return rows


def registered() -> dict[str, PersonalRows]:
    return dict(_REGISTERED)


def _where(rule: Rule, who: Subject) -> Any:
    col = rule.table.c[rule.column]
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
    t = rule.table
    if rule.match == "list":
        rows = (await s.execute(select(t))).mappings().all()
        return [_plain(r) for r in rows if who.person_id in (r[rule.column] or [])]
    cond = _where(rule, who)
    if cond is None:
        return []
    return [_plain(r) for r in (await s.execute(select(t).where(cond))).mappings().all()]


async def _apply(s: AsyncSession, rule: Rule, who: Subject) -> int:
    t = rule.table
    if rule.match == "list":
        rows = await matching(s, rule, who)
        pk = [c.name for c in t.primary_key.columns]
        for r in rows:
            kept = [x for x in r[rule.column] if x != who.person_id]
            await s.execute(update(t).where(*(t.c[k] == r[k] for k in pk))
                            .values({rule.column: kept}))
        return len(rows)
    cond = _where(rule, who)
    if cond is None:
        return 0
    if rule.do == "delete":
        res = await s.execute(delete(t).where(cond))
    else:
        col = t.c[rule.column]
        res = await s.execute(update(t).where(cond).values(
            {rule.column: None if col.nullable else ""}))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def _only(row: dict[str, Any], rules: list[Rule], who: Subject) -> dict[str, Any]:
    """`row` with every column that names people by id (by `rules`, of its table) naming no one
    but `who`: a list keeps their id alone, a person id or recipient that is not theirs is left
    out. An email or platform account id is left as found: a row found by one of them (a Teams
    member row) describes one account, and its other identifier is theirs even when no link
    of theirs names it."""
    out = dict(row)
    for rule in rules:
        v = out.get(rule.column)
        if rule.match == "list":
            out[rule.column] = [x for x in (v or []) if x == who.person_id]
        elif rule.match == "person" and v is not None and v != who.person_id:
            out[rule.column] = None
        elif rule.match == "recipient" and v is not None and v != f"person:{who.person_id}":
            out[rule.column] = None
    return out


def _plain(row: Any) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, bytes | bytearray | memoryview):
            continue  # sealed values: nothing readable, and no use to the person
        out[k] = json.loads(json.dumps(v, default=str))
    return out
