"""Writes about a person that a message or tap would otherwise date: held, written in batches.

The admission of an event (bot/core.py) learns things about its sender: an account seen for
the first time (its `identities` link), the direct conversation it came from (its DM route),
a time zone the platform reports (Teams sends one on every activity). Written in that
event's transaction, or dated by its day, they would point a database reader at what the
event carried: a first message is often "feedback", and a tap's admission is its answer's own
transaction (docs/invariants.md, N21). So they wait here, per process, and the flusher writes
them (every STAFFVOICE_FEEDBACK_FLUSH_INTERVAL and at the end, as the feedback counts and
privacy notices are) in one transaction of its own that lays new links down in shuffled order
and rewrites every `identities` row when it writes a link or route, and every `people` row
when a time zone changed, so all live rows of the kind share the flush's `xmin`. Nothing it
writes is dated. The worker spaces these flushes out at a big organisation (bot/flusher.py).

Until then this process reads its own held writes over the stored rows (`Held`), so it
behaves as if they were written; another replica sees them after the flush. `Core.tick` flushes
first, so a round or broadcast opened here sees every account this process linked.

Adapters hold their own rows about the same accounts (a Teams personal chat's reference and
member row) and register an `Also`, written in this flush's transaction after the links. A
person who enrolled themselves is created at once (`Core._enrol`, a transaction of its own)
and the next flush rewrites every person and role row, so theirs carry its `xmin` too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import flusher
from bot.people.tables import Identity, Person, PersonRole
from storage.db import upsert
from storage.perkey import PerKey

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.people")
_shuffle = random.SystemRandom().shuffle

Account = tuple[str, str, str]  # (platform, workspace, user id)
UNREACHABLE = "unreachable"


@dataclass
class Held:
    """One process's writes about people not yet stored (per Core: a test's two Cores are
    two processes)."""

    # Accounts linked here and not stored yet: account -> person id.
    links: dict[Account, str] = field(default_factory=dict)
    # DM routes learnt here: account -> route, or None once found unreachable.
    routes: dict[Account, dict[str, Any] | None] = field(default_factory=dict)
    # Why a held account was found unreachable (its route is None): account -> reason.
    reasons: dict[Account, str] = field(default_factory=dict)
    # Time zones the platform reported: person id -> zone.
    tz: dict[str, str] = field(default_factory=dict)
    # Someone enrolled themselves here since the last flush: it rewrites every person row.
    enrolled: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one flush at a time
    # The last rewrite: the worker spaces the next out by its size (bot/flusher.py).
    spacing: flusher.Spacing = field(default_factory=flusher.Spacing)

    def __bool__(self) -> bool:
        return bool(self.links or self.routes or self.tz or self.enrolled)

    def identities(self, person_id: str, stored: list[Identity]) -> list[Identity]:
        """`stored` (a person's accounts as read) with this process's held links and routes
        laid over them, as new objects (never the session's: nothing is written by this)."""
        out: list[Identity] = []
        seen: set[Account] = set()
        for i in stored:
            account = (i.platform, i.workspace, i.user_id)
            seen.add(account)
            dm, reachable, reason = i.dm, i.reachable, i.unreachable_reason
            if account in self.routes:
                route = self.routes[account]
                dm, reachable = route, route is not None
                reason = None if reachable else self.reasons.get(account, UNREACHABLE)
            out.append(Identity(platform=i.platform, workspace=i.workspace, user_id=i.user_id,
                                person_id=i.person_id, dm=dm, reachable=reachable,
                                unreachable_reason=reason, updated_at=i.updated_at))
        for account, pid in self.links.items():
            if pid != person_id or account in seen:
                continue
            route = self.routes.get(account)
            platform, workspace, user_id = account
            reachable = account not in self.routes or route is not None
            out.append(Identity(platform=platform, workspace=workspace, user_id=user_id,
                                person_id=pid, dm=route, reachable=reachable,
                                unreachable_reason=None if reachable else
                                self.reasons.get(account, UNREACHABLE)))
        return out

    def unreachable(self, account: Account, reason: str) -> None:
        """A held account's route no longer works (written so by the flush)."""
        self.routes[account] = None
        self.reasons[account] = reason[:200] or UNREACHABLE

    def route(self, account: Account, dm: dict[str, Any]) -> None:
        """A route learnt for an account (written by the flush)."""
        self.routes[account] = dm
        self.reasons.pop(account, None)


held: PerKey[Core, Held] = PerKey(Held)
"""`held(core)`: what `core` holds about people, not yet written."""


@dataclass(frozen=True)
class Also:
    """Writes an adapter holds about the same accounts (a Teams personal chat's reference,
    its member row), laid down in this flush's transaction after the links, so they share
    its `xmin` and are written for an account only while it is linked (never for a person
    erased since, or someone outside the programme). `take` swaps out a batch (None or empty:
    nothing), `write` writes it and says how many rows, `keep` puts it back when the flush
    failed. Adapters register one at import (`ALSO`); bot/ never imports them."""

    take: Callable[[Core], Any]
    write: Callable[[AsyncConnection, Any], Awaitable[int]]
    keep: Callable[[Core, Any], None]


ALSO: list[Also] = []


# PostgreSQL advisory lock (distinct from storage.db's, the feedback counters' and the
# notices'): replicas flush one at a time, so each flush rewrites the rows the others wrote.
FLUSH_LOCK = 0x5F5F_7376_0F0E
_ADVISORY = text("SELECT pg_advisory_xact_lock(:k)")
_EXISTING = select(Person.id).where(Person.id.in_(bindparam("ids", expanding=True)))
_ROUTE = (update(Identity)
          .where(Identity.platform == bindparam("p"), Identity.workspace == bindparam("w"),
                 Identity.user_id == bindparam("u"))
          .values(dm=bindparam("dm"), reachable=bindparam("ok"),
                  unreachable_reason=bindparam("why")))
_TZ = (update(Person).where(Person.id == bindparam("pid"), Person.from_programme.is_(False))
       .values(tz=bindparam("zone")))
# Column = column: a new version of every row, so every live row carries the flush's xmin.
_TOUCH_IDENTITIES = update(Identity).values(reachable=Identity.reachable)
_TOUCH_PEOPLE = update(Person).values(tz=Person.tz)
_TOUCH_ROLES = update(PersonRole).values(granted_in_chat=PersonRole.granted_in_chat)


async def flush(core: Core) -> int:
    """Write what this process holds about people, in one transaction that lays new links
    down in shuffled order and rewrites every identity row (if a link or route is written)
    and every person row (if a time zone is, or someone enrolled); returns how many writes,
    and writes nothing when none is left to write. Kept for the next flush if it fails. A
    link another replica stored first is left as it is; a person erased since is not written
    back."""
    h = held(core)
    async with h.lock:
        extra = [(a, batch) for a in ALSO if (batch := a.take(core))]
        if not h and not extra:
            return 0
        links, routes, reasons, zones, enrolled = h.links, h.routes, h.reasons, h.tz, h.enrolled
        h.links, h.routes, h.reasons, h.tz, h.enrolled = {}, {}, {}, {}, False
        also = 0
        try:
            async with core.db.transaction() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(_ADVISORY, {"k": FLUSH_LOCK})
                ids = sorted({*links.values(), *zones})
                alive = set((await conn.execute(_EXISTING, {"ids": ids})).scalars()) if ids else set()
                rows = [{"platform": p, "workspace": w, "user_id": u, "person_id": pid,
                         "dm": None, "reachable": True, "unreachable_reason": None,
                         "updated_at": None}
                        for (p, w, u), pid in links.items() if pid in alive]
                _shuffle(rows)  # laid down in this order (SQLite cells), never in the order seen
                # A route of an account linked here whose person is gone is not written back.
                changes = [{"p": p, "w": w, "u": u, "dm": dm, "ok": dm is not None,
                            "why": None if dm is not None else reasons.get((p, w, u), UNREACHABLE)}
                           for (p, w, u), dm in routes.items()
                           if (p, w, u) not in links or links[(p, w, u)] in alive]
                _shuffle(changes)
                tz = [{"pid": pid, "zone": zone} for pid, zone in zones.items() if pid in alive]
                if not (rows or changes or tz or enrolled or extra):
                    return 0  # nothing written, so no row's version to hide among the others
                if rows:
                    await conn.execute(upsert(conn.dialect.name, Identity).on_conflict_do_nothing(),
                                       rows)
                if changes:
                    await conn.execute(_ROUTE, changes)
                touched = 0
                if rows or changes:  # a time zone alone writes no identity row
                    touched = (await conn.execute(_TOUCH_IDENTITIES)).rowcount
                if tz:
                    _shuffle(tz)
                    await conn.execute(_TZ, tz)
                if tz or enrolled:
                    touched += (await conn.execute(_TOUCH_PEOPLE)).rowcount
                if enrolled:  # their role row was written with their person row
                    await conn.execute(_TOUCH_ROLES)
                for a, batch in extra:
                    also += await a.write(conn, batch)
            h.spacing.wrote(touched)
        except BaseException:
            for a, batch in extra:
                a.keep(core, batch)
            # Kept for the next flush; anything held since wins over these.
            h.links = {**links, **h.links}
            h.routes = {**routes, **h.routes}
            h.reasons = {**reasons, **h.reasons}
            h.tz = {**zones, **h.tz}
            h.enrolled = h.enrolled or enrolled
            raise
        return len(rows) + len(changes) + len(tz) + also


# A router worker (every `serve` replica runs one), and `flushing` for the console and tests.
worker = flusher.worker_for(flush, log, "held account links, routes and time zones",
                            lambda core: held(core).spacing.due())
flushing = flusher.running(worker, "people-held")
