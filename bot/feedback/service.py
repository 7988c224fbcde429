"""Feedback storage and delivery: store without the author, seal the way back, alert, reply, publish.

Nothing here logs feedback text, and no log line names a person on these paths.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.errors import FormInvalid, UserError
from bot.feedback import counts, moments, safeguarding, sealing, senders
from bot.feedback.counts import today as today  # re-exported: the day every feature dates by
from bot.feedback.tables import (
    FeedbackAlert,
    FeedbackDailyCount,
    FeedbackDayKey,
    FeedbackHandle,
    FeedbackItem,
    FeedbackMessage,
    FeedbackResponse,
)
from bot.model import Choice, Choices, Context, Fields, Message, Text
from bot.people import service as people
from bot.people.held import held
from bot.people.tables import Theme
from bot.port import AppNotAuthorised, PlatformError, RateLimited, TransientError
from bot.programme.core_sections import get_setting, get_setting_as, programme_zone
from bot.roles import SAFEGUARDING_LEAD
from bot.secrets import keyed_hash
from storage.base import new_id
from storage.db import connection_of, overwrite_deleted, upsert
from storage.prepared import Prepared

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.feedback")

STATUSES: tuple[str, ...] = ("new", "read", "in_progress", "done", "closed", "spam")
OPEN: tuple[str, ...] = ("new", "read", "in_progress")
STAFF = "staff"
# The public pages' sources (bot/families): feedback from parents and carers, and from
# children and young people. Listed with `feedback list families`, never mixed with staff's.
PUBLIC_SOURCES: tuple[str, ...] = ("families", "young_people")
SOURCE_LABELS = {STAFF: "staff", "families": "a parent or carer", "young_people": "a young person"}
MAX_ALERT_ATTEMPTS = 50
# Times the daily limit that what looks like a safeguarding concern may still be sent: the
# limit is against floods, and a disclosure written after a morning's five ideas must reach
# the leads (docs/invariants.md N53), up to a hard cap. As the public pages' (bot/families).
CONCERN_ALLOWANCE = 5
REF_LEN = 6
# Programme channels a you-said-we-did is also posted to (the first that exists).
ANNOUNCE_CHANNELS = ("you_said_we_did", "announcements", "roadmap_digest")
_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()
_SHUFFLE = secrets.SystemRandom()  # the order authors of a "you said, we did" are told in


@dataclass(frozen=True)
class Stored:
    item_id: str
    token: str | None
    urgent: bool


def ref_of(item_id: str) -> str:
    """The short reference the change team types: '#' and the first characters of the random id."""
    return "#" + item_id[:REF_LEN]


async def config(s: AsyncSession | AsyncConnection) -> safeguarding.Config:
    """The `safeguarding:` settings, parsed once per stored value (a form reads them 3 times)."""
    return await get_setting_as(s, "safeguarding", safeguarding.Config.from_setting)


async def themes(s: AsyncSession) -> list[Theme]:
    return list((await s.execute(select(Theme).order_by(Theme.name))).scalars())


def _token_key(secret: bytes, token: str) -> str:
    return keyed_hash(secret, "feedback-handle", token)


async def sent_today(core: Core, person_id: str,
                     s: AsyncSession | AsyncConnection | None = None) -> int:
    """How many items this person has sent today: the keyed counter as written, plus this
    process's sends not written yet."""
    if s is None:
        async with core.db.transaction() as conn:
            return await sent_today(core, person_id, conn)
    conn = await connection_of(s)
    day = await today(conn, core.clock.now())
    return await counts.count(core, conn, await counts.counter_key(conn, core.secret, person_id, day),
                              day)


async def release_day(s: AsyncSession | AsyncConnection, now: datetime,
                      cfg: safeguarding.Config | None = None) -> date:
    """The day an item or answer waiting for a release is dated by: the day of the release it
    waits for. The day it was sent split its release's interval: sent after the day's last
    release, it went with the next day's first still dated the day before, so sent that
    evening (docs/invariants.md N29)."""
    cfg = cfg or await config(s)
    return moments.after(now, await programme_zone(s), cfg.release_times).day


def daily_limit(limit: int, concerns: Sequence[str]) -> int:
    """How many items a sender may have sent today for this one to be taken: `limit`, or for
    what looks like a safeguarding concern that times CONCERN_ALLOWANCE (N53; the public
    pages' too, by address)."""
    return limit * (CONCERN_ALLOWANCE if concerns else 1)


def limit_message(limit: int) -> str:
    return (f"You have sent {limit} pieces of feedback today, which is the daily limit. "
            "Please try again tomorrow. Nothing was sent.")


async def store(
    core: Core, person_id: str, *, text: str, theme_id: str | None, replies: bool,
    concerns: Sequence[str], conn: AsyncConnection | None = None,
    hold: counts.Hold | None = None,
) -> Stored:
    """Store one item (no author), count it against the daily limit, seal a route.

    Prepared Core statements in one transaction (`conn`'s, else its own) that writes no row
    about the sender: the send is counted in memory (`hold`, which the caller's transaction
    must sit inside: `counts.holding`) and written later in a batch (bot/feedback/counts.py).
    Past the day's limit FormInvalid is raised and nothing is stored."""
    if conn is None:
        async with counts.holding(core) as hold, core.db.transaction() as conn:
            return await store(core, person_id, text=text, theme_id=theme_id, replies=replies,
                               concerns=concerns, conn=conn, hold=hold)
    if hold is None:
        raise TypeError("store() in the caller's transaction needs the caller's counts.holding()")
    cfg = await config(conn)
    day = await today(conn, core.clock.now())
    key = await counts.counter_key(conn, core.secret, person_id, day)
    limit = daily_limit(cfg.daily_limit, concerns)
    if not await counts.take(core, conn, hold, key, day, limit):
        raise FormInvalid({"text": limit_message(limit)})
    if not concerns:  # waits for a release: counted there as a person, not as a thing (N25)
        m = await senders.mark(core, conn, person_id)
        hold.then(lambda: senders.keep(core, m))
    # Dated by its release's day, urgent or not: an urgent item sent after the day's last
    # release, listed the next day under the day before, was sent that evening (N29). Its
    # leads read the day it was sent (`lead_day`), as their alert says (N37).
    shown = await release_day(conn, core.clock.now(), cfg)
    item_id = new_id()
    await _ITEM_RUN.all(conn, {"id": item_id, "day": shown, "lead_day": day if concerns else None,
                                "theme_id": theme_id or None,
                                "text": text, "status": "new", "urgent": bool(concerns),
                                "concerns": list(concerns), "source": STAFF,
                                "response_id": None, "released": False})
    token = None
    if replies:
        token = secrets.token_urlsafe(18)
        handle_id = new_id()
        await _HANDLE_RUN.all(conn, {
            "id": handle_id, "item_id": item_id, "token_key": _token_key(core.secret, token),
            "sealed": sealing.seal(core.secret, handle_id, sealing.Route(person_id, token))})
    if concerns:
        async with AsyncSession(bind=conn) as s:
            leads = await lead_ids(s)
        if leads:
            await conn.execute(_ALERT, [
                {"item_id": item_id, "person_id": lead, "status": "pending", "attempts": 0,
                 "lease_until": None} for lead in leads])
        else:  # (an urgent item is logged anyway, N24; the sender was told to use a route)
            log.error("urgent feedback stored but there is no safeguarding lead to alert: "
                      "name one in the programme file or grant the role in chat")
    return Stored(item_id, token, bool(concerns))


_ITEM = insert(FeedbackItem)
_HANDLE = insert(FeedbackHandle)
_THEME = select(Theme.id).where(Theme.id == bindparam("theme"))
# Every form runs them: on the DB-API cursor, in the caller's transaction (storage/prepared.py).
_ITEM_RUN, _HANDLE_RUN, _THEME_RUN = Prepared(_ITEM), Prepared(_HANDLE), Prepared(_THEME)


async def is_theme(s: AsyncSession | AsyncConnection, theme_id: str) -> bool:
    """One of the programme's themes."""
    conn = await connection_of(s)
    return await _THEME_RUN.first(conn, {"theme": theme_id}) is not None


# -- safeguarding alerts -----------------------------------------------------------------


def day_for(item: FeedbackItem, lead: bool) -> date:
    """The day a reader is shown for an item: its release's day (N29), or for a safeguarding
    lead's own views (`lead`) an urgent item's day sent, which their alert told them (N37)."""
    return (item.lead_day or item.day) if lead else item.day


def message_day(msg: FeedbackMessage, lead: bool) -> date:
    """`day_for` for a message of a thread (an urgent answer's day sent, to a lead)."""
    return (msg.lead_day or msg.day) if lead else msg.day


def concerns_for(item: FeedbackItem, lead: bool) -> list[str]:
    """An item's concerns as a reader sees them: a lead's views add those of an author's
    urgent answer still waiting for its release (the item turns urgent for everyone else then)."""
    return list(item.lead_concerns or item.concerns) if lead else list(item.concerns)


def urgent_for(item: FeedbackItem, lead: bool) -> bool:
    """Whether a reader sees an item as urgent (`concerns_for`)."""
    return bool(item.urgent or (lead and item.lead_concerns is not None))


def lead_only(item: FeedbackItem) -> bool:
    """Whether a safeguarding lead reads something of this item that everyone else does not
    read yet: the item itself, or an author's urgent answer, waiting for its release."""
    return not item.released or item.lead_concerns is not None


# The author's answers an alert shows at most (the latest): each may be a form's whole length.
ALERT_ANSWERS = 3


def alert_message(item: FeedbackItem, theme: str, cfg: safeguarding.Config, can_reply: bool,
                  answers: Sequence[FeedbackMessage] = ()) -> Message:
    """What a safeguarding lead sees: the item, marked urgent, still anonymous, and the
    author's `answers` in its thread that looked like a concern (what made it urgent, when an
    answer did: the item alone read like a false alarm, docs/invariants.md N50)."""
    why = safeguarding.describe(concerns_for(item, True)) or "a possible safeguarding concern"
    if item.source in PUBLIC_SOURCES:
        return _public_alert(item, theme, why)
    reply = (f"The sender allowed replies: answer with *feedback reply {ref_of(item.id)}*."
             if can_reply else "The sender did not allow replies.")
    said = tuple(Text(f"Their answer ({message_day(m, True):%d %b}, looks like "
                      f"{safeguarding.describe(m.concerns or ())}): {m.text}")
                 for m in reversed(answers[-ALERT_ANSWERS:]))  # newest first: cut last, if ever
    return Message(
        (
            Text("URGENT: anonymous feedback that may be a safeguarding concern", heading=True),
            Fields((("Looks like", why), ("Theme", theme or "-"), ("Received", day_for(item, True).isoformat()),
                    ("Ref", ref_of(item.id)))),
            Text(item.text),
            *said,
            Context("The sender is anonymous and cannot be traced by anyone, including the bot. "
                    f"They were shown the safeguarding routes before sending. {reply}"),
        ),
        fallback=f"URGENT: anonymous feedback that may be a safeguarding concern ({why}), "
                 f"ref {ref_of(item.id)}.",
    )


def _public_alert(item: FeedbackItem, theme: str, why: str) -> Message:
    who = SOURCE_LABELS.get(item.source, item.source)
    return Message(
        (
            Text(f"URGENT: feedback from {who} (public page) that may be a safeguarding concern",
                 heading=True),
            Fields((("Looks like", why), ("Theme", theme or "-"), ("Received", day_for(item, True).isoformat()),
                    ("Ref", ref_of(item.id)))),
            Text(item.text),
            Context("Sent from the public feedback page without signing in. They were shown who "
                    "to call (the safeguarding routes, 999, Childline for young people). If they "
                    f"asked to be contacted, *families contact {ref_of(item.id)}* shows how."),
        ),
        fallback=f"URGENT: feedback from {who} that may be a safeguarding concern ({why}), "
                 f"ref {ref_of(item.id)}.",
    )


async def add_public_item(s: AsyncSession, leads: Sequence[str], *, source: str, day: date,
                          text: str, theme_id: str | None, concerns: Sequence[str],
                          status: str = "new", lead_day: date | None = None) -> str:
    """A public page's item (no author of any kind), with an alert to each lead if urgent;
    returns its id.

    Written in the caller's transaction, so it commits with the caller's own rows; the caller
    runs `deliver_alerts(core, item_id)` after the commit. (Plain inserts: the public pages take
    bursts, and the ORM's unit of work would cost more than the insert.)
    """
    if source not in PUBLIC_SOURCES:
        raise ValueError(f"not a public source: {source}")
    item_id = new_id()
    conn = await s.connection()
    await conn.execute(_PUBLIC_ITEM, {
        "id": item_id, "day": day, "lead_day": lead_day, "theme_id": theme_id or None, "text": text,
        "urgent": bool(concerns), "concerns": list(concerns), "status": status, "source": source,
        "response_id": None, "released": False})
    if leads:
        await conn.execute(_ALERT, [
            {"item_id": item_id, "person_id": lead, "status": "pending", "attempts": 0,
             "lease_until": None} for lead in leads])
    return item_id


async def public_responses(s: AsyncSession, limit: int = 20) -> list[FeedbackResponse]:
    """The "you said, we did" that answered something sent from a public page, newest first.

    One that answered staff feedback alone stays inside the organisation.
    """
    answered_public = select(FeedbackItem.id).where(
        FeedbackItem.response_id == FeedbackResponse.id,
        FeedbackItem.source.in_(list(PUBLIC_SOURCES))).exists()
    return list((await s.execute(select(FeedbackResponse).where(answered_public).order_by(
        FeedbackResponse.day.desc(), FeedbackResponse.title).limit(limit))).scalars())


_PUBLIC_ITEM = insert(FeedbackItem)  # built once (see add_public_item)
_ALERT = insert(FeedbackAlert)


async def lead_ids(s: AsyncSession) -> list[str]:
    """The people a safeguarding alert goes to."""
    return [p.id for p in await people.people_with_role(s, SAFEGUARDING_LEAD)]


# How long a sender owns the alerts it claimed; a sender that dies leaves them to another then.
ALERT_LEASE = timedelta(minutes=5)


async def deliver_alerts(core: Core, item_id: str | None = None) -> int:
    """DM every pending safeguarding alert once; safe to call again (ledger + leases).

    Alerts are claimed with a lease in one short transaction, sent with no transaction open
    (a row lock held across a platform call would stall every other writer), and their
    outcome is written in another; a claim that outlives its lease is taken by the next sender.
    """
    lock = _locks.setdefault(core, asyncio.Lock())
    now = core.clock.now()
    A = FeedbackAlert
    async with lock:
        try:  # leads named since it was stored (N51)
            await _alert_new_leads(core, item_id)
        except Exception:  # holds back no waiting alert; looked for again at the next tick
            log.exception("could not look for urgent items no current lead was told of")
        async with core.db.session() as s:
            free = (A.status == "pending") & (A.lease_until.is_(None) | (A.lease_until < now))
            claim = update(A).where(free).values(lease_until=now + ALERT_LEASE)
            if item_id is not None:
                claim = claim.where(A.item_id == item_id)
            claimed = [(r.item_id, r.person_id) for r in
                       await s.execute(claim.returning(A.item_id, A.person_id))]
            # An alert waits for a lead however long (N45): one who is no longer a current
            # lead meanwhile (role taken away, left) is not its reader any more.
            current = set(await lead_ids(s))
            if withdrawn := [(i, p) for i, p in claimed if p not in current]:
                for i, p in withdrawn:
                    await s.execute(delete(A).where(A.item_id == i, A.person_id == p,
                                                    A.status == "pending"))
                log.info("safeguarding alerts withdrawn: no longer a safeguarding lead",
                         extra={"count": len(withdrawn)})
                claimed = [(i, p) for i, p in claimed if p in current]
            if not claimed:
                return 0
            cfg = await config(s)
            names = {t.id: t.name for t in await themes(s)}
            ids = list({i for i, _p in claimed})
            items = {i.id: i for i in (await s.execute(
                select(FeedbackItem).where(FeedbackItem.id.in_(ids)))).scalars()}
            handles = set((await s.execute(select(FeedbackHandle.item_id).where(
                FeedbackHandle.item_id.in_(ids)))).scalars())
            # Leads whose every known account is unreachable (blocked the app, closed, its
            # platform's adapter off): not tried and not counted, so the alert waits for them
            # however long, and goes once they are back. Counted, it was given up after
            # MAX_ALERT_ATTEMPTS ticks (25 minutes) and never sent (docs/invariants.md N45).
            away = set()
            for lead in {p for _i, p in claimed}:
                known = held(core).identities(lead, await people.identities_of(s, lead))
                if known and not any(i.reachable and i.platform in core.ports for i in known):
                    away.add(lead)
            urgent_answers: dict[str, list[FeedbackMessage]] = {}
            for iid in ids:
                urgent_answers[iid] = [m for m in await thread(s, iid, lead=True)
                                       if m.sender == "author" and m.concerns is not None]
            s.expunge_all()
        outcome: dict[tuple[str, str], bool] = {}
        # The app's or the platform's problem, not the lead's: not counted towards giving up.
        not_counted: set[tuple[str, str]] = set()
        doubt = _in_doubt.setdefault(core, set())  # (key, lead) whose last send may have landed
        for iid, lead in claimed:
            item = items.get(iid)
            if item is None:
                continue
            if lead in away:
                not_counted.add((iid, lead))
                outcome[(iid, lead)] = False
                continue
            msg = alert_message(item, names.get(item.theme_id or "", ""), cfg, item.id in handles,
                                urgent_answers.get(iid, ()))
            try:
                # Keyed: tried again after a timeout, the copy Slack took is found, not
                # posted again at every tick (a new urgent answer's alert has its own key).
                key = f"sg-alert{ref_of(iid)}.{len(urgent_answers.get(iid, ()))}"
                outcome[(iid, lead)] = await core.dm(
                    lead, msg, key=key, in_doubt=(key, lead) in doubt) is not None
                doubt.discard((key, lead))
            except AppNotAuthorised:
                # Uninstalled, token revoked: not counted towards giving up, so the alert
                # still reaches the lead once the app is reinstalled, however long that takes.
                log.warning("safeguarding alert waits: the platform refuses the app")
                not_counted.add((iid, lead))
                outcome[(iid, lead)] = False
            except (TransientError, RateLimited) as e:
                if not isinstance(e, RateLimited):  # a 5xx or a timeout: it may have landed
                    doubt.add((key, lead))
                # An outage, a 429, a timeout: the platform's, however long it lasts. Counted,
                # an hour of Slack's 5xx used up the tries (a tick each) and the leads were
                # never told once it came back (docs/invariants.md N45).
                log.warning("safeguarding alert waits: the platform is failing; will retry")
                not_counted.add((iid, lead))
                outcome[(iid, lead)] = False
            except Exception:
                log.warning("safeguarding alert send failed; will retry")
                doubt.add((key, lead))
                outcome[(iid, lead)] = False
        sent = 0
        async with core.db.session() as s:
            for iid, lead in claimed:
                a = await s.get(A, (iid, lead))
                if a is None or a.status == ACKNOWLEDGED:  # taken on (dashboard) meanwhile
                    continue
                ok = outcome.get((iid, lead), False)
                a.attempts += 0 if (iid, lead) in not_counted else 1
                a.lease_until = None
                if ok:
                    a.status = "sent"
                    sent += 1
                elif a.attempts >= MAX_ALERT_ATTEMPTS:
                    a.status = "failed"
                    log.error("safeguarding alert could not be delivered",
                              extra={"attempts": a.attempts})
        # Once per item (per process): a notice at every tick, every 30 s, while a lead
        # cannot be alerted (without end while a platform fails: N45) said nothing new.
        told = _told_channel.setdefault(core, set())
        missed = {iid for iid, lead in claimed if iid in items
                  and not outcome.get((iid, lead), False)} - told
        # Remembered only once posted: a channel failing too (the same outage) is tried again.
        if cfg.alert_channel and missed and await _alert_channel_fallback(core, cfg):
            told.update(missed)
    return sent


# The safeguarding leads this process last found (`_alert_new_leads`): a change (a lead named,
# a role taken away, a programme reloaded) and a process's first tick look for what no current
# lead was told of.
_leads_seen: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


async def _alert_new_leads(core: Core, item_id: str | None = None) -> int:
    """Alert every current lead of each urgent item (or of `item_id`, just stored) that no
    current lead was sent and no lead has taken on (acknowledged, or closed once told), where
    they have no alert of it yet; how many items (N51).

    The ledger is written when an item (or an author's urgent answer) is stored, for the leads
    of that moment. A disclosure sent while no lead was set up, or whose leads all lost the
    role before any was alerted (their alerts are withdrawn then), reached no current lead:
    it waited in a queue the leads named later had no reason to open. What a current lead
    was alerted of, or any lead took on, is not sent to a lead named later (their queue holds
    it), so a grant re-announces nothing the leads have. Looked for at a process's first tick
    and whenever the leads change, not at every tick: the items are read whole. An item just
    stored is looked at alone after its commit: its transaction read the leads before a
    change that the tick may have looked at before the commit (PostgreSQL), and was missed."""
    missing: list[tuple[str, str]] = []
    async with core.db.session() as s:
        current = frozenset(await lead_ids(s))
        if current and (item_id is not None or _leads_seen.get(core) != current):
            It, A = FeedbackItem, FeedbackAlert
            # Taken on: acknowledged, or closed by now (done, closed, spam) after a lead was
            # told (without, two years of what former leads dealt with came back as URGENT
            # at every handover). Closed before any lead was told, it is still alerted.
            closed = (A.status == "sent") & It.status.not_in(OPEN) & It.lead_concerns.is_(None)
            # Told: sent. An alert still waiting (its lead blocked the app, an outage) or
            # given up told nobody, and the lead named to cover is alerted too.
            told = exists().where(A.item_id == It.id, or_(
                A.status == ACKNOWLEDGED,
                (A.status == "sent") & A.person_id.in_(sorted(current)), closed))
            untold = select(It.id).where(
                or_(It.urgent.is_(True), It.lead_concerns.is_not(None)), ~told)
            if item_id is not None:
                untold = untold.where(It.id == item_id)
            ids = list((await s.execute(untold)).scalars())
            # (A subquery, not the ids: the first tick may find more than a statement's
            # 32,767 parameters allow.)
            have = set((await s.execute(select(A.item_id, A.person_id).where(
                A.item_id.in_(untold), A.person_id.in_(sorted(current))))).tuples())
            missing = [(i, lead) for i in ids for lead in sorted(current)
                       if (i, lead) not in have]
        if missing:
            conn = await s.connection()
            # Another replica may write the same rows meanwhile: the second write is a no-op.
            await conn.execute(
                upsert(conn.dialect.name, FeedbackAlert).on_conflict_do_nothing(
                    index_elements=["item_id", "person_id"]),
                [{"item_id": i, "person_id": lead, "status": "pending", "attempts": 0,
                  "lease_until": None} for i, lead in missing])
            log.warning("safeguarding alerts written for leads named since an urgent item "
                        "reached no current lead", extra={"count": len({i for i, _ in missing})})
    if item_id is None:  # (one item looked at says nothing of the others)
        _leads_seen[core] = current
    return len({i for i, _lead in missing})


# Alerts (key, lead) whose last send failed with its outcome unknown: asked for before the
# next (per process: another process, or a restart, may post a second copy).
_in_doubt: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()

# Items whose `alert_channel` notice this process has posted.
_told_channel: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


async def _alert_channel_fallback(core: Core, cfg: safeguarding.Config) -> bool:
    """A lead could not be reached: tell the safeguarding channel something urgent is
    waiting (it names no item). Whether the channel took it."""
    try:
        await core.post_channel(cfg.alert_channel, Message(
            (Text("An urgent anonymous feedback item is waiting for a safeguarding lead. "
                  "Type “feedback list urgent” to read it."),)))
    except Exception:
        log.warning("safeguarding alert channel unreachable")
        return False
    return True


# -- reading (change team, safeguarding leads) ---------------------------------------------


async def list_items(
    s: AsyncSession, *, theme_id: str | None = None, statuses: Sequence[str] = OPEN,
    urgent_only: bool = False, limit: int = 20, sources: Sequence[str] = (STAFF,),
    lead: bool = False,
) -> list[FeedbackItem]:
    """Released items newest day first; within a day shuffled, so order never hints at who
    sent first (and nothing is listed before its release: bot/feedback/release.py). With
    `lead` (a safeguarding lead's own view), urgent items too from the moment they are stored."""
    where: list[ColumnElement[bool]] = [readable(lead),
                                        FeedbackItem.status.in_(list(statuses)),
                                        FeedbackItem.source.in_(list(sources))]
    if theme_id:
        where.append(FeedbackItem.theme_id == theme_id)
    if urgent_only:
        # A lead's queue holds an item whose author's urgent answer waits for its release too.
        where.append(or_(FeedbackItem.urgent.is_(True), FeedbackItem.lead_concerns.is_not(None))
                     if lead else FeedbackItem.urgent.is_(True))
    # Only the newest days that fill `limit` are read (counts per day first): a long-running
    # programme keeps thousands of items, and a list shows a few. A lead reads an urgent
    # item's day sent (`day_for`).
    dcol = func.coalesce(FeedbackItem.lead_day, FeedbackItem.day) if lead else FeedbackItem.day
    days: list[date] = []
    total = 0
    for day, n in await s.execute(select(dcol, func.count()).where(*where)
                                  .group_by(dcol).order_by(dcol.desc())):
        days.append(day)
        total += int(n)
        if total >= limit:
            break
    if not days:
        return []
    rows = list((await s.execute(select(FeedbackItem).where(
        *where, dcol >= days[-1]))).scalars())
    by_day: dict[date, list[FeedbackItem]] = {}
    for r in rows:
        by_day.setdefault(day_for(r, lead), []).append(r)
    out: list[FeedbackItem] = []
    for day in sorted(by_day, reverse=True):
        group = by_day[day]
        random.shuffle(group)
        out.extend(sorted(group, key=lambda i: not urgent_for(i, lead)))  # urgent first, shuffled
    return out[:limit]


def readable(lead: bool = False) -> ColumnElement[bool]:
    """Which items a viewer reads: released ones; for a safeguarding lead (`lead`), urgent ones
    too from the moment they are stored. An urgent item waits for the release it would have
    gone with, had it not been urgent, for everyone else (the change team's listings, the
    dashboard's feedback pages, counts, "you said, we did"): seen at once, a team that lists
    every few minutes dated it to the minute, beside the platform's record of who opened a
    form then (docs/invariants.md N37). Its leads are alerted at once (N20)."""
    if lead:
        return or_(FeedbackItem.released.is_(True), FeedbackItem.urgent.is_(True))
    return FeedbackItem.released.is_(True)


def is_readable(item: FeedbackItem, lead: bool = False) -> bool:
    """`readable` for one loaded item."""
    return bool(item.released or (lead and item.urgent))


async def find_item(s: AsyncSession, ref: str, *, lead: bool = False) -> FeedbackItem:
    """A released item by its short reference (#a1b2c3); UserError when unknown or ambiguous.
    An item not released yet is unknown, as if it did not exist (to a safeguarding lead,
    `lead`, an urgent one is known from the moment it is stored: N37)."""
    key = ref.strip().lstrip("#").lower()
    if len(key) < 4 or not all(c in "0123456789abcdef" for c in key):
        raise UserError(f"'{ref}' is not a feedback reference like #a1b2c3.")
    rows = list((await s.execute(
        select(FeedbackItem).where(FeedbackItem.id.startswith(key),
                                   readable(lead)).limit(2))).scalars())
    if not rows:
        raise UserError(f"There is no feedback {ref_of(key)}. Type “feedback list” to see them.")
    if len(rows) > 1:
        raise UserError(f"More than one item starts with {key}; give a few more characters.")
    return rows[0]


async def has_handle(s: AsyncSession, item_id: str) -> bool:
    return (await s.execute(select(FeedbackHandle.id).where(
        FeedbackHandle.item_id == item_id))).first() is not None


async def thread(s: AsyncSession, item_id: str, *, author: bool = False,
                 lead: bool = False) -> list[FeedbackMessage]:
    """An item's thread as the change team reads it (released messages), as its `author`
    does (their own answers too, from the moment they sent them), or as a safeguarding lead
    does (`lead`: an author's urgent answer and the leads' replies waiting with it, at once)."""
    M = FeedbackMessage
    q = select(M).where(M.item_id == item_id)
    if lead and not author:
        q = q.where(or_(M.released.is_(True), M.concerns.is_not(None), M.sender == "team"))
    elif not author:
        q = q.where(M.released.is_(True))
    # Readable messages in order, then the author's answers still waiting, in theirs.
    return list((await s.execute(q.order_by(M.seq < 0, func.abs(M.seq)))).scalars())


async def set_status(s: AsyncSession, item: FeedbackItem, status: str, *,
                     lead: bool = False) -> None:
    """Change an item's status; a safeguarding lead (`lead`) may not while an author's urgent
    answer waits: changed by a lead now, everyone else would see the status move with no
    answer to show for it, dating the answer (its release puts the item back to new anyway,
    N37). Anyone else changes it as they see it (the answer is not theirs to know of yet)."""
    if status not in STATUSES:
        raise UserError(f"'{status}' is not a status. Use one of: {', '.join(STATUSES)}.")
    if lead and item.lead_concerns is not None:
        raise UserError(f"{ref_of(item.id)} has an author's answer waiting for its release, "
                        "which puts it back to new; its status can be changed from then. "
                        "Nothing was changed.")
    item.status = status


async def _add_message(s: AsyncSession, item_id: str, sender: str, text: str, day: date,
                       team_person_id: str | None = None, *, released: bool = True,
                       concerns: Sequence[str] | None = None, lead_day: date | None = None
                       ) -> FeedbackMessage:
    M = FeedbackMessage
    if released:  # after every readable message (an answer still waiting holds no place)
        seq = (await s.execute(select(func.coalesce(func.max(M.seq), 0)).where(
            M.item_id == item_id, M.seq > 0))).scalar_one() + 1
    else:
        # An answer waiting for its release: a place below zero (-1, -2, ...: later is lower),
        # so the change team's replies written meanwhile are not numbered after it; the
        # release gives it its place after them (bot/feedback/release.py). Numbered in
        # writing order, the thread read reply, answer, reply: the answer came before the
        # second reply, however long the release held it (N27).
        seq = (await s.execute(select(func.coalesce(func.min(M.seq), 0)).where(
            M.item_id == item_id, M.seq < 0))).scalar_one() - 1
    msg = FeedbackMessage(item_id=item_id, seq=seq, sender=sender, text=text, day=day,
                          team_person_id=team_person_id, released=released,
                          concerns=list(concerns) if concerns is not None else None,
                          lead_day=lead_day)
    s.add(msg)
    return msg


# -- replies through the sealed route -------------------------------------------------------


def author_notice(token: str) -> Message:
    """The DM an author gets: only that an answer exists; its text opens in a form, not the chat."""
    return Message(
        (
            Text("The change team answered your feedback."),
            Context("Open it to read the answer and, if you like, answer back. You stay anonymous."),
            Choices("feedback.read", (Choice("Read the answer", token, "primary"),),
                    opens_form=True),
            Choices("feedback.revoke", (Choice("Stop replies", token, "danger"),)),
        ),
        fallback="The change team answered your feedback.",
    )


async def _open_route(core: Core, handle: FeedbackHandle) -> sealing.Route:
    return sealing.open_sealed(core.secret, handle.id, handle.sealed)


NOTICE_ATTEMPTS = 6
# Author notices being sent after their reply's commit (see `reply`); `settle_notices` waits.
NOTICES: set[asyncio.Task[None]] = set()


async def reply(core: Core, item_id: str, team_person_id: str, text: str, *,
                lead: bool = False) -> None:
    """Store a change-team reply; the author is told after the commit, in the background.

    The caller's answer never waits on the platform: if a reply to a live route returned only
    after the author's DM while one to a stopped route returned at once, the change team could
    time its replies and learn which routes are stopped, and which stopped together (N17). For
    the same reason nothing says whether the author was reached (left, blocked the app).
    """
    async with core.db.session() as s:
        item = await s.get(FeedbackItem, item_id)
        if item is None or not is_readable(item, lead):  # not readable yet, nor answerable
            raise UserError("There is no such feedback. Type “feedback list” to see it.")
        handle = (await s.execute(select(FeedbackHandle).where(
            FeedbackHandle.item_id == item_id))).scalar_one_or_none()
        if handle is None:
            raise UserError("The author of this feedback did not allow replies, or has stopped "
                            "them. Nothing was sent. You can answer everyone with “you said we did”.")
        try:
            route: sealing.Route | None = await _open_route(core, handle)
        except sealing.RouteUnavailable:
            # Stopped by its author (`revoke`): saved as if it could go, since which items'
            # authors stopped replies, together, would say which items share an author.
            route = None
        now = core.clock.now()
        day = await today(s, now)
        if lead and lead_only(item):
            # A lead answering what everyone else cannot read yet (the item, or an author's
            # urgent answer): readable with it at its release, dated as it is, so neither the
            # thread nor the item's status says that something happened before (N37).
            await _add_message(s, item_id, "team", text, await release_day(s, now),
                               team_person_id, released=False, lead_day=day)
        else:
            await _add_message(s, item_id, "team", text, day, team_person_id)
            if item.status == "new":
                item.status = "read"
    if route is not None:
        _tell_later(core, route.person_id, author_notice(route.token))


def _tell_later(core: Core, person_id: str, message: Message) -> None:
    """DM an author after the caller's commit, in the background (`NOTICES`), so that no
    answer to the change team waits on whether, or how many, authors were reached."""
    task = asyncio.get_running_loop().create_task(_tell_author(core, person_id, message))
    NOTICES.add(task)
    task.add_done_callback(NOTICES.discard)


async def _tell_author(core: Core, person_id: str, message: Message) -> None:
    """The notice, retried while the platform is busy or failing (a few minutes at most)."""
    for attempt in range(NOTICE_ATTEMPTS):
        try:
            # Quiet: a row of the author's changed right after this would name them.
            await core.dm(person_id, message, quiet=True)
            return
        except RateLimited as e:
            wait = e.retry_after
        except TransientError:
            wait = 2.0 ** attempt
        except Exception:
            break
        await asyncio.sleep(min(wait, 60.0))
    log.warning("could not tell an author there is a reply")  # names nobody


async def settle_notices() -> None:
    """Wait for the author notices being sent (tests, and a clean shutdown)."""
    while NOTICES:
        await asyncio.gather(*list(NOTICES), return_exceptions=True)


async def handle_for_token(core: Core, s: AsyncSession, token: str, person_id: str) -> FeedbackHandle:
    """The live handle behind an author's button; refuses revoked ones and other people."""
    handle = (await s.execute(select(FeedbackHandle).where(
        FeedbackHandle.token_key == _token_key(core.secret, token)))).scalar_one_or_none()
    if handle is None:
        raise UserError("Replies to this feedback were stopped, so this conversation is closed.")
    try:
        route = await _open_route(core, handle)
    except sealing.RouteUnavailable:
        raise UserError("Replies to this feedback were stopped, so this conversation is closed.") from None
    if route.person_id != person_id:
        raise UserError("Only the person who sent this feedback can use this button.")
    return handle


async def author_answer(core: Core, token: str, person_id: str, text: str,
                        concerns: Sequence[str]) -> str:
    """Store the author's answer in the item's thread (anonymous); returns the item id.

    The change team reads it, and sees the item back on its list as new, from the next
    release (bot/feedback/release.py): seen at once, it would date the author's tap. An answer
    that looks like a safeguarding concern waits for its release too, and turns its item
    urgent for everyone but the leads only then (N37); its leads are alerted at once and read
    it at once in their views (`lead_concerns`, the answer's `concerns` and `lead_day`)."""
    async with core.db.session() as s:
        handle = await handle_for_token(core, s, token, person_id)
        locked: FeedbackItem | None = None  # held here, so the read below is this one
        if concerns:
            # The item's row first: a release running now holds it from its read of what
            # waits to its write of `lead_concerns`, so this answer is stored after it (and
            # read from what it wrote) or before its read, never unseen in between, where the
            # release cleared the leads' flag while this answer waited (PostgreSQL; SQLite
            # has one writer: tests/anonymity/test_urgent_answer_release_race.py).
            locked = await s.get(FeedbackItem, handle.item_id,
                                 with_for_update={"key_share": True})
        now = core.clock.now()
        await _add_message(s, handle.item_id, "author", text, await release_day(s, now),
                           released=False, concerns=list(concerns) if concerns else None,
                           lead_day=await today(s, now) if concerns else None)
        item = locked or await s.get(FeedbackItem, handle.item_id)
        assert item is not None
        if concerns:
            # Urgent, new and with these concerns for everyone else at its release; its leads
            # read it so now (`concerns_for`, `urgent_for`).
            item.lead_concerns = sorted(set(item.lead_concerns or item.concerns) | set(concerns))
            known = set((await s.execute(select(FeedbackAlert.person_id).where(
                FeedbackAlert.item_id == item.id))).scalars())
            for lead in await people.people_with_role(s, SAFEGUARDING_LEAD):
                if lead.id in known:
                    # Already alerted about this item: alert again about the new message.
                    await s.execute(update(FeedbackAlert).where(
                        FeedbackAlert.item_id == item.id, FeedbackAlert.person_id == lead.id
                    ).values(status="pending", attempts=0))
                else:
                    s.add(FeedbackAlert(item_id=item.id, person_id=lead.id))
            _told_channel.get(core, set()).discard(item.id)  # a new thing to tell
            return item.id
        # Waits for a release, where its author counts as a person, not a thing (N25).
        m = await senders.mark(core, await s.connection(), person_id)
    senders.keep(core, m)
    return item.id


async def destroy_routes(s: AsyncSession, where: ColumnElement[bool], why: str) -> int:
    """Destroy the reply routes `where` selects; how many. Each sealed route is overwritten
    before its row is deleted, so no copy lingers in free pages."""
    await overwrite_deleted(s)
    rows = (await s.execute(select(FeedbackHandle.id, func.length(FeedbackHandle.sealed))
                            .where(where))).all()
    for hid, size in rows:
        await s.execute(update(FeedbackHandle).where(FeedbackHandle.id == hid).values(
            sealed=bytes(int(size or 0)), token_key=f"{why}-{hid}"))
    await s.execute(delete(FeedbackHandle).where(FeedbackHandle.id.in_([r[0] for r in rows])))
    return len(rows)


async def _stop(s: AsyncSession, handle_ids: Sequence[str]) -> None:
    """Destroy routes an author stopped, leaving their rows in place until they expire.

    Each sealed route and its token key are overwritten with random bytes of the same size
    (no key opens them, no button finds them), and every other route's row is rewritten in the
    same transaction, so neither the change team ("replies possible", a reply's answer) nor the
    stored rows (PostgreSQL's `xmin`) tell which items lost their route together: items whose
    replies stopped at once share an author. The rows go at 90 days, as every route does.
    """
    await overwrite_deleted(s)
    stopped = sorted(set(handle_ids))
    await s.execute(update(FeedbackHandle).where(FeedbackHandle.id.not_in(stopped))
                    .values(token_key=FeedbackHandle.token_key))
    for hid, size in (await s.execute(select(FeedbackHandle.id, func.length(FeedbackHandle.sealed))
                                      .where(FeedbackHandle.id.in_(stopped)))).all():
        await s.execute(update(FeedbackHandle).where(FeedbackHandle.id == hid).values(
            sealed=secrets.token_bytes(int(size or 0)), token_key=secrets.token_hex(32)))


async def revoke(core: Core, token: str, person_id: str) -> None:
    """The author stops replies to one item: its route is destroyed for good."""
    async with core.db.session() as s:
        handle = await handle_for_token(core, s, token, person_id)
        await _stop(s, [handle.id])


async def revoke_all(core: Core, person_id: str) -> int:
    """The author stops replies to everything they sent; returns how many routes were destroyed."""
    mine = []
    async with core.db.session() as s:
        for handle in list((await s.execute(select(FeedbackHandle))).scalars()):
            try:
                route = await _open_route(core, handle)
            except sealing.RouteUnavailable:
                continue
            if route.person_id == person_id:
                mine.append(handle.id)
        # Every row rewritten even for someone with no route: else a dump (PostgreSQL's
        # `xmin`) said whether the person who typed it, at that second, had any (N43).
        await _stop(s, mine)
    return len(mine)


# -- "you said, we did" ----------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    response_id: str
    items: int
    staff: str  # never how many authors were told (N8)


async def publish(core: Core, publisher_id: str, *, theme_id: str, title: str, text: str,
                  refs: Sequence[str] = ()) -> Published:
    """Close items under a theme with a response, broadcast it, and tell authors who allowed replies."""
    async with core.db.session() as s:
        if refs:
            items = [await find_item(s, r) for r in refs]
            # Answering an item twice would let a publisher pair items at will and read who
            # wrote what from the replies; an answered item stays answered.
            done = [ref_of(i.id) for i in items if i.response_id is not None]
            if done:
                raise UserError(f"{', '.join(done)} already had a “you said, we did”. Each item "
                                "is answered once. Nothing was published.")
        else:
            items = list((await s.execute(select(FeedbackItem).where(
                FeedbackItem.theme_id == theme_id, FeedbackItem.response_id.is_(None),
                FeedbackItem.released.is_(True),
                FeedbackItem.status.not_in(["closed", "spam"])))).scalars())
        if not items:
            raise UserError("There is no open feedback under that theme to answer. Nothing was published.")
        day = await today(s, core.clock.now())
        response = FeedbackResponse(theme_id=theme_id, title=title, text=text, day=day,
                                    published_by=publisher_id)
        s.add(response)
        await s.flush()
        for item in items:
            item.response_id = response.id
            item.status = "done"
        handles = list((await s.execute(select(FeedbackHandle).where(
            FeedbackHandle.item_id.in_([i.id for i in items])))).scalars())
        routes: dict[str, sealing.Route] = {}
        for h in handles:
            try:
                route = await _open_route(core, h)
            except sealing.RouteUnavailable:
                continue
            routes.setdefault(route.person_id, route)  # one message per author
        theme = await s.get(Theme, theme_id)
        response_id = response.id
    staff = await _broadcast(core, publisher_id, title=f"You said, we did: {title}", text=text)
    async with core.db.session() as s:
        row = await s.get(FeedbackResponse, response_id)
        if row is not None:
            row.broadcast = {"via": staff}
    # After the commit, in the background: the publisher's answer must not wait on how many
    # authors there are or which of them can be reached (which items share an author, N8).
    # In a random order: read from the routes' table, the first told on PostgreSQL was the
    # one who sent first, and the platform keeps each DM's time by name (N54).
    told = list(routes.values())
    _SHUFFLE.shuffle(told)
    for route in told:
        _tell_later(core, route.person_id, _author_yswd(
            title, text, theme.name if theme else "", route.token))
    return Published(response_id, len(items), staff)


def _author_yswd(title: str, text: str, theme: str, token: str) -> Message:
    return Message(
        (
            Text(f"You said, we did: {title}", heading=True),
            Text(text),
            Context(f"You're getting this because you gave feedback{' on ' + theme if theme else ''} "
                    "and allowed replies. Nobody was told who you are."),
            Choices("feedback.revoke", (Choice("Stop replies", token, "danger"),)),
        ),
        fallback=f"You said, we did: {title}\n{text}",
    )


async def _broadcast(core: Core, publisher_id: str, *, title: str, text: str) -> str:
    """Through the broadcast feature when it exists; else a DM to every member of staff."""
    try:
        from bot.broadcasts import service as broadcasts
    except ImportError:
        broadcasts = None  # type: ignore[assignment]
    publish_to_staff = getattr(broadcasts, "publish_to_staff", None)
    if publish_to_staff is not None:
        try:
            return f"broadcast {await publish_to_staff(core, publisher_id, title=title, text=text)}"
        except UserError as e:  # refused as a broadcast (too long for one): said, no traceback
            log.warning("broadcast refused; falling back to direct messages",
                        extra={"reason": str(e)[:200]})
        except Exception:
            log.exception("broadcast feature failed; falling back to direct messages")
    async with core.db.session() as s:
        everyone = [p.id for p in await people.people_with_role(s, "practitioner")]
        named = ((await get_setting(s, "programme")) or {}).get("channels") or {}
    channels = [named[k] for k in ANNOUNCE_CHANNELS if k in named][:1]
    msg = Message((Text(title, heading=True), Text(text)), fallback=f"{title}\n{text}")
    sent, refused = 0, False
    for pid in everyone:
        # Best effort, with no ledger: a person the platform refuses (the app uninstalled,
        # AppNotAuthorised; a message it will not take) is counted out, never a traceback that
        # loses the authors' notices after the response was already stored.
        try:
            if await core.dm(pid, msg) is not None:
                sent += 1
        except AppNotAuthorised:
            refused = True
        except PlatformError as e:
            log.warning("you-said-we-did DM refused by the platform", extra={"error": str(e)[:200]})
    for ref in channels:
        try:
            await core.post_channel(ref, msg)
        except Exception:
            log.warning("could not post you-said-we-did to a channel")
    told = f"dm {sent} of {len(everyone)}"
    return told + ("; the platform refuses staffvoice until it is reinstalled" if refused else "")


# -- housekeeping ------------------------------------------------------------------------------


async def tick(core: Core, now: datetime) -> int:
    """Forget yesterday's daily counters; retry undelivered alerts. Reply routes expire in the
    daily retention run (bot/privacy/retention.py), after the programme's `reply_routes_days`."""
    async with core.db.session() as s:
        day = await today(s, now)
        await overwrite_deleted(s)  # the sealed counts leave no copy in free pages
        res = await s.execute(delete(FeedbackDailyCount).where(FeedbackDailyCount.day < day))
        pruned = int(res.rowcount or 0)  # type: ignore[attr-defined]
        counts.forget_day_keys(core.db.engine.sync_engine, before=day)
        old = FeedbackDayKey.day < day  # overwritten first, so no copy lingers in free pages
        await s.execute(update(FeedbackDayKey).where(old).values(sealed=bytes(60)))
        await s.execute(delete(FeedbackDayKey).where(old))
    return pruned + await deliver_alerts(core)


# -- reading for the dashboard ---------------------------------------------------------------


async def recent_responses(s: AsyncSession, limit: int = 5) -> list[FeedbackResponse]:
    """The latest "you said, we did" responses, newest first (what staff were told)."""
    return list((await s.execute(select(FeedbackResponse).order_by(
        FeedbackResponse.day.desc(), FeedbackResponse.id).limit(limit))).scalars())


async def theme_counts(s: AsyncSession, sources: Sequence[str] = (STAFF,)
                       ) -> dict[tuple[str | None, str], int]:
    """How many released items per (theme, status) from `sources`: counts only, never who or
    when (an item waiting for its release is not counted, or the count would date it)."""
    rows = await s.execute(select(FeedbackItem.theme_id, FeedbackItem.status, func.count())
                           .where(FeedbackItem.source.in_(list(sources)),
                                  FeedbackItem.released.is_(True))
                           .group_by(FeedbackItem.theme_id, FeedbackItem.status))
    return {(t, st): int(n) for t, st, n in rows.all()}


ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True)
class Urgent:
    """An urgent item in the safeguarding queue, with which leads have acknowledged it."""

    item: FeedbackItem
    acknowledged_by: tuple[str, ...]  # safeguarding leads' person ids
    delivery: dict[str, str]  # lead person id -> pending | sent | failed | acknowledged

    @property
    def day(self) -> date:
        """The day its leads were told (`day_for`)."""
        return day_for(self.item, True)

    @property
    def concerns(self) -> list[str]:
        """What its leads were told it looks like (`concerns_for`)."""
        return concerns_for(self.item, True)


async def urgent_queue(s: AsyncSession, *, include_acknowledged: bool = True,
                       limit: int = 50) -> list[Urgent]:
    """Urgent items, newest day first (shuffled within a day, as every list), with each lead's
    alert state: the safeguarding leads' queue, from staff and the public pages alike (as chat's
    `feedback list urgent`: an urgent item from a child or parent is no less urgent)."""
    items = await list_items(s, statuses=STATUSES, urgent_only=True, limit=limit,
                             sources=(STAFF, *PUBLIC_SOURCES), lead=True)
    if not items:
        return []
    alerts: dict[str, dict[str, str]] = {}
    for a in (await s.execute(select(FeedbackAlert).where(
            FeedbackAlert.item_id.in_([i.id for i in items])))).scalars():
        alerts.setdefault(a.item_id, {})[a.person_id] = a.status
    out = []
    for i in items:
        states = alerts.get(i.id, {})
        acked = tuple(sorted(p for p, st in states.items() if st == ACKNOWLEDGED))
        if acked and not include_acknowledged:
            continue
        out.append(Urgent(i, acked, states))
    return out


async def acknowledge(s: AsyncSession, item_id: str, lead_person_id: str) -> None:
    """A safeguarding lead has seen an urgent item and taken it on: their alert is marked
    acknowledged (and no longer sent, if it was still waiting), and a new item becomes read.

    The item's row is locked first, as an urgent answer locks it before it alerts the leads
    again (`author_answer`): taken the other way round (the alert, then the item, the order
    the session writes them in), the two deadlocked on PostgreSQL and the answer was lost
    (tests/anonymity/test_urgent_answer_release_race.py). It also reads `lead_concerns` as
    an answer committed meanwhile left it, so the status is left for that answer's release."""
    item = await s.get(FeedbackItem, item_id, with_for_update={"key_share": True})
    # Urgent for its leads (`urgent_for`): an item whose author's urgent answer waits for its
    # release is not `urgent` yet for everyone else, but is in the leads' queue at once (N37).
    if item is None or not urgent_for(item, True):
        raise UserError("That urgent item no longer exists.")
    alert = await s.get(FeedbackAlert, (item_id, lead_person_id))
    if alert is None:
        s.add(FeedbackAlert(item_id=item_id, person_id=lead_person_id, status=ACKNOWLEDGED))
    else:
        alert.status = ACKNOWLEDGED
        alert.lease_until = None
    if item.status == "new" and item.lead_concerns is None:  # (its release sets it: N37)
        item.status = "read"


async def threads_of(s: AsyncSession, item_ids: Sequence[str]) -> dict[str, list[FeedbackMessage]]:
    """The threads of many items in one read (a listing page)."""
    out: dict[str, list[FeedbackMessage]] = {i: [] for i in item_ids}
    if item_ids:
        for m in (await s.execute(select(FeedbackMessage).where(
                FeedbackMessage.item_id.in_(list(item_ids)),
                FeedbackMessage.released.is_(True)).order_by(
                FeedbackMessage.item_id, FeedbackMessage.seq))).scalars():
            out[m.item_id].append(m)
    return out


async def with_handles(s: AsyncSession, item_ids: Sequence[str]) -> set[str]:
    """Which of these items' authors allowed replies (and have not stopped them)."""
    if not item_ids:
        return set()
    return set((await s.execute(select(FeedbackHandle.item_id).where(
        FeedbackHandle.item_id.in_(list(item_ids))))).scalars())
