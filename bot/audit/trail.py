"""Recording to the audit trail, and checking it.

Every feature (and the web dashboard) records through one function, `record(...)`. Each entry
carries the SHA-256 of a canonical serialisation of itself and the previous entry's hash, so
`verify` finds an entry that was edited, deleted or moved. Writers are serialised: on
PostgreSQL by a transaction-level advisory lock, on SQLite by its single writer, and in both by
a unique `prev` (a second entry after the same head cannot be stored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit.tables import AuditActor, AuditEntry
from storage.base import new_id
from storage.db import Database
from storage.retry import Retry, database_busy

GENESIS = "0" * 64
# pg_advisory_xact_lock key for appending (any constant not used by another lock).
APPEND_LOCK = 0x5A_A0_D1_7
ERASED = "an erased person"
# Another writer appended first (the unique sequence number refuses the second) or SQLite's
# writer lock was taken: read the new head and try again, under the one retry policy.
APPEND = Retry(lambda e: isinstance(e, IntegrityError) or database_busy(e), attempts=8)

# What can be recorded. Views of anything sensitive, and every administrative action.
VIEWS = ("view.pulse_results", "view.feedback", "view.feedback_item", "view.urgent_queue",
         "view.report", "view.audit", "view.dashboard")
ACTIONS = ("export.report", "export.person", "grant.role", "revoke.role", "people.import",
           "people.sync", "people.erase", "retention.run", "programme.load")


@dataclass(frozen=True)
class Who:
    """The actor of an entry: a person of the programme, or an operator at the shell."""

    person_id: str | None = None
    label: str = ""  # an email or name for a person; "cli:<os user>" for an operator


def minute(when: datetime) -> datetime:
    """`when` to the minute, in UTC: as precise as an entry says."""
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def canonical(seq: int, at: datetime, actor: str, surface: str, action: str, target: str,
              subject: str | None, detail: dict[str, Any], prev: str) -> bytes:
    """The bytes an entry's hash covers: sorted-key JSON, no spaces, UTC minute as ISO text."""
    return json.dumps(
        {"seq": seq, "at": minute(at).strftime("%Y-%m-%dT%H:%MZ"), "actor": actor,
         "surface": surface, "action": action, "target": target, "subject": subject,
         "detail": detail, "prev": prev},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode("utf-8")


def entry_hash(e: AuditEntry) -> str:
    return hashlib.sha256(canonical(e.seq, e.at, e.actor, e.surface, e.action, e.target,
                                    e.subject, dict(e.detail or {}), e.prev)).hexdigest()


async def actor_key(s: AsyncSession, who: Who) -> str:
    """The opaque key standing for `who` in entries (created on first use)."""
    if who.person_id is not None:
        q = select(AuditActor).where(AuditActor.person_id == who.person_id)
    else:
        q = select(AuditActor).where(AuditActor.person_id.is_(None),
                                     AuditActor.label == who.label)
    row = (await s.execute(q)).scalar_one_or_none()
    if row is None:
        row = AuditActor(key=new_id(), person_id=who.person_id, label=who.label[:320])
        s.add(row)
        await s.flush()
    elif who.label and row.label != who.label[:320]:
        row.label = who.label[:320]
    return row.key


async def record(db: Database, who: Who, action: str, *, surface: str, now: datetime,
                 target: str = "", subject: Who | None = None,
                 detail: dict[str, Any] | None = None,
                 only_if: Callable[[AsyncSession], Awaitable[bool]] | None = None) -> int:
    """Append one entry (its own transaction); its sequence number.

    `target` says what was viewed or changed (a survey, an item reference, a file name) and
    must never name a person: a person an action is about goes in `subject`. `detail` holds
    counts and settings, never anonymous content. `only_if(session)` runs first in the same
    transaction (a claim that this entry is the one to write): False records nothing and
    returns 0, and whatever it wrote commits with the entry or not at all."""
    clean = json.loads(json.dumps(detail or {}, sort_keys=True, default=str))

    async def append() -> int:
        async with db.session() as s:
            if not db.is_sqlite:
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})
            if only_if is not None and not await only_if(s):
                return 0
            actor = await actor_key(s, who)
            about = await actor_key(s, subject) if subject is not None else None
            head = (await s.execute(select(AuditEntry.seq, AuditEntry.hash)
                                    .order_by(AuditEntry.seq.desc()).limit(1))).first()
            seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
            e = AuditEntry(seq=seq, at=minute(now), actor=actor, surface=surface[:32],
                           action=action[:64], target=target[:200], subject=about,
                           detail=clean, prev=prev)
            e.hash = entry_hash(e)
            s.add(e)
        return seq

    return await APPEND.run(append)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head: str
    problem: str = ""


async def verify(db: Database) -> Verdict:
    """Walk the chain from the first entry: each hash recomputed, each link and number checked."""
    prev, expected, n = GENESIS, 1, 0
    async with db.session() as s:
        rows = (await s.stream_scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        async for e in rows:
            n += 1
            if e.seq != expected:
                return Verdict(False, n, prev, f"entry {expected} is missing (next is {e.seq})")
            if e.prev != prev:
                return Verdict(False, n, prev,
                               f"entry {e.seq} does not follow entry {e.seq - 1} "
                               "(an entry was deleted, moved or changed before it)")
            if entry_hash(e) != e.hash:
                return Verdict(False, n, prev, f"entry {e.seq} was changed after it was written")
            prev, expected = e.hash, expected + 1
    return Verdict(True, n, prev)


@dataclass(frozen=True)
class Line:
    seq: int
    at: datetime
    who: str
    surface: str
    action: str
    target: str
    subject: str | None
    detail: dict[str, Any]


def urgent_look() -> ColumnElement[bool]:
    """Entries that are looks at the safeguarding leads' urgent queue: chat's `feedback list
    urgent` and a lead's `feedback show` of what only the leads read yet (`view.urgent_queue`),
    and the dashboard's urgent queue page (`view.dashboard` of the page `safeguarding`)."""
    return or_(AuditEntry.action == "view.urgent_queue",
               and_(AuditEntry.action == "view.dashboard", or_(
                   AuditEntry.target == "safeguarding",
                   AuditEntry.target.startswith("safeguarding "))))


async def count_urgent_looks(db: Database) -> int:
    """How many entries are looks at the urgent queue (`entries(urgent_looks=False)`)."""
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(AuditEntry).where(
            urgent_look()))).scalar_one())


async def entries(db: Database, *, since: datetime | None = None, who: str | None = None,
                  limit: int | None = None, urgent_looks: bool = True) -> list[Line]:
    """Entries in order, with actors named (or "an erased person"); `who` matches a person's
    email or an operator's label; `limit` keeps the latest ones. `urgent_looks` False leaves
    out the looks at the urgent queue, for a reader who is not a safeguarding lead
    (docs/invariants.md N37): a lead reading their queue at 13:16, as soon as they were
    alerted, told the change team that something urgent came then, and still dated that
    item once released."""
    async with db.session() as s:
        q = select(AuditEntry)
        if not urgent_looks:
            q = q.where(not_(urgent_look()))
        if since is not None:
            q = q.where(AuditEntry.at >= since)
        if who is not None:
            keys = select(AuditActor.key).where(AuditActor.label == who.strip().lower())
            q = q.where(AuditEntry.actor.in_(keys))
        q = q.order_by(AuditEntry.seq.desc())
        if limit is not None:
            q = q.limit(limit)
        rows = list(reversed((await s.execute(q)).scalars().all()))
        used = {r.actor for r in rows} | {r.subject for r in rows if r.subject}
        names = {a.key: a.label for a in (await s.execute(
            select(AuditActor).where(AuditActor.key.in_(used)))).scalars()}
    return [Line(r.seq, r.at, names.get(r.actor, ERASED), r.surface, r.action, r.target,
                 None if r.subject is None else names.get(r.subject, ERASED), dict(r.detail or {}))
            for r in rows]


async def entries_by(s: AsyncSession, person_id: str) -> tuple[str | None, Sequence[AuditEntry]]:
    """The person's actor key and the entries by or about them (for a subject access export)."""
    key = (await s.execute(select(AuditActor.key).where(
        AuditActor.person_id == person_id))).scalar_one_or_none()
    if key is None:
        return None, []
    return key, (await s.execute(select(AuditEntry).where(
        (AuditEntry.actor == key) | (AuditEntry.subject == key))
        .order_by(AuditEntry.seq))).scalars().all()


def describe(line: Line, *, seq: bool = True) -> str:
    """One line for `audit show` and the chat command (without its number: `seq` False, for a
    reader from whom some entries are left out, whose numbers would show the gaps)."""
    about = f" about {line.subject}" if line.subject else ""
    what = f" {line.target}" if line.target else ""
    extra = (" (" + ", ".join(f"{k}={v}" for k, v in sorted(line.detail.items())) + ")"
             if line.detail else "")
    return (f"{f'#{line.seq} ' if seq else ''}{line.at.strftime('%Y-%m-%d %H:%M')} UTC {line.who} via "
            f"{line.surface}: {line.action}{what}{about}{extra}")


def who_of(person: Any) -> Who:
    """The actor for a person record (its id, labelled by email or name)."""
    return Who(person.id, (person.email or person.display_name or "").strip().lower())


async def record_ctx(ctx: Any, action: str, *, target: str = "", subject: Any = None,
                     detail: dict[str, Any] | None = None) -> int:
    """Record what the person behind a chat event did (the surface is their platform)."""
    return await record(ctx.core.db, who_of(ctx.person), action,
                        surface=ctx.event.user.platform, now=ctx.now, target=target,
                        subject=None if subject is None else who_of(subject), detail=detail)
