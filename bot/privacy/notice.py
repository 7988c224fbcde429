"""The privacy notice: the programme's `programme.privacy` text (or the default), in chat.

Who has been told is kept (`privacy_notices_shown`), but not when: a person's first typed
message is often "feedback", so a row written in that moment, or dated by it, would point a
database reader at the item that followed (docs/invariants.md, N18). The row waits in memory
and the flusher writes it with the others told since, rewriting every row of the table."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import flusher
from bot.model import Context, Message, Text
from bot.people.held import FLUSH_LOCK as PEOPLE_FLUSH_LOCK
from bot.people.held import flush as flush_links
from bot.people.held import held as people_held
from bot.people.tables import Identity
from bot.privacy.rules import Retention
from bot.privacy.tables import NoticeShown
from bot.programme.core_sections import DEFAULT_PRIVACY, get_setting
from storage.db import connection_of, upsert
from storage.perkey import PerKey

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.privacy")
_shuffle = random.SystemRandom().shuffle

MORE = ("Type “privacy” any time to read this again. To ask for a copy of what is held "
        "about you, or for it to be erased, contact the council's data protection officer.")


async def text_of(s: AsyncSession) -> str:
    """The programme's notice (or the default), then how long each kind is kept, from the
    programme's `retention:` periods, so the notice can never disagree with what is done."""
    from bot.feedback import moments
    from bot.feedback import service as fb
    from bot.privacy.rules import current

    prog = await get_setting(s, "programme", {}) or {}
    own = str(prog.get("privacy") or DEFAULT_PRIVACY).strip()
    evening = moments.last((await fb.config(s)).release_times)
    return own + "\n\n" + how_long(await current(s), evening)


def how_long(r: Retention, evening: str = "") -> str:
    """The retention periods in plain words. `evening`: the day's last release time, after
    which feedback counts as the next day's, so its way to reply is kept a day longer (N6)."""
    later = (f" ({r.reply_routes_days + 1} if you send it after {evening}, when it counts as "
             "the next day's)" if evening else "")
    return (
        f"How long we keep things: your details until {r.leavers_erase_days} days after you "
        f"leave, when they are erased; feedback that has been dealt with, {r.feedback_months} "
        f"months after its last message; the way to reply to your anonymous feedback, "
        f"{r.reply_routes_days} days after the day you send it{later}; pulse comments, "
        f"{r.pulse_comments_months} months after "
        f"the round closed (the counts per group are kept for trends); named answers to "
        f"attributed surveys, {r.attributed_answers_months} months. Who viewed results and "
        f"feedback is recorded in an audit trail that leaders and the change team can read."
    )


def message(text: str, *, first: bool) -> Message:
    title = "Before we start: how staffvoice uses your information" if first else "Privacy notice"
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    return Message((Text(title, heading=True), *(Text(" ".join(p.split())) for p in paras),
                    Context(MORE)),
                   fallback=f"{title}\n\n" + "\n\n".join(paras) + f"\n\n{MORE}")


class Told:
    """Accounts this process has seen told (the row exists), per database. A row goes only
    with the account (erasure deletes both), and a re-linked account skips this (the
    caller checks `Ctx.sender_known`), so a remembered account needs no read."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self.accounts: set[tuple[str, str, str]] = set()

    def __contains__(self, account: tuple[str, str, str]) -> bool:
        return account in self.accounts

    def add(self, account: tuple[str, str, str]) -> None:
        if len(self.accounts) >= self.LIMIT:
            self.accounts.clear()
        self.accounts.add(account)


told: PerKey[Engine, Told] = PerKey(Told)
"""`told(engine)`: the accounts known told on `engine` (a sync engine:
`Database.engine.sync_engine`)."""


_SHOWN = select(NoticeShown.user_id).where(NoticeShown.platform == bindparam("platform"),
                                            NoticeShown.workspace == bindparam("workspace"),
                                            NoticeShown.user_id == bindparam("user_id"))

Account = tuple[str, str, str]  # (platform, workspace, user id)


@dataclass
class _Unwritten:
    """Accounts this process told whose row is not written yet (per Core: a test's two
    Cores are two processes)."""

    due: set[Account] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one flush at a time
    # The last rewrite: the worker spaces the next out by its size (bot/flusher.py).
    spacing: flusher.Spacing = field(default_factory=flusher.Spacing)


_unwritten: PerKey[Core, _Unwritten] = PerKey(_Unwritten)


def unwritten(core: Core) -> set[Account]:
    """The accounts `core` told whose row waits for the next flush."""
    return _unwritten(core).due


async def first_time(core: Core, conn: AsyncConnection, account: Account) -> bool:
    """True only the first time this account is seen (no row, none waiting in this
    process): it is to be told now, and its row waits for the flush (`flush`), so the row is
    never written in the moment of a first message. Replicas that both see an account's
    first messages before a flush both tell it."""
    platform, workspace, user_id = account
    found = await conn.execute(_SHOWN, {"platform": platform, "workspace": workspace,
                                        "user_id": user_id})
    due = unwritten(core)
    if found.first() is not None or account in due:
        return False  # the usual case: a read, no write on every message
    due.add(account)
    return True


# PostgreSQL advisory lock (every key of ours is distinct: tests/test_design_invariants.py):
# replicas flush one at a time, so each flush rewrites the rows the others wrote before it,
# and an erasure takes it too (`hold_flushes`), so no flush writes back an account erased
# between its read of the links and its commit.
FLUSH_LOCK = 0x5F5F_7376_0F10
_ADVISORY = text("SELECT pg_advisory_xact_lock(:k)")


async def hold_flushes(s: AsyncSession) -> None:
    """Make the flushes of every replica wait for the caller's transaction (PostgreSQL; on
    SQLite one writer at a time does it): erasure calls this before removing an account.
    Both flushes that write rows naming an account: the notice rows' and the people
    flusher's (links, routes, Teams references and member rows, bot/people/held.py), in
    that order, as no flush takes them the other way round."""
    conn = await connection_of(s)
    if conn.dialect.name == "postgresql":
        await conn.execute(_ADVISORY, {"k": FLUSH_LOCK})
        await conn.execute(_ADVISORY, {"k": PEOPLE_FLUSH_LOCK})
# By the whole key (the primary key's index), never by user id alone (a scan of the table).
_LINKED = select(Identity.platform, Identity.workspace, Identity.user_id).where(
    tuple_(Identity.platform, Identity.workspace, Identity.user_id).in_(
        bindparam("accounts", expanding=True)))
# user_id = user_id: a new version of every row, so every live row carries the flush's xmin
# (SQLite; the table has no rowid there, so rows are stored in key order, never told order).
# SQLite writes no page for a cell whose bytes are unchanged, so there this is a scan: it has
# no xmin to hide (bench/README.md, flush arithmetic).
_TOUCH = update(NoticeShown).values(user_id=NoticeShown.user_id)
_ALL = select(NoticeShown.platform, NoticeShown.workspace, NoticeShown.user_id)


async def flush(core: Core) -> int:
    """Write the accounts this process told since its last flush, in one transaction that
    gives every row of the table a new version (SQLite: the new rows added in shuffled order,
    then every row updated in place; PostgreSQL: every row deleted and laid down again in one
    shuffled order); returns how many accounts were new. Kept for the next flush if it fails."""
    held = _unwritten.get(core)
    if held is None:
        return 0
    if _waits_for_links(core, held):
        # The accounts' links this process holds go first (bot/people/held.py): a row is
        # written only for a linked account.
        await flush_links(core)
    async with held.lock:
        if not held.due:
            return 0
        batch, held.due = list(held.due), set()
        _shuffle(batch)  # laid down in this order (SQLite cells), never in the order told
        try:
            async with core.db.transaction() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(_ADVISORY, {"k": FLUSH_LOCK})
                # An account erased since it was told is not written back.
                linked = set((await conn.execute(_LINKED, {"accounts": sorted(batch)})).tuples())
                rows = [{"platform": p, "workspace": w, "user_id": u} for p, w, u in batch
                        if (p, w, u) in linked]
                if not rows:
                    return 0  # nothing written, so no row's version to hide among the others
                if conn.dialect.name == "postgresql":
                    # A heap keeps rows where they were put, and an UPDATE in place keeps
                    # their order: a dump would list accounts batch by batch, in the order
                    # first told. Every row is laid down again, all in one shuffled order.
                    every = set((await conn.execute(_ALL)).tuples())
                    every.update((r["platform"], r["workspace"], r["user_id"]) for r in rows)
                    again = [{"platform": p, "workspace": w, "user_id": u} for p, w, u in every]
                    _shuffle(again)
                    await conn.execute(delete(NoticeShown))
                    if again:
                        await conn.execute(insert(NoticeShown), again)
                    touched = len(again)
                else:
                    if rows:
                        await conn.execute(upsert(conn.dialect.name, NoticeShown)
                                           .on_conflict_do_nothing(), rows)
                    touched = (await conn.execute(_TOUCH)).rowcount
            held.spacing.wrote(touched)
        except BaseException:
            held.due.update(batch)
            raise
        return len(rows)


def _waits_for_links(core: Core, held: _Unwritten) -> bool:
    """Whether a row due here waits for a link this process holds (or is writing now)."""
    links = people_held.get(core)
    return links is not None and bool(held.due) and (
        links.lock.locked() or any(account in links.links for account in held.due))


def _worker_due(core: Core) -> bool:
    """The worker's turn: this holder's spacing, and when a row waits for a held link, the
    links' spacing too (their flush goes first and rewrites every `identities` row, which
    the links' own worker spaces out; bench/README.md, "flush arithmetic")."""
    held = _unwritten.get(core)
    if held is None:
        return True  # nothing held: the flush writes nothing
    if not held.spacing.due():
        return False
    return not _waits_for_links(core, held) or people_held(core).spacing.due()


# A router worker (every `serve` replica runs one), and `flushing` for the console and tests.
worker = flusher.worker_for(flush, log, "privacy notice rows", _worker_due)
flushing = flusher.running(worker, "privacy-notices")
