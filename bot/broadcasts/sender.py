"""The sender: drains the delivery ledger at the platform limit, exactly once per recipient.

Crash safety, and why it works this way. Every ledger row's id is its idempotency key: a port
that can (`send_keyed`/`find_sent`, see `KeyedPort`) sends the key with the message (Slack:
message metadata; the local fake: a request field) and can later be asked whether a message with
that key was delivered. A row left in `sending` by a sender that died is put back marked in
doubt; before it is tried again the sender asks the platform for its key: found means it was
delivered (recorded as sent with the platform's reference, not sent again), not found means it
never arrived and is sent now. The same check runs before every retry after a timeout or 5xx,
whose outcome is unknown too. A port that cannot be asked gets at-most-once: an in-doubt row is
recorded as failed with the reason, never resent blindly. A sender also stops using a row whose
lease is close to running out, so a slow (not dead) sender and a reconciling one never overlap.

Working hours: a DM row carries its recipient's working pattern (`hours`) and, when they are
off, waits in `queued` until `not_before`, their next working moment. The sender checks the
pattern again just before sending, since a retry or a 429 can carry a row past the end of the
recipient's day; such a row goes back to waiting and the deferral does not count as an attempt.
Channel posts are never held.

Rows of other kinds (pulse invitations, see `ledger.register_kind`) go the same way; only their
message comes from their kind, and their outcomes are told to it when recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select

from bot.broadcasts import leases, ledger, service
from bot.broadcasts.ledger import BROADCAST, IN_DOUBT, Claimed, Settled
from bot.broadcasts.limiter import Limiter, parse_limits
from bot.broadcasts.liveness import Liveness
from bot.broadcasts.tables import Broadcast
from bot.model import ConversationRef, Message, MessageRef, UserRef
from bot.people import service as people
from bot.people.tables import Identity
from bot.port import (
    AppNotAuthorised,
    PlatformError,
    Port,
    RateLimited,
    RefusalAware,
    TransientError,
    Unreachable,
)
from bot.programme.core_sections import get_setting
from bot.workhours import Pattern, is_working_moment, next_working_moment

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.broadcasts")
# The app itself refused in a workspace (token revoked, uninstalled; AppNotAuthorised): its rows
# wait, asking again this often (the port answers locally in between), until an admin
# reinstalls it; a row queued longer ago than APP_REFUSED_FOR fails with the reason.
APP_REFUSED_RETRY = timedelta(minutes=10)
APP_REFUSED_FOR = timedelta(hours=24)


@runtime_checkable
class KeyedPort(Protocol):
    """Optional port extension: idempotent sends that the platform can be asked about."""

    async def send_keyed(self, conversation: ConversationRef, message: Message,
                         key: str) -> MessageRef: ...

    async def find_sent(self, conversation: ConversationRef, key: str) -> MessageRef | None: ...


class Busy(Exception):
    """The workspace cannot take this send soon (paused after a 429): give the row back."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"busy for {wait:.1f}s")
        self.wait = wait


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    final_failed: int = 0
    skipped: int = 0
    rate_limited: int = 0
    reconciled: int = 0
    retracted: int = 0
    deferred: int = 0
    finished: list[str] = field(default_factory=list)


_LIMITERS: weakref.WeakKeyDictionary[Core, Limiter] = weakref.WeakKeyDictionary()
_LIVENESS: weakref.WeakKeyDictionary[Core, weakref.WeakValueDictionary[str, Liveness]] = (
    weakref.WeakKeyDictionary())


def process_limiter(core: Core) -> Limiter:
    """The one limiter of this process (per core): the worker and the tickers' drains share it,
    so together they keep to each workspace's limit (STAFFVOICE_BROADCAST_LIMITS)."""
    lim = _LIMITERS.get(core)
    if lim is None:
        lim = _LIMITERS[core] = Limiter(parse_limits(os.environ.get("STAFFVOICE_BROADCAST_LIMITS",
                                                                    "")))
    return lim


def process_liveness(core: Core, sender_id: str) -> Liveness:
    """The liveness of a sender id in this process (per core): a tickers' drain under the
    worker's stable id stops sending with it when its lock is lost. Kept only while a sender
    uses it: the tickers' one-off senders come and go under ids of their own."""
    by_id = _LIVENESS.setdefault(core, weakref.WeakValueDictionary())
    alive = by_id.get(sender_id)
    if alive is None:
        alive = by_id[sender_id] = Liveness(core.db, sender_id)
    return alive


def default_sender_id() -> str:
    """STAFFVOICE_SENDER_ID if set (a stable replica name lets a restart reclaim its rows at once)."""
    return os.environ.get("STAFFVOICE_SENDER_ID") or (
        f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(3)}")


class Sender:
    """Claims due rows, paces them through the limiter, records each outcome."""

    def __init__(
        self,
        core: Core,
        *,
        sender_id: str | None = None,
        limiter: Limiter | None = None,
        batch: int = 50,
        lease: timedelta = timedelta(seconds=60),
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        send_timeout_s: float = 15.0,
        max_wait_s: float = 5.0,
        rng: random.Random | None = None,
        on_progress: Callable[[Stats], Awaitable[None] | None] | None = None,
        pause_all_on_429_s: float | None = None,
        workspace_lease: bool | None = None,
        workspace_lease_ttl: timedelta = timedelta(seconds=20),
    ) -> None:
        self.core = core
        self.id = sender_id or default_sender_id()
        self.limiter = limiter or process_limiter(core)
        self.batch = batch
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.send_timeout_s = send_timeout_s
        self.max_wait_s = max_wait_s
        self.rng = rng or random.Random()
        self.on_progress = on_progress
        # Only for comparing with Company Communicator (bench): ignore Retry-After, stop all.
        self.pause_all_on_429_s = pause_all_on_429_s
        self.stats = Stats()
        # One sender per workspace at a time (see bot/broadcasts/leases.py). On by default with
        # PostgreSQL, where replicas share the ledger; SQLite runs one process.
        self.exclusive = (not core.db.is_sqlite) if workspace_lease is None else workspace_lease
        self.ws_ttl = workspace_lease_ttl
        self._held: set[leases.Key] = set()
        self._held_at = -1e9
        # PostgreSQL: our lock tells others at once when we are gone; theirs tell us.
        self.alive = process_liveness(core, self.id)
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._taking = asyncio.Lock()
        self._messages: dict[str, tuple[str, Message | None]] = {}
        self._reading = asyncio.Lock()
        # Rows of registered kinds in flight: their outcomes are told to their kind.
        self._others: dict[str, Claimed] = {}
        self._not_now: dict[str, float] = {}
        self._in_flight: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._touched: set[str] = set()
        # Outcomes are written in batches (one transaction per flush); a crash before a flush
        # leaves those rows `sending`, which reconciliation resolves by key like any other.
        self._outbox: list[tuple[str, datetime | None, dict[str, Any]]] = []

    # -- loops --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, poll_s: float = 0.5) -> None:
        """Drain until `stop` is set; every replica runs one of these.

        A standby under the same stable id waits first until its predecessor's lock is free;
        one under another id keeps polling, and wakes the moment a sender whose workspace it
        wants is gone (see bot/broadcasts/liveness.py)."""
        await self.warm()
        try:
            if not await _first(stop, self.alive.start()):
                return
            await self.recover()
            while not stop.is_set():
                woken = self._wake.is_set()
                self._wake.clear()
                try:
                    if not woken:  # (just taken over: those rows are released already)
                        await ledger.release_stale(self.core.db, self.core.clock.now())
                    await self.drain(stop)
                except Exception:
                    log.exception("broadcast sender pass failed")
                if not self._wake.is_set():
                    await _first(stop, self._wake.wait(), timeout=poll_s)
        finally:
            for task in self._watching.values():
                task.cancel()
            await asyncio.gather(*self._watching.values(), return_exceptions=True)
            await self.alive.close()

    async def warm(self) -> None:
        """Be as quick to send as a sender that has been sending all along: compile the
        statements of a pass and load this year's working-hours calendars, changing nothing."""
        try:
            now = self.core.clock.now()
            await ledger.warm(self.core.db, now, self.lease, {("", "")} if self.exclusive else None)
            await ledger.release_stale(self.core.db, now, "", grace=timedelta(0))
            if self.exclusive:
                await leases.due_workspaces(self.core.db, now)
                await leases.holders(self.core.db, {("", "")}, now)
            async with self.core.db.session() as s:
                await s.get(Broadcast, "")
                p = Pattern.from_settings(await get_setting(s, "programme", {}))
            if not is_working_moment(p, now):
                next_working_moment(p, now)
        except Exception:  # only ever a head start
            log.warning("broadcast sender warm-up failed", exc_info=True)

    async def recover(self) -> int:
        """At start-up: rows our previous incarnation left in `sending` become in doubt."""
        return await ledger.release_stale(self.core.db, self.core.clock.now(), self.id,
                                          grace=timedelta(seconds=self.send_timeout_s))

    async def drain(self, stop: asyncio.Event | None = None) -> Stats:
        """Send everything that is due now, then return (rows due later stay queued)."""
        pending: set[asyncio.Task[None]] = set()
        self._messages.clear()  # a retract since the last pass must stop further sends
        self._not_now.clear()
        try:
            await self._drain(pending, stop)
        except asyncio.CancelledError:
            for t in pending:  # stopped hard: rows in flight stay `sending`, reconciled later
                t.cancel()
            raise
        finally:
            await self._let_go()
        await self._close()
        return self.stats

    async def _workspaces(self) -> set[leases.Key] | None:
        """The workspaces this sender may claim rows for now (None: any, leases are off)."""
        if not self.exclusive:
            return None
        # Renewed well before they run out, also while a batch is in flight; and at once if
        # our lock was lost since (another sender may have taken them over).
        if (time.monotonic() - self._held_at >= self.ws_ttl.total_seconds() / 4
                or not self.alive.sendable(self._held_at)):
            now = self.core.clock.now()
            want = await leases.due_workspaces(self.core.db, now) | self._held
            self._held = await asyncio.shield(
                leases.hold(self.core.db, self.id, want, now, self.ws_ttl))
            self._held_at = time.monotonic()
            if want - self._held:
                await self._watch(want - self._held, now)
        return self._held

    async def _watch(self, keys: set[leases.Key], now: datetime) -> None:
        """Watch the senders that lease workspaces we want, to take over when one is gone."""
        if not self.alive.running:
            return  # a one-off drain does not take over (it may not be there to finish)
        for holder, theirs in (await leases.holders(self.core.db, keys, now)).items():
            if holder not in self._watching:
                self._watching[holder] = asyncio.create_task(self._take_over(holder, theirs))

    async def _take_over(self, holder: str, keys: set[leases.Key]) -> None:
        try:
            async with self.alive.gone(holder) as gone:
                if gone:
                    # Holding its lock, so it cannot come back while its leases and rows move.
                    now = self.core.clock.now()
                    taken = await leases.take_over(self.core.db, self.id, holder, keys, now,
                                                   self.ws_ttl)
                    if taken:  # send at once; the leases are fresh, no need to renew them
                        self._held |= taken
                        self._held_at = time.monotonic()
                        self._wake.set()
                    grace = timedelta(seconds=self.alive.grace_s + self.send_timeout_s)
                    n = await ledger.release_stale(self.core.db, now, holder, grace=grace)
                    log.info("took over from a sender that is gone",
                             extra={"holder": holder, "workspaces": len(taken), "in_doubt": n})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("watching another sender failed; its leases will run out",
                        exc_info=True)
        finally:
            self._watching.pop(holder, None)

    async def _may_send(self, conv: ConversationRef) -> None:
        """A row whose workspace was learnt only now: send if we hold it, else give it back."""
        key = (conv.platform, conv.workspace)
        if not self.exclusive or key in self._held:
            return
        async with self._taking:  # rows of one new workspace must not race each other for it
            if key not in self._held:
                self._held |= await leases.hold(self.core.db, self.id, {key},
                                                self.core.clock.now(), self.ws_ttl)
        if key not in self._held:
            raise Busy(1.0)

    async def _let_go(self) -> None:
        if self._wake.is_set():
            return  # we took over from a sender that is gone meanwhile: keep its leases
        self._held_at = -1e9  # the next pass asks again, whatever this one got
        if self._held:
            held, self._held = self._held, set()
            try:
                await asyncio.shield(leases.release(self.core.db, self.id, held,
                                                    self.core.clock.now()))
            except Exception:  # they run out by themselves
                log.warning("could not release workspace leases")

    async def _drain(self, pending: set[asyncio.Task[None]], stop: asyncio.Event | None) -> None:
        while stop is None or not stop.is_set():
            room = self.batch - len(pending)
            only = await self._workspaces()
            if room >= max(1, self.batch // 2) or not pending:
                now = self.core.clock.now()
                rows = await asyncio.shield(ledger.claim(self.core.db, self.id, now, room,
                                                         self.lease, only))
                if len(rows) < room:
                    rows += await asyncio.shield(ledger.claim_retractions(
                        self.core.db, self.id, now, room - len(rows), self.lease, only))
                claimed_at = time.monotonic()
                wanted = await self._still_wanted(rows)
                for row in rows:
                    if row.kind == BROADCAST:
                        self._touched.add(row.broadcast_id)
                    else:
                        self._others[row.id] = row
                        if row.id not in wanted:
                            await self._record(row, state="skipped",
                                               error="no longer asked (left, or removed)")
                            continue
                    pending.add(asyncio.create_task(self._one(row, claimed_at)))
            if not pending:
                break
            done, _ = await asyncio.wait(pending, timeout=0.1,
                                         return_when=asyncio.FIRST_COMPLETED)
            pending -= done
            await self._flush()
            await self._progress()
        if pending:
            await asyncio.wait(pending)
        await self._flush()

    async def _still_wanted(self, rows: list[Claimed]) -> set[str]:
        """Ids of the claimed rows of registered kinds whose recipient is still wanted (one
        read per kind and subject in the batch: someone who left since it was queued is not)."""
        groups: dict[tuple[str, str], list[Claimed]] = {}
        for row in rows:
            if row.kind != BROADCAST and row.person_id:
                groups.setdefault((row.kind, row.subject or ""), []).append(row)
        wanted = {row.id for row in rows if row.kind != BROADCAST and not row.person_id}
        for (kind, subject), group in groups.items():
            async with self.core.db.session() as s:
                keep = await ledger.KINDS[kind].wanted(s, subject,
                                                       {r.person_id or "" for r in group})
            wanted |= {r.id for r in group if r.person_id in keep}
        return wanted

    async def _record(self, row: Claimed, **values: Any) -> None:
        self._outbox.append((row.id, row.lease_until, values))
        if len(self._outbox) >= 64:
            await self._flush()

    async def _flush(self) -> None:
        items, self._outbox = self._outbox, []
        if items:
            settled: dict[str, tuple[str, Settled]] = {}
            for row_id, _lease, values in items:
                row = self._others.pop(row_id, None)
                if row is None or values.get("state") not in ("sent", "skipped", "final_failed"):
                    continue
                settled[row_id] = (row.kind, Settled(
                    row.subject or "", row.person_id, values["state"], values.get("message_ref"),
                    values.get("sent_at") or self.core.clock.now()))
            # Shielded: a sender stopped mid-write still ends its transaction, so it never
            # leaves SQLite's write lock held behind it.
            await asyncio.shield(ledger.finish_many(self.core.db, self.id, items, settled))

    async def _progress(self) -> None:
        if self.on_progress is not None:
            r = self.on_progress(self.stats)
            if r is not None:
                await r

    async def _close(self) -> None:
        if not self._touched:
            return
        moved = await ledger.close_finished(self.core.db, self._touched, self.core.clock.now())
        self._touched.clear()
        for bid in moved:
            self.stats.finished.append(bid)
            try:
                await service.notify_settled(self.core, bid)
            except Exception:
                log.warning("could not send the delivery report", extra={"broadcast": bid})

    # -- one row --------------------------------------------------------------------------

    async def _one(self, row: Claimed, claimed_at: float) -> None:
        try:
            if row.state == "sent":
                await self._retract(row)
            else:
                await self._deliver(row, claimed_at)
        except Exception:
            log.exception("broadcast row failed unexpectedly", extra={"row": row.id})

    async def _deliver(self, row: Claimed, claimed_at: float) -> None:
        now = self.core.clock.now
        try:
            msg = await self._message(row)
        except ledger.NotNow as e:
            await self._record(row, state="queued", attempts=row.attempts - 1,
                               next_attempt_at=now() + timedelta(seconds=e.seconds))
            return
        if msg is None:
            await self._record(row, state="skipped", error=(
                "retracted before delivery" if row.kind == BROADCAST else "no longer open"))
            return
        # Working hours are checked again at the last moment: a retry or a 429 may have
        # pushed a DM past the end of its recipient's day.
        later = ledger.wait_until(row.hours, now())
        if later is not None:
            await self._record(row, state="queued", attempts=row.attempts - 1,
                               next_attempt_at=later, not_before=later)
            self.stats.deferred += 1
            return
        # Until the conversation is known, a 429 pauses the workspace the row names.
        where = (row.platform or "", row.workspace or "")
        ident: Identity | None = None
        try:
            target = await self._target(row)
            if target is None:
                await self._record(row, state="skipped",
                                    error="not reachable on any connected platform")
                self.stats.skipped += 1
                return
            port, conv, ident = target
            where = (conv.platform, conv.workspace)
            await self._may_send(conv)
            keyed = port if isinstance(port, KeyedPort) else None
            if _in_doubt(row.error) or row.attempts > 1:
                if keyed is not None:
                    try:
                        found = await keyed.find_sent(conv, row.id)
                    except (RateLimited, TransientError):
                        raise  # ask again later, as for a send
                    except PlatformError as e:  # e.g. no permission to read that history
                        await self._record(row, state="final_failed", error=(
                            f"outcome unknown and the platform could not be asked ({e}); "
                            "not resent to avoid a duplicate")[:300])
                        self.stats.final_failed += 1
                        return
                    if found is not None:
                        await self._sent(row, found, conv)
                        self.stats.reconciled += 1
                        return
                elif _in_doubt(row.error):
                    await self._record(row, state="final_failed",
                                        error="outcome unknown after a sender stopped; not resent "
                                              "to avoid a duplicate")
                    self.stats.final_failed += 1
                    return
            await self._acquire(conv)
            async with self._sem(conv):
                # Checked with the slot in hand, right before the send: waiting for a slot
                # behind slow sends can outlast both our lease and the freshness of our lock,
                # and a sender that took us over in the meantime would send this row too.
                held = time.monotonic() - claimed_at
                if held > self.lease.total_seconds() - self.send_timeout_s:
                    raise Busy(0.0)  # our lease is nearly over: let a fresh claim take it
                if not self.alive.sendable(claimed_at):
                    raise Busy(0.0)  # we may have been taken over: whoever did has this row
                send = (keyed.send_keyed(conv, msg, row.id) if keyed is not None
                        else port.send(conv, msg))
                ref = await asyncio.wait_for(send, self.send_timeout_s)
            await self._sent(row, ref, conv)
        except Busy as e:
            await self._record(row, state="queued", attempts=row.attempts - 1,
                                next_attempt_at=now() + timedelta(seconds=e.wait))
        except RateLimited as e:
            wait = e.retry_after
            if self.pause_all_on_429_s is not None:
                wait = self.pause_all_on_429_s
                self.limiter.pause_all(wait)
            self.limiter.pause(where[0], where[1], wait)
            self.stats.rate_limited += 1
            await self._record(row, state="queued", attempts=row.attempts - 1,
                                next_attempt_at=now() + timedelta(seconds=wait))
        except Unreachable as e:
            await self._record(row, state="skipped",
                                error=f"unreachable: {e}"[:300])
            self.stats.skipped += 1
            if ident is not None:
                await self.core.mark_unreachable(ident, str(e))
        except AppNotAuthorised as e:
            await self._app_refused(row, str(e))
        except (TransientError, TimeoutError) as e:
            await self._retry_later(row, "timed out" if isinstance(e, TimeoutError) else str(e))
        except PlatformError as e:
            # Refused for good (msg_too_long, invalid_blocks, Teams 400/413): the same answer
            # would come again, so it fails now with the platform's reason, counted in the
            # report; never left `sending` to be tried again after every lease.
            await self._record(row, state="final_failed",
                                error=f"refused by the platform: {e}"[:300])
            self.stats.final_failed += 1

    async def _app_refused(self, row: Claimed, reason: str) -> None:
        """The workspace refused the app, not the person: the row waits (shown as retrying,
        with the reason, attempts not counted) until the app is reinstalled, or fails with
        the reason once it has waited APP_REFUSED_FOR. Nobody is marked unreachable. When the
        waiting began rides in the reason (the ledger keeps no time of its own per row)."""
        now = self.core.clock.now()
        since = _refused_since(row.error) or now
        if now - since >= APP_REFUSED_FOR:
            await self._record(row, state="final_failed", error=(
                f"{reason} (gave up after {APP_REFUSED_FOR.total_seconds() / 3600:.0f} "
                "hours)")[:300])
            self.stats.final_failed += 1
            return
        stamp = f" (since {since.astimezone(UTC):%Y-%m-%dT%H:%MZ})"
        # A row in doubt (a sender stopped mid-send) stays in doubt while it waits: after the
        # reinstall it is looked up before any resend, never sent blind (attempts are not
        # counted here, so they cannot be what says so).
        mark = _DOUBT if _in_doubt(row.error) else ""
        await self._record(row, state="failed", attempts=row.attempts - 1,
                           error=mark + reason[: 300 - len(stamp) - len(mark)] + stamp,
                           next_attempt_at=now + APP_REFUSED_RETRY)
        self.stats.retried += 1

    async def _retry_later(self, row: Claimed, reason: str) -> None:
        reason = f"platform error: {reason or 'unknown'}"[:300]
        if row.attempts >= self.max_attempts:
            await self._record(row, state="final_failed",
                                error=f"{reason} (gave up after {row.attempts} attempts)"[:300])
            self.stats.final_failed += 1
            return
        delay = min(300.0, self.backoff_s * 2 ** (row.attempts - 1)) * self.rng.uniform(0.5, 1.5)
        await self._record(row, state="failed", error=reason,
                            next_attempt_at=self.core.clock.now() + timedelta(seconds=delay))
        self.stats.retried += 1

    async def _sent(self, row: Claimed, ref: MessageRef, conv: ConversationRef) -> None:
        data = {"conversation": people.conversation_to_json(ref.conversation),
                "message_id": ref.message_id}
        await self._record(row, state="sent", error=None,
                            message_id=ref.message_id[:200], message_ref=data,
                            platform=conv.platform, workspace=conv.workspace,
                            conversation=people.conversation_to_json(conv),
                            sent_at=self.core.clock.now())
        self.stats.sent += 1

    async def _retract(self, row: Claimed) -> None:
        ref_data = row.message_ref or {}
        if not ref_data:
            await ledger.mark_retracted(self.core.db, row.id, self.core.clock.now())
            return
        ref = MessageRef(people.conversation_from_json(ref_data["conversation"]),
                         ref_data["message_id"])
        port = self.core.ports.get(ref.conversation.platform)
        if port is None:
            return  # its platform is not connected here; another replica or a later pass
        try:
            await self._acquire(ref.conversation)
            await asyncio.wait_for(port.delete(ref), self.send_timeout_s)
        except RateLimited as e:
            self.limiter.pause(ref.conversation.platform, ref.conversation.workspace, e.retry_after)
            return  # the lease runs out and the row is claimed again
        except (Busy, TransientError, TimeoutError):
            return
        except Exception as e:  # already gone, or the user blocked the app: nothing left to delete
            log.info("retract: message already unavailable", extra={"reason": type(e).__name__})
        await ledger.mark_retracted(self.core.db, row.id, self.core.clock.now())
        self.stats.retracted += 1

    # -- helpers --------------------------------------------------------------------------

    async def _acquire(self, conv: ConversationRef) -> None:
        wait = self.limiter.paused_for(conv.platform, conv.workspace)
        if wait > self.max_wait_s:
            raise Busy(wait)
        await self.limiter.acquire(conv.platform, conv.workspace, conv.conversation_id)

    def _sem(self, conv: ConversationRef) -> asyncio.Semaphore:
        key = (conv.platform, conv.workspace)
        if key not in self._in_flight:
            self._in_flight[key] = asyncio.Semaphore(
                self.limiter.limits_for(conv.platform).max_in_flight)
        return self._in_flight[key]

    async def _message(self, row: Claimed) -> Message | None:
        """The row's message, rendered once per drain for all the rows that share it (the
        rows of a batch ask at once: one reads it, the others wait for it)."""
        if row.kind != BROADCAST:
            key = f"{row.kind}:{row.subject}"
            if key in self._not_now:  # asked once per drain, not once per row
                raise ledger.NotNow(self._not_now[key])
            if key not in self._messages:
                async with self._reading:
                    if key in self._not_now:
                        raise ledger.NotNow(self._not_now[key])
                    if key not in self._messages:
                        try:
                            msg = await ledger.KINDS[row.kind].message(self.core,
                                                                       row.subject or "")
                        except ledger.NotNow as e:
                            self._not_now[key] = e.seconds
                            raise
                        self._messages[key] = ("sending", msg)
            return self._messages[key][1]
        bid = row.broadcast_id
        cached = self._messages.get(bid)
        if cached is None:
            async with self._reading:
                cached = self._messages.get(bid)
                if cached is None:
                    async with self.core.db.session() as s:
                        b = await s.get(Broadcast, bid)
                        if b is None:
                            return None
                        cached = (b.state, service.render(b))
                    self._messages[bid] = cached
        return cached[1] if cached[0] == "sending" else None

    async def _target(self, row: Claimed) -> tuple[Port, ConversationRef, Identity | None] | None:
        """The port and conversation for a row, discovering the person's account if needed."""
        if row.recipient.startswith("channel:"):
            conv = people.conversation_from_json(row.conversation or {})
            port = self.core.ports.get(conv.platform)
            if port is None:
                raise TransientError(f"the {conv.platform} adapter is not running")
            return port, conv, None
        assert row.person_id is not None
        if row.conversation and row.platform in self.core.ports:
            # Fast path: the DM was known when the row was queued (no lookup per row).
            known = Identity(platform=row.platform, workspace=row.workspace, user_id=row.user_id,
                             person_id=row.person_id)
            return (self.core.ports[row.platform], people.conversation_from_json(row.conversation),
                    known)
        ident: Identity | None = None
        idents: list[Identity] = []
        async with self.core.db.session() as s:
            if row.platform:
                ident = await s.get(Identity, (row.platform, row.workspace, row.user_id))
            if ident is None or not ident.reachable or ident.platform not in self.core.ports:
                ident = None
                idents = await self.core.reachable_identities(s, row.person_id)
        if ident is None:
            # First contact: find the person on the connected platforms by email.
            found_idents = idents or await self._discover(row.person_id)
            ident = found_idents[0] if found_idents else None
        if ident is None:
            for p in self.core.ports.values():
                why = p.app_refused() if isinstance(p, RefusalAware) else None
                if why:  # nobody found because a platform could not be asked: wait for it
                    raise AppNotAuthorised(why)
            return None
        port = self.core.ports[ident.platform]
        if ident.dm:
            return port, people.conversation_from_json(ident.dm), ident
        user = UserRef(ident.platform, ident.workspace, ident.user_id)
        await self._acquire(ConversationRef(user.platform, user.workspace, f"open:{user.user_id}"))
        try:
            conv = await port.open_dm(user)
        except Unreachable as e:
            await self.core.mark_unreachable(ident, str(e))
            raise
        async with self.core.db.session() as s:
            stored = await s.get(Identity, (user.platform, user.workspace, user.user_id))
            if stored is not None:
                stored.dm = people.conversation_to_json(conv)
        return port, conv, ident


    async def _discover(self, person_id: str) -> list[Identity]:
        """The core's first-contact lookup (a concurrent discovery of the same account wins)."""
        return list(await self.core.discover(person_id))


# Kept at the front of a waiting row's reason while it is in doubt (see Sender._app_refused).
_DOUBT = "in doubt, checked before resending: "


def _in_doubt(error: str | None) -> bool:
    """Whether a row may already have been delivered by a sender that stopped mid-send."""
    return error == IN_DOUBT or (error or "").startswith(_DOUBT)


_SINCE = re.compile(r" \(since (\d{4}-\d\d-\d\dT\d\d:\d\dZ)\)$")


def _refused_since(error: str | None) -> datetime | None:
    """When a row began waiting for its app to be reinstalled (see Sender._app_refused)."""
    found = _SINCE.search(error or "")
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


async def _first(stop: asyncio.Event, work: Awaitable[object],
                 timeout: float | None = None) -> bool:
    """Wait for `work` (or `timeout`) unless `stop` is set first; True when `work` finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopping):
            if not t.done():
                t.cancel()
        await asyncio.gather(task, stopping, return_exceptions=True)
    return task.done() and not task.cancelled() and task.exception() is None


async def run_worker(core: Core, stop: asyncio.Event) -> None:
    """The `broadcast-sender` worker every serving replica runs."""
    await Sender(core).run(stop)


async def pending_broadcasts(core: Core) -> list[str]:
    async with core.db.session() as s:
        return list((await s.execute(select(Broadcast.id).where(
            Broadcast.state.in_(("sending", "retracting"))))).scalars())
