"""Families' and young people's feedback: form tokens, rate limits, storing, contact requests.

No person is known here: nobody signs in. The item is stored as a `feedback_items` row with its
own source, through bot.feedback's service, so urgent items take the staff path to the
safeguarding leads (the alert ledger with its leases). Nothing here logs what anyone wrote,
their address or their contact details.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import UserError
from bot.families.tables import FamilyAnswer, FamilyContact, FamilyFormUse, FamilyRate
from bot.feedback import counts, safeguarding
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem, FeedbackResponse
from bot.people.tables import Theme
from bot.programme.core_sections import get_setting, programme_zone
from bot.secrets import Unsealable, derive, keyed_hash, open_bytes, seal_bytes
from storage.db import overwrite_deleted, upsert

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.families")

AUDIENCES: tuple[str, ...] = ("families", "young_people")
# Retention of a contact request when the contact is never marked made. At merge this joins the
# daily retention job as the `family_contact` kind (`retention: family_contact: 30d`); until then
# this feature's own daily tick deletes them.
FAMILY_CONTACT_DAYS = 30
DAILY_LIMIT = 10  # submissions per address per day (the programme's `families.daily_limit`)
CONCERN_ALLOWANCE = fb.CONCERN_ALLOWANCE  # times the daily limit a possible disclosure may still be sent
MAX_TEXT = 2000  # characters in each of "what is working" and "what could be better"
MAX_NAME = 100
MAX_HOW = 200  # a phone number or an email address
TOKEN_TTL = timedelta(hours=4)  # a form left open this long must be reloaded
TOKEN_LABEL = "staffvoice families form token v1"
RATE_LABEL = "staffvoice families rate v1"
CONTACT_LABEL = "staffvoice families contact v1"


@dataclass(frozen=True)
class Config:
    """The `families:` programme section, with defaults when it is absent."""

    daily_limit: int = DAILY_LIMIT
    contact_days: int = FAMILY_CONTACT_DAYS
    short_link: str = ""
    languages: tuple[str, ...] = ()  # none given: every language with a strings file
    wording: Mapping[str, Any] = field(default_factory=dict)  # {lang: {section: {key: text}}}
    routes: tuple[str, ...] = ()  # names of safeguarding routes the pages show; () is all

    @classmethod
    def from_setting(cls, value: Mapping[str, Any] | None) -> Config:
        v = value or {}
        return cls(
            daily_limit=int(v.get("daily_limit") or DAILY_LIMIT),
            contact_days=int(v.get("contact_days") or FAMILY_CONTACT_DAYS),
            short_link=str(v.get("short_link") or ""),
            languages=tuple(v.get("languages") or ()),
            wording=dict(v.get("wording") or {}),
            routes=tuple(v.get("routes") or ()),
        )

    def shown_routes(self, routes: Sequence[safeguarding.Route]) -> list[safeguarding.Route]:
        """The safeguarding routes for the public (a staff whistleblowing line is not one)."""
        if not self.routes:
            return list(routes)
        return [r for r in routes if r.name in self.routes]


async def config(s: AsyncSession) -> Config:
    return Config.from_setting(await get_setting(s, "families"))


# -- form tokens: signed, time-limited, used once ----------------------------------------------


def issue_token(secret: bytes, audience: str, now: datetime) -> str:
    """A hidden-field token for one form: audience, time, a random nonce and a MAC over them."""
    ts = str(int(now.timestamp()))
    nonce = secrets.token_urlsafe(16)
    mac = keyed_hash(derive(secret, TOKEN_LABEL), audience, ts, nonce)[:32]
    return f"{ts}.{nonce}.{mac}"


def check_token(secret: bytes, audience: str, token: str, now: datetime) -> str | None:
    """The token's nonce if it is ours, for this form, and fresh; None otherwise."""
    parts = token.split(".") if isinstance(token, str) and len(token) < 200 else []
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    ts, nonce, mac = parts
    expected = keyed_hash(derive(secret, TOKEN_LABEL), audience, ts, nonce)[:32]
    if not hmac.compare_digest(expected, mac):
        return None
    issued = datetime.fromtimestamp(int(ts), tz=now.tzinfo)
    if not (now - TOKEN_TTL <= issued <= now + timedelta(minutes=5)):
        return None
    return nonce


def used_until(day: date, zone: tzinfo) -> datetime:
    """When the mark of a form sent on `day` (the programme's calendar day, in `zone`) may go:
    the day's end plus a form's lifetime, so after any token sent that day has expired. The
    same for every form of the day: a time beside an item as precise as its sending would
    date it, against a proxy's log or a worker who saw the form sent."""
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return end + TOKEN_TTL + timedelta(minutes=10)


# -- submitting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    name: str
    how: str  # a phone number or an email address


@dataclass(frozen=True)
class Submission:
    """What a person sent from a public page (checked for length by the page)."""

    audience: str
    rating: int | None
    working: str
    better: str
    theme_id: str | None = None
    contact: Contact | None = None
    honeypot: bool = False  # the hidden field was filled in: the spam queue
    lang: str = "en"

    @property
    def text(self) -> str:
        return text_of(self.rating, self.working, self.better)


def text_of(rating: int | None, working: str, better: str) -> str:
    """The item's text as the change team reads it in chat."""
    lines = [f"Rating: {rating} out of 5" if rating else "Rating: not given"]
    if working.strip():
        lines.append("What is working: " + working.strip())
    if better.strip():
        lines.append("What could be better: " + better.strip())
    return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """What happened to a submission: stored, replayed (already stored), limited or expired."""

    status: str
    item_id: str | None = None
    concerns: tuple[str, ...] = ()

    @property
    def urgent(self) -> bool:
        return bool(self.concerns)


def rate_key(secret: bytes, day: date, address: str) -> str:
    """The only form an address is kept in: a hash keyed by a derived key and the day."""
    return keyed_hash(derive(secret, RATE_LABEL), day.isoformat(), address)


async def submit(core: Core, sub: Submission, *, token: str, address: str) -> Outcome:
    """Store one submission once: token checked, replay refused, rate limited, urgent alerted."""
    if sub.audience not in AUDIENCES:
        raise ValueError(sub.audience)
    now = core.clock.now()
    nonce = check_token(core.secret, sub.audience, token, now)
    if nonce is None:
        return Outcome("expired")
    try:
        return await _store(core, sub, nonce, now, address)
    except _Limited:  # rolled back, the token with it: they may try again tomorrow
        return Outcome("limited")


class _Limited(Exception):
    pass


# Built once: a burst of forms should not pay for building and keying the same statements.
_THEME = select(Theme.id).where(Theme.id == bindparam("id"))
_ANSWER = sa_insert(FamilyAnswer)
_CONTACT = sa_insert(FamilyContact)
_USES: dict[str, Any] = {}

# Sends per address per day: held in memory and written by the feedback flusher apart from
# the items (bot/feedback/counts.py), so no rate row is ever committed with an item: with the
# server key an address can be hashed, and a shared `xmin` would name the item it sent.
RATES = counts.Counter(FamilyRate, lock=0x5F5F_7376_0F0D)


def _use(dialect: str) -> Any:
    """Mark a form token used, in this database's upsert syntax."""
    if dialect not in _USES:
        _USES[dialect] = upsert(dialect, FamilyFormUse).on_conflict_do_nothing(
            index_elements=["key"]).returning(FamilyFormUse.key)
    return _USES[dialect]


async def _store(core: Core, sub: Submission, nonce: str, now: datetime, address: str) -> Outcome:
    # The send is counted in the hold, kept once the item's transaction has committed.
    async with RATES.holding(core) as hold, core.db.session() as s:
        cfg = await config(s)
        sg = await fb.config(s)
        day = await fb.today(s, now)
        conn = await s.connection()
        # Written with the item: its key is a hash of the form's random nonce, which names
        # nobody (no address, no person), and it is kept until a time that is the same for
        # every form of the day, so sharing the item's transaction tells nothing.
        used = await conn.execute(_use(conn.dialect.name), {
            "key": keyed_hash(derive(core.secret, TOKEN_LABEL), "used", nonce),
            "expires_at": used_until(day, await programme_zone(conn))})
        if used.first() is None:
            return Outcome("replayed")
        concerns = tuple(safeguarding.concerns(f"{sub.working}\n{sub.better}", sg))
        key = rate_key(core.secret, day, address)
        # Safeguarding first: children share school and library connections, so what looks
        # like a disclosure still gets through past the limit, up to a hard cap against floods.
        if not await RATES.take(core, conn, hold, key, day,
                                fb.daily_limit(cfg.daily_limit, concerns)):
            raise _Limited()
        if sub.theme_id and (await conn.execute(_THEME, {"id": sub.theme_id})).first() is None:
            sub = replace(sub, theme_id=None)
        leads = await fb.lead_ids(s) if concerns else []
        shown = await fb.release_day(s, now, sg)  # N29, urgent or not (N37)
        item_id = await fb.add_public_item(
            s, leads, source=sub.audience, text=sub.text, theme_id=sub.theme_id, day=shown,
            concerns=concerns, status="spam" if sub.honeypot else "new",
            lead_day=day if concerns else None)
        await conn.execute(_ANSWER, {
            "item_id": item_id, "audience": sub.audience, "rating": sub.rating,
            "working": sub.working, "better": sub.better, "lang": sub.lang[:8]})
        if sub.contact is not None:
            await conn.execute(_CONTACT, {
                "item_id": item_id, "delete_after": _contact_until(shown, cfg.contact_days),
                "sealed": seal_contact(core.secret, item_id, sub.contact)})
    # Not logged unless urgent: a line at this moment would date the item for the logs'
    # readers (and a proxy's access log has the address); the release logs counts.
    if concerns:
        log.info("urgent family feedback stored; alerting the safeguarding leads")
        try:
            await fb.deliver_alerts(core, item_id)
        except Exception:  # stored already; the feedback tick retries the ledger
            log.exception("safeguarding alert delivery failed; the scheduler retries it")
    return Outcome("stored", item_id, concerns)


# -- contact requests (the change team only) ---------------------------------------------------


def _contact_until(shown: date, days: int) -> date:
    """The last day a contact request is kept: by its item's day, never the day it was sent.

    An item that waits for a release is dated by that release's day (N29): an item sent after
    the day's last release reads as the next day's. Kept `days` from the day it was sent, its
    contact went a day before those of the other items of its day, and `families contact`
    told the change team it was sent the evening before. Counted from its item's day less
    one, it is never kept longer than `days` after the day it was sent (an item sent before
    the day's last release loses a day). An urgent item alike: it is dated by its release's
    day too for everyone but its leads (N37), and its contact gone a day before the others of
    that day would say it was sent the evening before."""
    return shown + timedelta(days=days - 1)


def seal_contact(secret: bytes, item_id: str, contact: Contact) -> bytes:
    plain = json.dumps({"n": contact.name, "h": contact.how}).encode()
    return seal_bytes(derive(secret, CONTACT_LABEL), item_id, plain)


async def read_contact(core: Core, ref: str, *, lead: bool = False
                       ) -> tuple[FeedbackItem, Contact]:
    """The contact request behind an item (UserError if there is none, or it was deleted); an
    urgent item's from its storing for a safeguarding lead (`lead`), else from its release."""
    async with core.db.session() as s:
        item = await fb.find_item(s, ref, lead=lead)
        row = await s.get(FamilyContact, item.id)
        if row is None:
            raise UserError(f"{fb.ref_of(item.id)} has no contact request (none was asked for, "
                            "or it was deleted when the contact was made or the time ran out).")
        try:
            data = json.loads(open_bytes(derive(core.secret, CONTACT_LABEL), item.id, row.sealed))
        except Unsealable:
            raise UserError("This contact request cannot be opened with the server's key.") from None
        return item, Contact(str(data["n"]), str(data["h"]))


async def _destroy_contacts(s: AsyncSession, where: Any) -> int:
    # Overwritten before deleting, so no copy lingers in SQLite's free pages.
    await overwrite_deleted(s)
    await s.execute(update(FamilyContact).where(where).values(sealed=b"\x00" * 64))
    res = await s.execute(delete(FamilyContact).where(where))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def contact_made(core: Core, ref: str, *, lead: bool = False) -> FeedbackItem:
    """The change team made contact: the details are deleted for good. Returns the item."""
    async with core.db.session() as s:
        item = await fb.find_item(s, ref, lead=lead)
        if await _destroy_contacts(s, FamilyContact.item_id == item.id) == 0:
            raise UserError(f"{fb.ref_of(item.id)} has no contact details to delete.")
        if item.status == "new":
            item.status = "in_progress"
        return item


# -- public "you said, we did" ------------------------------------------------------------------


async def published(s: AsyncSession, limit: int = 20) -> list[FeedbackResponse]:
    """The change team's "you said, we did" that answered families or young people."""
    return await fb.public_responses(s, limit)


# -- housekeeping ---------------------------------------------------------------------------------


async def tick(core: Core, now: datetime) -> int:
    """Forget past days' address counters, used form tokens that have expired, and contact
    requests past their retention day."""
    async with core.db.session() as s:
        day = await fb.today(s, now)
        await overwrite_deleted(s)  # the sealed rates leave no copy in free pages
        n = int((await s.execute(delete(FamilyRate).where(FamilyRate.day < day))).rowcount or 0)  # type: ignore[attr-defined]
        n += int((await s.execute(delete(FamilyFormUse).where(
            FamilyFormUse.expires_at < now))).rowcount or 0)  # type: ignore[attr-defined]
        n += await _destroy_contacts(s, FamilyContact.delete_after < day)
    return n
