"""The delivery ledger: one row per (broadcast, recipient), claimed by senders exactly once.

Claiming is a compare-and-set (`UPDATE ... WHERE state IN ('queued','failed')`) inside one
transaction. On PostgreSQL the candidate rows are first locked with `FOR UPDATE SKIP LOCKED`, so
concurrent senders each take different rows without waiting; on SQLite the database-wide write
lock serialises claimers and the compare-and-set alone keeps a row from being taken twice.

Rows are broadcast messages or messages of a kind another feature registers (`register_kind`):
pulse invitations are rows of kind "pulse" whose `subject` is the round. The sender renders
such a row with its kind's `message` and reports what became of it to its kind's `settled`, in
the same transaction that records the outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.tables import Broadcast, Delivery
from bot.channels import parse_channel
from bot.model import Message
from bot.people import service as people
from bot.people.tables import Identity, Person
from bot.programme.core_sections import get_setting
from bot.workhours import Pattern, is_working_moment, next_working_moment
from storage.base import new_id
from storage.db import Database

CLAIMABLE = ("queued", "failed")
OPEN = ("queued", "sending", "failed")
# Marks a row whose sender stopped mid-send: the next attempt asks the platform first.
IN_DOUBT = "in doubt: the sender stopped while sending; checking before resending"
BROADCAST = "broadcast"


@dataclass(frozen=True)
class Settled:
    """What became of a row of a registered kind (told to its feature when recorded)."""

    subject: str
    person_id: str | None
    state: str  # sent | skipped | final_failed
    message_ref: dict[str, Any] | None
    at: datetime


@dataclass(frozen=True)
class Kind:
    """A kind of ledger row other than a broadcast, registered by the feature that owns it.

    `message(core, subject)`: what to send (None when the subject is gone: the row is skipped;
    raise `NotNow` to keep the row queued, e.g. while a survey is paused).
    `settled(session, outcomes)`: runs in the transaction that records the outcomes.
    `wanted(session, subject, person_ids)`: those still to be sent to (read once per claimed
    batch; the others are skipped, e.g. a leaver's pulse invitation).
    """

    message: Callable[[Any, str], Awaitable[Message | None]]
    settled: Callable[[AsyncSession, list[Settled]], Awaitable[None]]
    wanted: Callable[[AsyncSession, str, set[str]], Awaitable[set[str]]]


KINDS: dict[str, Kind] = {}


class NotNow(Exception):
    """A registered kind's row may not go yet: it stays queued and is looked at again later."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not now, again in {seconds:.0f}s")
        self.seconds = seconds


def register_kind(name: str, kind: Kind) -> None:
    """Let senders deliver rows of `name` (a process drains only the kinds it knows)."""
    KINDS[name] = kind


@dataclass(frozen=True)
class Claimed:
    """A row taken by one sender, with what it needs to deliver it."""

    id: str
    broadcast_id: str
    recipient: str
    person_id: str | None
    platform: str | None
    workspace: str | None
    user_id: str | None
    conversation: dict[str, Any] | None
    attempts: int
    error: str | None
    state: str
    message_ref: dict[str, Any] | None = None
    hours: dict[str, Any] | None = None
    kind: str = BROADCAST
    subject: str | None = None
    # The claim's own lease: an outcome is recorded only against the claim it came from, never
    # against a later claim of the same row (by this sender after a takeover let it go).
    lease_until: datetime | None = None


def _claimed(d: Delivery) -> Claimed:
    return Claimed(d.id, d.broadcast_id or "", d.recipient, d.person_id, d.platform,
                   d.workspace, d.user_id, d.conversation, d.attempts, d.error, d.state,
                   d.message_ref, d.hours, d.kind, d.subject, d.lease_until)


# -- working hours ------------------------------------------------------------------------


def hours_json(p: Pattern) -> dict[str, Any]:
    """A working pattern as stored on a ledger row."""
    return {"start": p.start.strftime("%H:%M"), "end": p.end.strftime("%H:%M"),
            "days": sorted(p.days), "tz": p.tz, "region": p.region}


@lru_cache(maxsize=256)
def _pattern(start: str, end: str, days: tuple[int, ...], tz: str, region: str) -> Pattern:
    return Pattern(time.fromisoformat(start), time.fromisoformat(end), frozenset(days), tz, region)


def pattern_of(hours: dict[str, Any]) -> Pattern:
    """The working pattern stored on a row (cached: thousands of rows share a few patterns)."""
    return _pattern(hours["start"], hours["end"], tuple(hours["days"]), hours["tz"],
                    hours.get("region", "GB-ENG"))


def wait_until(hours: dict[str, Any] | None, now: datetime) -> datetime | None:
    """None when a DM may go now; else the recipient's next working moment."""
    if hours is None:
        return None
    p = pattern_of(hours)
    return None if is_working_moment(p, now) else next_working_moment(p, now)


# -- filling the ledger -------------------------------------------------------------------


async def audience_people(s: AsyncSession, audience: dict[str, Any]) -> list[str]:
    """Person ids an audience of DMs reaches (everyone, or the union of teams and roles)."""
    if audience.get("everyone"):
        return list((await s.execute(select(Person.id).where(Person.left_on.is_(None))
                                     .order_by(Person.id))).scalars())
    ids: set[str] = set()
    team_ids: set[str] = set()
    for t in audience.get("teams", []):
        team_ids |= await people.team_and_descendants(s, t)
    if team_ids:
        rows = await s.execute(select(Person.id).where(Person.team_id.in_(team_ids),
                                                       Person.left_on.is_(None)))
        ids |= set(rows.scalars())
    for role in audience.get("roles", []):
        ids |= {p.id for p in await people.people_with_role(s, role)}
    return sorted(ids)


async def enqueue(s: AsyncSession, b: Broadcast, platforms: set[str], now: datetime,
                  members: list[str] | None = None) -> int:
    """Write one queued row per recipient; returns how many. Idempotent per broadcast.

    `members`: person ids of the audience's platform groups, read from the platforms first.
    """
    existing = await s.scalar(select(func.count()).where(Delivery.broadcast_id == b.id))
    if existing:
        return int(existing)
    if b.audience.get("kind") == "channels":
        # Channel posts are not held for anyone's working hours: a channel is read when open.
        rows: list[dict[str, Any]] = []
        for ref in b.audience.get("channels", []):
            conv = parse_channel(ref)
            rows.append(_row(BROADCAST, b.id, None, f"channel:{ref}", None, conv.platform,
                             conv.workspace, None, people.conversation_to_json(conv), now))
        await _insert(s, rows)
        return len(rows)
    ids = sorted(set(await audience_people(s, b.audience)) | set(members or ()))
    return await enqueue_people(s, BROADCAST, b.id, ids, platforms, now)


async def enqueue_people(s: AsyncSession, kind: str, subject: str, ids: list[str],
                         platforms: set[str], now: datetime) -> int:
    """One queued DM row per person for `subject` (a broadcast's id, or a registered kind's
    subject), held until each person's working hours; written in the caller's transaction,
    so no row of the batch can be sent before all of them are queued. Returns how many."""
    n = 0
    for i in range(0, len(ids), CHUNK):
        n += len(await _enqueue(s, kind, subject, select(Person.id).where(
            Person.id.in_(ids[i : i + CHUNK])), platforms, now))
    return n


async def enqueue_missing(s: AsyncSession, kind: str, subject: str, candidates: Select[Any],
                          platforms: set[str], now: datetime) -> list[str]:
    """Queue a row for each person `candidates` (a select of person ids) names who has none
    for `subject` yet: an anti-join in the database, then one bulk insert in the caller's
    transaction. Rows skipped earlier whose person is a candidate again (reachable now) are
    replaced. Returns the person ids queued."""
    await s.execute(delete(Delivery).where(
        Delivery.kind == kind, Delivery.subject == subject, Delivery.state == "skipped",
        Delivery.person_id.in_(candidates)))
    has_row = (select(Delivery.id).where(Delivery.subject == subject,
                                         Delivery.person_id == candidates.selected_columns[0])
               .exists())
    return await _enqueue(s, kind, subject, candidates.where(~has_row), platforms, now)


CHUNK = 5000


async def _enqueue(s: AsyncSession, kind: str, subject: str, who: Select[Any],
                   platforms: set[str], now: datetime) -> list[str]:
    """Queue a DM row for each person `who` selects: one read joining people with their
    reachable accounts (plain columns, no objects, no long id lists), the working pattern and
    next working moment worked out once per distinct pattern, then bulk inserts."""
    prog = await get_setting(s, "programme", {})
    sub = who.subquery()
    q = (select(Person.id, Person.tz, Person.work_pattern, Identity.platform,
                Identity.workspace, Identity.user_id, Identity.dm)
         .join(sub, sub.c[0] == Person.id)
         .outerjoin(Identity, and_(Identity.person_id == Person.id,
                                   Identity.reachable.is_(True),
                                   Identity.platform.in_(sorted(platforms))))
         .order_by(Person.id))
    bid, other = (subject, None) if kind == BROADCAST else (None, subject)
    patterns: dict[tuple[str | None, str], tuple[dict[str, Any], datetime | None]] = {}
    rows: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for pid, tz, own, platform, workspace, user_id, dm in (await s.execute(q)).tuples():
        if last is not None and last["person_id"] == pid:
            # Another account of the same person: one with a known DM wins.
            if platform is not None and dm and not last["conversation"]:
                last.update(platform=platform, workspace=workspace, user_id=user_id,
                            conversation=dm)
            continue
        key = (tz, repr(sorted((own or {}).items())))
        if key not in patterns:
            hours = hours_json(Pattern.from_settings(prog, tz, own))
            patterns[key] = (hours, wait_until(hours, now))
        hours, later = patterns[key]
        last = _row(kind, bid, other, f"person:{pid}", pid, platform, workspace, user_id, dm,
                    now)
        last["hours"] = hours
        if later is not None:
            last["not_before"] = last["next_attempt_at"] = later
        rows.append(last)
    await _insert(s, rows)
    return [r["person_id"] for r in rows]


async def _insert(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    t = cast(Table, Delivery.__table__)
    for i in range(0, len(rows), CHUNK):
        await s.execute(insert(t), rows[i : i + CHUNK])


async def forget(s: AsyncSession, kind: str, subject: str) -> None:
    """Delete every row of a registered kind's subject (a pulse round closing)."""
    await s.execute(delete(Delivery).where(Delivery.kind == kind, Delivery.subject == subject))


def _row(kind: str, bid: str | None, subject: str | None, recipient: str, pid: str | None,
         platform: str | None, workspace: str | None, user_id: str | None,
         conv: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    return {"id": new_id(), "kind": kind, "broadcast_id": bid, "subject": subject,
            "recipient": recipient, "person_id": pid,
            "platform": platform, "workspace": workspace, "user_id": user_id,
            "conversation": conv, "state": "queued", "attempts": 0, "next_attempt_at": now,
            "hours": None, "not_before": None}


# -- claiming and recording outcomes ------------------------------------------------------


def live() -> ColumnElement[bool]:
    """Rows that may be sent: of a broadcast that is sending, or of a kind this process knows
    (with `Broadcast` outer-joined on the row's broadcast)."""
    sending = and_(Delivery.kind == BROADCAST, Broadcast.state == "sending")
    return or_(sending, Delivery.kind.in_(sorted(KINDS))) if KINDS else sending


def _in(only: set[tuple[str, str]] | None) -> ColumnElement[bool]:
    """Rows of these workspaces (or whose workspace is not known yet); all rows for None."""
    if only is None:
        return Delivery.id.is_not(None)
    unknown = Delivery.platform.is_(None)
    if not only:
        return unknown
    return or_(unknown, tuple_(Delivery.platform, Delivery.workspace).in_(sorted(only)))


async def claim(db: Database, sender_id: str, now: datetime, limit: int,
                lease: timedelta, only: set[tuple[str, str]] | None = None) -> list[Claimed]:
    """Take up to `limit` due rows for this sender: they move to `sending` under a lease.

    `only`: the (platform, workspace) pairs this sender may send to now (its workspace leases).
    """
    for _ in range(5):
        got, raced = await _claim_once(db, sender_id, now, limit, lease, only)
        if got or not raced:
            return got
    return []


async def _claim_once(db: Database, sender_id: str, now: datetime, limit: int,
                      lease: timedelta, only: set[tuple[str, str]] | None
                      ) -> tuple[list[Claimed], bool]:
    """(rows claimed, whether rows were seen but another claimer took them all first)."""
    async with db.session() as s:
        ids = list((await s.execute(_due(db, now, limit, only))).scalars())
        if not ids:
            return [], False
        res = await s.execute(_take(ids, sender_id, now, lease))
        got = [_claimed(d) for d in res.scalars()]
        return got, not got


def _due(db: Database, now: datetime, limit: int,
         only: set[tuple[str, str]] | None) -> Select[Any]:
    q = (
        select(Delivery.id)
        .outerjoin(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .where(Delivery.state.in_(CLAIMABLE), Delivery.next_attempt_at <= now,
               live(), _in(only))
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return q.with_for_update(skip_locked=True, of=Delivery) if not db.is_sqlite else q


def _take(ids: list[str], sender_id: str, now: datetime, lease: timedelta) -> Any:
    return (
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.state.in_(CLAIMABLE))
        .values(state="sending", claimed_by=sender_id, lease_until=now + lease,
                attempts=Delivery.attempts + 1)
        .returning(Delivery)
        .execution_options(synchronize_session=False)
    )


async def warm(db: Database, now: datetime, lease: timedelta,
               only: set[tuple[str, str]] | None) -> None:
    """Run the statements of a sender's pass once against no row, changing nothing, so that
    they are compiled (and prepared on a pooled connection) before the first real pass."""
    async with db.session() as s:
        await s.execute(_due(db, now, 0, only))
        await s.execute(_take([""], "", now, lease))
    await finish_many(db, "", [("", now, {"state": "sent", "error": None, "message_id": "",
                                     "message_ref": {}, "platform": "", "workspace": "",
                                     "conversation": {}, "sent_at": now})])


async def claim_retractions(db: Database, sender_id: str, now: datetime, limit: int,
                            lease: timedelta,
                            only: set[tuple[str, str]] | None = None) -> list[Claimed]:
    """Sent rows of retracting broadcasts whose message still has to be deleted."""
    async with db.session() as s:
        q = (
            select(Delivery.id)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(Delivery.state == "sent", Delivery.retracted_at.is_(None),
                   Broadcast.state == "retracting", _in(only),
                   (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now))
            .limit(limit)
        )
        if not db.is_sqlite:
            q = q.with_for_update(skip_locked=True, of=Delivery)
        ids = list((await s.execute(q)).scalars())
        if not ids:
            return []
        res = await s.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.retracted_at.is_(None),
                   (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now))
            .values(claimed_by=sender_id, lease_until=now + lease)
            .returning(Delivery)
            .execution_options(synchronize_session=False)
        )
        return [_claimed(d) for d in res.scalars()]


async def finish(db: Database, row_id: str, sender_id: str, **values: Any) -> bool:
    """Record an outcome for a row this sender holds; False if it was no longer ours."""
    async with db.session() as s:
        res = await s.execute(
            update(Delivery)
            .where(Delivery.id == row_id, Delivery.state == "sending",
                   Delivery.claimed_by == sender_id)
            .values(lease_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


async def finish_many(db: Database, sender_id: str,
                      outcomes: list[tuple[str, datetime | None, dict[str, Any]]],
                      settled: dict[str, tuple[str, Settled]] | None = None) -> None:
    """Record many outcomes (row id, its claim's `lease_until`, values) in one transaction (one
    executemany per shape of values). `settled` (row id -> its kind and what became of it):
    the kinds' hooks run in that same transaction, so what a feature keeps about its rows (a
    pulse invitation's time) can never disagree with the ledger after a crash, and only for
    rows this call changed: a stale outcome (the row was finished already, or taken over after
    its lease ran out) runs no hook, so no feature hears of one row twice."""
    settled = settled or {}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    hooked: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []  # one UPDATE each: its rowcount
    for row_id, lease_until, values in outcomes:
        params = {"b_id": row_id, "b_by": sender_id, "b_lease": lease_until, **values}
        if row_id in settled:
            hooked.append((row_id, tuple(sorted(values)), params))
        else:
            groups.setdefault(tuple(sorted(values)), []).append(params)
    async with db.session() as s:
        for keys, many in groups.items():
            await s.execute(_finish(keys), many)
        changed: dict[str, list[Settled]] = {}
        for row_id, keys, params in hooked:
            res = await s.execute(_finish(keys), params)
            if res.rowcount:  # type: ignore[attr-defined]
                kind, item = settled[row_id]
                changed.setdefault(kind, []).append(item)
        for kind, items in changed.items():
            if kind in KINDS:
                await KINDS[kind].settled(s, items)


def _finish(keys: tuple[str, ...]) -> Update:
    """Set `keys` (bound by name) on the row still being sent under the given claim."""
    t = cast(Table, Delivery.__table__)
    return (update(t)
            .where(t.c.id == bindparam("b_id"), t.c.state == "sending",
                   t.c.claimed_by == bindparam("b_by"), t.c.lease_until == bindparam("b_lease"))
            .values({k: bindparam(k) for k in keys} | {"lease_until": None}))


async def mark_retracted(db: Database, row_id: str, now: datetime) -> None:
    async with db.session() as s:
        await s.execute(update(Delivery).where(Delivery.id == row_id)
                        .values(retracted_at=now, lease_until=None)
                        .execution_options(synchronize_session=False))


async def release_stale(db: Database, now: datetime, sender_id: str | None = None,
                        grace: timedelta = timedelta(0)) -> int:
    """Rows left in `sending` by a sender that stopped: back to the queue, marked in doubt.

    Rows whose lease ran out qualify, and (at start-up) rows held under this sender's own
    stable id, since its previous incarnation is gone. They are not resent blindly: the
    sender asks the platform for the row's idempotency key before trying again, and only after
    `grace`, so a request the dead sender had in flight has landed before we ask.
    """
    cond = Delivery.lease_until < now
    if sender_id:
        cond = cond | (Delivery.claimed_by == sender_id)
    async with db.session() as s:
        res = await s.execute(
            update(Delivery)
            .where(Delivery.state == "sending", cond)
            .values(state="queued", error=IN_DOUBT, claimed_by=None, lease_until=None,
                    next_attempt_at=now + grace, attempts=Delivery.attempts - 1)
            .execution_options(synchronize_session=False)
        )
        return int(res.rowcount)  # type: ignore[attr-defined]


async def counts(s: AsyncSession, broadcast_id: str) -> dict[str, int]:
    """How many rows are in each state."""
    rows = await s.execute(
        select(Delivery.state, func.count()).where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.state)
    )
    out = {st: 0 for st in ("queued", "sending", "sent", "failed", "final_failed", "skipped")}
    out.update({st: int(n) for st, n in rows.all()})
    return out


async def waiting(s: AsyncSession, broadcast_id: str, now: datetime) -> tuple[int, datetime | None]:
    """Queued rows held for their recipients' working hours: (how many, when the next one goes)."""
    n, first = (await s.execute(
        select(func.count(), func.min(Delivery.not_before)).where(
            Delivery.broadcast_id == broadcast_id, Delivery.state == "queued",
            Delivery.not_before > now))).one()
    return int(n or 0), first


async def close_finished(db: Database, broadcast_ids: set[str], now: datetime) -> list[str]:
    """Broadcasts whose ledger is settled move to done/retracted; returns the ones this call moved."""
    moved: list[str] = []
    for bid in broadcast_ids:
        async with db.session() as s:
            open_rows = await s.scalar(select(func.count()).where(
                Delivery.broadcast_id == bid, Delivery.state.in_(OPEN)))
            if open_rows == 0:
                res = await s.execute(update(Broadcast).where(
                    Broadcast.id == bid, Broadcast.state == "sending")
                    .values(state="done", finished_at=now)
                    .execution_options(synchronize_session=False))
                if res.rowcount:  # type: ignore[attr-defined]
                    moved.append(bid)
            retracting = await s.get(Broadcast, bid)
            if retracting is None or retracting.state != "retracting":
                continue
            # Rows a stopped sender put back after the retract: they will never be sent now.
            await s.execute(update(Delivery).where(
                Delivery.broadcast_id == bid, Delivery.state.in_(CLAIMABLE))
                .values(state="skipped", error="retracted before delivery")
                .execution_options(synchronize_session=False))
            pending = await s.scalar(select(func.count()).where(
                Delivery.broadcast_id == bid, Delivery.state.in_(("sent", "sending")),
                Delivery.retracted_at.is_(None)))
            if pending == 0:
                res = await s.execute(update(Broadcast).where(
                    Broadcast.id == bid, Broadcast.state == "retracting")
                    .values(state="retracted", finished_at=now)
                    .execution_options(synchronize_session=False))
                if res.rowcount:  # type: ignore[attr-defined]
                    moved.append(bid)
    return moved
