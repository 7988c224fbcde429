"""Workspace leases: one sender at a time sends to a platform workspace (Slack team, Teams tenant).

Every replica drains the ledger and paces its own sends, but a limiter cannot see the other
replicas' sends: N replicas would together send N times the workspace's limit. So a sender
first takes the workspace's lease row (or renews its own), claims only rows of workspaces it
holds (plus rows whose workspace is not known yet, checked once known), and gives the leases
back when it has nothing left to send. Others take other workspaces, or wait. A sender that
dies holds its leases until they run out (`ttl`); one restarting under the same stable id
(STAFFVOICE_SENDER_ID) takes them back at once. On PostgreSQL another replica does not wait for
them to run out: it learns at once that the holder is gone (its liveness lock is free, see
bot/broadcasts/liveness.py) and `take_over`s its leases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from bot.broadcasts.ledger import CLAIMABLE, live
from bot.broadcasts.tables import Broadcast, Delivery, WorkspaceLease
from storage.db import Database

Key = tuple[str, str]  # (platform, workspace)


async def _set_each(db: Database, keys: set[Key], where: ColumnElement[bool],
                    **values: Any) -> set[Key]:
    """Set `values` on the lease row of each of `keys` where `where` holds, one short
    transaction per key; the keys whose row changed."""
    got: set[Key] = set()
    for platform, workspace in sorted(keys):
        async with db.session() as s:
            res = await s.execute(
                update(WorkspaceLease)
                .where(WorkspaceLease.platform == platform, WorkspaceLease.workspace == workspace,
                       where)
                .values(**values)
                .execution_options(synchronize_session=False))
        if res.rowcount:  # type: ignore[attr-defined]
            got.add((platform, workspace))
    return got


async def hold(db: Database, holder: str, keys: set[Key], now: datetime,
               ttl: timedelta) -> set[Key]:
    """Take or renew the leases of `keys` that are free or ours; returns the ones now held."""
    got = await _set_each(db, keys, or_(WorkspaceLease.holder == holder, WorkspaceLease.until <= now),
                          holder=holder, until=now + ttl)
    for platform, workspace in sorted(keys - got):
        try:  # no row yet (first send to this workspace), or another sender holds it
            async with db.session() as s:
                s.add(WorkspaceLease(platform=platform, workspace=workspace, holder=holder,
                                     until=now + ttl))
            got.add((platform, workspace))
        except IntegrityError:
            pass
    return got


async def release(db: Database, holder: str, keys: set[Key], now: datetime) -> None:
    """Give leases back (the next sender need not wait for them to run out)."""
    await _set_each(db, keys, WorkspaceLease.holder == holder, until=now)


async def holders(db: Database, keys: set[Key], now: datetime) -> dict[str, set[Key]]:
    """Who holds the leases of `keys` that have not run out, and which of them."""
    if not keys:
        return {}
    async with db.session() as s:
        rows = (await s.execute(
            select(WorkspaceLease.holder, WorkspaceLease.platform, WorkspaceLease.workspace)
            .where(tuple_(WorkspaceLease.platform, WorkspaceLease.workspace).in_(sorted(keys)),
                   WorkspaceLease.until > now))).all()
    out: dict[str, set[Key]] = {}
    for holder, platform, workspace in rows:
        out.setdefault(holder, set()).add((platform, workspace))
    return out


async def take_over(db: Database, taker: str, holder: str, keys: set[Key], now: datetime,
                    ttl: timedelta) -> set[Key]:
    """Take the leases of `keys` that `holder` still holds (it is gone: see liveness.py)."""
    return await _set_each(db, keys, WorkspaceLease.holder == holder, holder=taker, until=now + ttl)


async def due_workspaces(db: Database, now: datetime) -> set[Key]:
    """Workspaces with rows to send (or copies to delete) now."""
    async with db.session() as s:
        sends = (select(Delivery.platform, Delivery.workspace).distinct()
                 .outerjoin(Broadcast, Broadcast.id == Delivery.broadcast_id)
                 .where(Delivery.state.in_(CLAIMABLE), Delivery.next_attempt_at <= now,
                        live(), Delivery.platform.is_not(None)))
        deletes = (select(Delivery.platform, Delivery.workspace).distinct()
                   .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
                   .where(Delivery.state == "sent", Delivery.retracted_at.is_(None),
                          Broadcast.state == "retracting", Delivery.platform.is_not(None)))
        rows = list((await s.execute(sends)).all()) + list((await s.execute(deletes)).all())
    return {(str(p), str(w or "")) for p, w in rows}
