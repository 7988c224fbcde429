"""Broadcasts: validate, draft, preview, confirm, schedule, retract, celebrate and report.

Other features use `draft(...)` (an early win from a completed milestone, confirmed by its
author in chat) and `publish_to_staff(...)` ("you said, we did", already confirmed).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import spreadsheet
from bot.broadcasts import audiences, ledger
from bot.broadcasts.tables import Broadcast, Celebration, Delivery
from bot.channels import parse_channel
from bot.errors import FormInvalid, UserError
from bot.model import (
    Choice,
    Choices,
    Context,
    Fields,
    Image,
    LinkButton,
    Message,
    MessageRef,
    Text,
    text_message,
)
from bot.people import service as people
from bot.people.tables import Person
from bot.port import AppNotAuthorised, PlatformError, RateLimited
from bot.roles import ALL_ROLES, CHANGE_TEAM, LABELS
from bot.scheduling.jobs import DEFAULT_GRACE, programme_tz, too_late

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.broadcasts")

# Longest text each platform shows in one block: a Slack section is capped at 3,000
# characters; a Teams message at about 28 KB (we keep well under it).
TEXT_LIMITS = {"slack": 3000, "teams": 20000}
DEFAULT_TEXT_LIMIT = 3000
TITLE_LIMIT = 150
CELEBRATE = "bc-celebrate:"
DRAFT = "bc-draft:"
ROLE_WORDS = {r.replace("_", " "): r for r in ALL_ROLES} | {r: r for r in ALL_ROLES} | {
    "team leads": "team_lead", "leaders": "leader", "practitioners": "practitioner",
    "change team": "change_team", "safeguarding leads": "safeguarding_lead"}
AUDIENCE_HELP = ("Audience is one of: everyone · teams: assessment, front-door · "
                 "roles: team lead, leader · members: slack:T0123/usergroup:S0456 (or "
                 "slack:T0123/channel:C0789, teams:<tenant>/team:<id>) · "
                 "channels: slack:T0123/C0456")


@dataclass(frozen=True)
class Compose:
    """A validated broadcast, before it is stored."""

    title: str
    text: str
    image_url: str | None
    link_url: str | None
    link_label: str
    celebrate: bool
    audience: dict[str, Any]
    send_at: datetime | None


# -- validation ---------------------------------------------------------------------------


def text_limit(platforms: set[str] | list[str]) -> int:
    """The longest text every connected platform can show."""
    return min([TEXT_LIMITS.get(p, DEFAULT_TEXT_LIMIT) for p in platforms] or [DEFAULT_TEXT_LIMIT])


async def parse_audience(s: AsyncSession, spec: str,
                         platforms: set[str] | None = None) -> dict[str, Any]:
    """'everyone' | 'teams: a, b' | 'roles: team lead' | 'members: slack:T1/usergroup:S1' |
    'channels: slack:T1/C1' (';' joins). `members` are platform groups, DM'd person by person."""
    spec = spec.strip()
    if not spec or spec.lower() in ("everyone", "all", "all staff"):
        return {"kind": "dm", "everyone": True, "teams": [], "roles": [], "channels": [],
                "groups": []}
    out: dict[str, Any] = {"kind": "dm", "everyone": False, "teams": [], "roles": [],
                           "channels": [], "groups": []}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, sep, rest = part.partition(":")
        key = key.strip().lower().rstrip("s")
        key = {"member": "group", "members of": "group"}.get(key, key)
        if not sep or key not in ("team", "role", "channel", "group"):
            raise UserError(f"I don't understand the audience '{part}'. {AUDIENCE_HELP}")
        names = [n.strip() for n in (rest.split(",") if key != "channel" else rest.split(","))
                 if n.strip()]
        if not names:
            raise UserError(f"'{part}' names nobody. {AUDIENCE_HELP}")
        for name in names:
            if key == "team":
                team = await people.find_team(s, name)
                if team is None:
                    raise UserError(f"There is no team called '{name}'. {AUDIENCE_HELP}")
                out["teams"].append(team.id)
            elif key == "role":
                role = ROLE_WORDS.get(name.lower())
                if role is None:
                    raise UserError(f"'{name}' is not a role. Roles: "
                                    + ", ".join(LABELS[r] for r in ALL_ROLES) + ".")
                out["roles"].append(role)
            elif key == "group":
                out["groups"].append(audiences.check_ref(name, platforms or set()))
            else:
                parse_channel(name)  # raises a clear UserError when malformed
                out["channels"].append(name)
    if out["channels"] and (out["teams"] or out["roles"] or out["groups"]):
        raise UserError("Send either to channels or to people's DMs, not both in one broadcast.")
    if out["channels"]:
        out["kind"] = "channels"
    return out


def describe_audience(a: dict[str, Any]) -> str:
    if a.get("kind") == "channels":
        return "channels " + ", ".join(a["channels"])
    if a.get("everyone"):
        return "everyone (DM)"
    parts = []
    if a.get("teams"):
        parts.append("teams " + ", ".join(a["teams"]))
    if a.get("roles"):
        parts.append(", ".join(LABELS[r] for r in a["roles"]))
    if a.get("groups"):
        parts.append("members of " + ", ".join(a["groups"]))
    return " and ".join(parts) + " (DM)"


def parse_when(text: str, tz: str, now: datetime) -> datetime | None:
    """'' or 'now' -> None (send at once); 'YYYY-MM-DD HH:MM' in the programme's time zone."""
    t = text.strip().lower()
    if t in ("", "now"):
        return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ t](\d{1,2}:\d{2})", t)
    if not m:
        raise UserError("Give the time as YYYY-MM-DD HH:MM, or 'now'.")
    try:
        when = datetime.fromisoformat(f"{m.group(1)} {m.group(2).zfill(5)}").replace(
            tzinfo=ZoneInfo(tz))
    except ValueError as e:
        raise UserError(f"'{text}' is not a real date and time.") from e
    if when <= now:
        raise UserError("That time has already passed; say 'now' to send at once.")
    return when


async def validate(s: AsyncSession, values: dict[str, str], platforms: set[str],
                   now: datetime) -> Compose:
    """Check a compose form; FormInvalid lists every problem by field (nothing is stored)."""
    errors: dict[str, str] = {}
    title = values.get("title", "").strip()
    text = values.get("text", "").strip()
    limit = text_limit(platforms)
    if not title:
        errors["title"] = "Give the broadcast a title."
    elif len(title) > TITLE_LIMIT:
        errors["title"] = f"Keep the title under {TITLE_LIMIT} characters."
    if not text:
        errors["text"] = "The message text is empty."
    elif len(text) > limit:
        errors["text"] = (f"The text is {len(text):,} characters; the platform shows at most "
                          f"{limit:,}. Shorten it or link to the full story.")
    image = values.get("image_url", "").strip() or None
    if image and not _is_https(image):
        errors["image_url"] = "The image must be an https:// address."
    link = values.get("link_url", "").strip() or None
    if link and not _is_https(link):
        errors["link_url"] = "The link must be an https:// address."
    audience: dict[str, Any] = {}
    try:
        audience = await parse_audience(s, values.get("audience", ""), platforms)
    except UserError as e:
        errors["audience"] = str(e)
    send_at = None
    try:
        from bot.programme.core_sections import get_setting

        tz = (await get_setting(s, "programme", {}) or {}).get("timezone", "Europe/London")
        send_at = parse_when(values.get("when", ""), tz, now)
    except UserError as e:
        errors["when"] = str(e)
    if errors:
        raise FormInvalid(errors)
    return Compose(title, text, image, link, values.get("link_label", "").strip()[:80],
                   values.get("celebrate", "false") == "true", audience, send_at)


def _is_https(url: str) -> bool:
    return bool(re.fullmatch(r"https://[^\s/]+\.[^\s]+", url))


# -- what recipients and the author see ---------------------------------------------------


def render(b: Broadcast, *, preview: bool = False) -> Message:
    """The broadcast as every recipient sees it."""
    blocks: list[Any] = [Text(b.title, heading=True), Text(b.text)]
    if b.image_url:
        blocks.append(Image(alt=b.title, url=b.image_url))
    if b.link_url:
        blocks.append(LinkButton(b.link_label or "Read more", b.link_url))
    if b.celebrate:
        if preview:
            blocks.append(Context("Recipients get a Celebrate button here."))
        else:
            blocks.append(Choices(CELEBRATE + b.id, (Choice("Celebrate", "1", "primary"),)))
    blocks.append(Context("From the change team"))
    return Message(tuple(blocks), fallback=f"{b.title}\n{b.text}")


def preview_card(b: Broadcast, recipients: int) -> Message:
    when = b.send_at.strftime("%Y-%m-%d %H:%M UTC") if b.send_at else "as soon as you confirm"
    card = render(b, preview=True)
    head = Text("Preview: only you can see this. Nothing is sent until you tap Send.")
    info = Fields((("Audience", describe_audience(b.audience)),
                   ("Recipients", f"{recipients:,}"), ("When", when), ("Id", b.id)))
    buttons = Choices(DRAFT + b.id, (Choice("Send", "send", "primary"), Choice("Edit", "edit"),
                                     Choice("Cancel", "cancel", "danger")))
    return Message((head, *card.blocks, info, buttons),
                   fallback=f"Preview of '{b.title}' to {recipients} recipients")


async def count_recipients(s: AsyncSession, audience: dict[str, Any],
                           members: list[str] | None = None) -> int:
    if audience.get("kind") == "channels":
        return len(audience.get("channels", []))
    return len(set(await ledger.audience_people(s, audience)) | set(members or ()))


async def group_members(core: Core, audience: dict[str, Any]) -> list[str]:
    """Person ids in the audience's platform groups (read from the platforms now)."""
    groups = audience.get("groups") or []
    return await audiences.group_people(core, groups) if groups else []


async def check_groups(core: Core, f: Compose) -> list[str]:
    """The platform groups can be read: their people, else FormInvalid on the audience."""
    try:
        return await group_members(core, f.audience)
    except UserError as e:
        raise FormInvalid({"audience": str(e)}) from e


# -- lifecycle ----------------------------------------------------------------------------


async def store(core: Core, author_person_id: str, f: Compose, *, source: str = "",
                draft_id: str | None = None) -> Broadcast:
    """Save (or re-save while still a draft) a validated broadcast as a draft."""
    async with core.db.session() as s:
        b = await s.get(Broadcast, draft_id) if draft_id else None
        if draft_id and (b is None or b.state != "draft"):
            raise UserError("That draft was already sent or cancelled. Start a new broadcast.")
        if b is None:
            b = Broadcast(author_person_id=author_person_id, created_at=core.clock.now(),
                          source=source[:200], state="draft", audience=f.audience)
            s.add(b)
        b.title, b.text, b.image_url, b.link_url = f.title, f.text, f.image_url, f.link_url
        b.link_label, b.celebrate, b.audience, b.send_at = (
            f.link_label, f.celebrate, f.audience, f.send_at)
        await s.flush()
        return b


async def preview_for(core: Core, b: Broadcast, members: list[str] | None = None) -> Message:
    if members is None:
        members = await group_members(core, b.audience)
    async with core.db.session() as s:
        return preview_card(b, await count_recipients(s, b.audience, members))


async def draft(core: Core, author_person_id: str, *, title: str, text: str, source: str = "",
                link_url: str | None = None) -> str:
    """A pre-filled draft (e.g. an early win); the author gets the preview card to confirm."""
    values = {"title": title[:TITLE_LIMIT], "text": text, "link_url": link_url or "",
              "celebrate": "true", "audience": "everyone"}
    async with core.db.session() as s:
        try:
            f = await validate(s, values, set(core.ports), core.clock.now())
        except FormInvalid as e:
            raise UserError("Could not draft the broadcast: " + "; ".join(e.errors.values())) from e
    b = await store(core, author_person_id, f, source=source)
    ref = await core.dm(author_person_id, await preview_for(core, b, []))
    await _remember_preview(core, b.id, ref)
    return b.id


async def publish_to_staff(core: Core, author_person_id: str, *, title: str, text: str,
                           audience: str = "everyone") -> str:
    """Send at once (the caller's own flow was the confirmation); returns the broadcast id."""
    async with core.db.session() as s:
        try:
            f = await validate(s, {"title": title[:TITLE_LIMIT], "text": text,
                                   "audience": audience}, set(core.ports), core.clock.now())
        except FormInvalid as e:
            raise UserError("Nothing was sent: " + "; ".join(e.errors.values())) from e
    members = await check_groups_or_refuse(core, f)
    b = await store(core, author_person_id, f, source="you said, we did")
    await confirm(core, b.id, author_person_id, members)
    return b.id


async def check_groups_or_refuse(core: Core, f: Compose) -> list[str]:
    try:
        return await check_groups(core, f)
    except FormInvalid as e:
        raise UserError("Nothing was sent: " + "; ".join(e.errors.values())) from e


async def _remember_preview(core: Core, bid: str, ref: MessageRef | None) -> None:
    if ref is None:
        return
    async with core.db.session() as s:
        b = await s.get(Broadcast, bid)
        if b is not None:
            b.preview_ref = {"conversation": people.conversation_to_json(ref.conversation),
                             "message_id": ref.message_id}


async def confirm(core: Core, bid: str, person_id: str,
                  members: list[str] | None = None) -> Broadcast:
    """The author's explicit go: queue every recipient now, or schedule it.

    `members`: the audience's group members when just read (else they are read now).
    """
    now = core.clock.now()
    async with core.db.session() as s:
        first = await _editable(s, bid, person_id)
        audience, later = first.audience, bool(first.send_at and first.send_at > now)
    # Group members are read from the platform before the transaction, not inside it
    # (a scheduled broadcast reads them when it starts).
    if members is None and not later:
        members = await group_members(core, audience)
    async with core.db.session() as s:
        b = await _editable(s, bid, person_id)
        if b.state != "draft":
            raise UserError(f"That broadcast is already {b.state}; nothing more was sent.")
        if b.send_at and b.send_at > now:
            b.state = "scheduled"
            return b
        await _start(s, b, set(core.ports), now, members)
        return b


async def _start(s: AsyncSession, b: Broadcast, platforms: set[str], now: datetime,
                 members: list[str] | None = None) -> None:
    b.total = await ledger.enqueue(s, b, platforms, now, members)
    b.state = "sending" if b.total else "done"
    b.started_at = now
    if not b.total:
        b.finished_at = now


async def start_due(core: Core, now: datetime) -> int:
    """Ticker: scheduled broadcasts whose time has come are queued (the table says what is due)."""
    started = 0
    async with core.db.session() as s:
        due = list((await s.execute(select(Broadcast.id, Broadcast.send_at).where(
            Broadcast.state == "scheduled", Broadcast.send_at <= now))).all())
    for bid, send_at in due:
        if send_at is None or await _missed_beyond_grace(core, bid, send_at, now):
            continue
        if now - send_at > DEFAULT_GRACE:
            # Still scheduled this late while the scheduler ran: it waited for a platform that
            # refused the app (below), or to tell its author. Not started hours late, even
            # once its group can be read again after the reinstall.
            await _cancel_unreadable(core, bid, _refused_too_long(await _due_when(core, send_at)))
            continue
        b0 = await get(core, bid)
        try:
            members = await group_members(core, b0.audience) if b0 is not None else []
        except audiences.GroupsRefused as e:
            # The platform refuses the app (uninstalled, token revoked) or failed in passing,
            # not the group: it stays scheduled and starts on the first tick that can read it
            # (after the reinstall), unless that comes too late for its news (the scheduler's
            # grace, above), like a missed time.
            # info: the adapter says a refused token once; this repeats every tick
            log.info("scheduled broadcast waits: its group cannot be read for now",
                     extra={"broadcast": bid, "error": str(e)[:200]})
            continue
        except UserError as e:
            await _cancel_unreadable(core, bid, str(e))
            continue
        async with core.db.session() as s:
            b = await s.get(Broadcast, bid, with_for_update=not core.db.is_sqlite)
            if b is not None and b.state == "scheduled":
                await _start(s, b, set(core.ports), now, members)
                started += 1
    return started


async def _missed_beyond_grace(core: Core, bid: str, send_at: datetime, now: datetime) -> bool:
    """A scheduled broadcast whose time passed while staffvoice was down for longer than the
    scheduler's grace is not sent hours late (news of a 10:00 briefing at 15:00 misleads): it
    is cancelled, recorded as skipped, and the author told so they can send it again."""
    if not await too_late(core, "broadcasts", f"scheduled:{bid}", send_at, now, DEFAULT_GRACE,
                          only_if_missed=True):
        return False
    hours = int(DEFAULT_GRACE.total_seconds() // 3600)
    await _cancel_unreadable(core, bid, f"it was due {await _due_when(core, send_at)}, while "
                             f"staffvoice was not running, and was found more than {hours} "
                             "hours late. Write it again with 'broadcast' if it still stands.")
    return True


async def _due_when(core: Core, send_at: datetime) -> str:
    return send_at.astimezone(ZoneInfo(await programme_tz(core))).strftime("%a %d %b %H:%M")


def _refused_too_long(when: str) -> str:
    hours = int(DEFAULT_GRACE.total_seconds() // 3600)
    return (f"it was due {when} and could not start within {hours} hours (its group could "
            "not be read: the platform refused staffvoice, the app uninstalled or its token "
            "revoked). Write it again with 'broadcast' if it still stands.")


async def _cancel_unreadable(core: Core, bid: str, reason: str) -> None:
    """A scheduled broadcast whose group can no longer be read: cancelled, the author told.

    The author is told first: when the platform refuses the app (AppNotAuthorised) the author
    cannot be told there, so it stays scheduled and the next tick (the scheduler's leader
    alone runs it) tries again, after the reinstall; it is never started that late (the
    grace), and never cancelled unsaid."""
    async with core.db.session() as s:
        b = await s.get(Broadcast, bid)
        if b is None or b.state != "scheduled":
            return
        author, title = b.author_person_id, b.title
    try:
        await core.dm(author, text_message(f"Your scheduled broadcast '{title}' was not sent: "
                                           f"{reason}"))
    except AppNotAuthorised:
        # info: the adapter says a refused token once; this repeats every tick
        log.info("a cancelled scheduled broadcast waits to tell its author: the platform "
                 "refuses the app", extra={"broadcast": bid})
        return
    except PlatformError as e:  # refused for good: `broadcast status` still says cancelled
        log.warning("could not tell the author a scheduled broadcast was cancelled",
                    extra={"broadcast": bid, "error": str(e)[:200]})
    async with core.db.session() as s:
        b = await s.get(Broadcast, bid)
        if b is not None and b.state == "scheduled":
            b.state = "cancelled"


async def cancel(core: Core, bid: str, person_id: str) -> None:
    async with core.db.session() as s:
        b = await _editable(s, bid, person_id)
        if b.state not in ("draft", "scheduled"):
            raise UserError(f"That broadcast is already {b.state}; use 'broadcast retract {bid}'.")
        b.state = "cancelled"


async def retract(core: Core, bid: str, person_id: str) -> int:
    """Stop sending and delete every delivered copy (the sender does the deletes)."""
    async with core.db.session() as s:
        b = await _editable(s, bid, person_id)
        if b.state in ("draft", "scheduled"):
            b.state = "cancelled"
            return 0
        if b.state not in ("sending", "done"):
            raise UserError(f"That broadcast is {b.state}; there is nothing to retract.")
        b.state = "retracting"
        await s.execute(update(Delivery).where(
            Delivery.broadcast_id == bid, Delivery.state.in_(ledger.CLAIMABLE))
            .values(state="skipped", error="retracted before delivery")
            .execution_options(synchronize_session=False))
        return int(await s.scalar(select(func.count()).where(
            Delivery.broadcast_id == bid, Delivery.state.in_(("sent", "sending")))) or 0)


async def _editable(s: AsyncSession, bid: str, person_id: str) -> Broadcast:
    b = await s.get(Broadcast, bid.strip())
    if b is None:
        raise UserError(f"There is no broadcast '{bid}'. Type 'broadcasts' to list recent ones.")
    roles = await people.roles_of(s, person_id)
    if b.author_person_id != person_id and CHANGE_TEAM not in roles:
        raise UserError("Only its author or the change team can change that broadcast.")
    return b


async def celebrate(core: Core, bid: str, person_id: str) -> tuple[bool, int]:
    """Count a celebrate tap once per person; (first time?, count so far)."""
    first = True
    try:
        async with core.db.session() as s:
            if await s.get(Broadcast, bid) is None:
                raise UserError("That broadcast no longer exists.")
            await s.execute(insert(Celebration).values(broadcast_id=bid, person_id=person_id,
                                                       at=core.clock.now()))
    except IntegrityError:
        first = False
    async with core.db.session() as s:
        n = await s.scalar(select(func.count()).where(Celebration.broadcast_id == bid))
    return first, int(n or 0)


# -- status and reports -------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    broadcast: Broadcast
    counts: dict[str, int]
    celebrations: int
    reasons: list[tuple[str, int]]
    # DMs held for their recipients' working hours, and when the next of them goes (local).
    waiting: int = 0
    next_at: str = ""

    @property
    def settled(self) -> int:
        c = self.counts
        return c["sent"] + c["final_failed"] + c["skipped"]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def status(core: Core, bid: str) -> Status:
    async with core.db.session() as s:
        b = await s.get(Broadcast, bid.strip())
        if b is None:
            raise UserError(f"There is no broadcast '{bid}'. Type 'broadcasts' to list recent ones.")
        c = await ledger.counts(s, b.id)
        held, first = await ledger.waiting(s, b.id, core.clock.now())
        n = await s.scalar(select(func.count()).where(Celebration.broadcast_id == b.id))
        rows = await s.execute(
            select(Delivery.error, func.count()).where(
                Delivery.broadcast_id == b.id,
                Delivery.state.in_(("final_failed", "skipped", "failed")))
            .group_by(Delivery.error).order_by(func.count().desc()).limit(5))
        return Status(b, c, int(n or 0), [(e or "unknown", int(k)) for e, k in rows.all()],
                      held, await _local_time(s, first) if first else "")


async def _local_time(s: AsyncSession, when: datetime) -> str:
    """A moment in the programme's time zone, as the change team reads it."""
    from bot.programme.core_sections import get_setting

    tz = (await get_setting(s, "programme", {}) or {}).get("timezone", "Europe/London")
    return when.astimezone(ZoneInfo(tz)).strftime(f"%a %Y-%m-%d %H:%M {tz}")


def bar(done: int, total: int, width: int = 20) -> str:
    """A text progress bar: '█████░░░░░ 50%'."""
    share = 1.0 if total == 0 else done / total
    full = int(round(share * width))
    return "█" * full + "░" * (width - full) + f" {share:.0%}"


def status_message(st: Status) -> Message:
    b, c = st.broadcast, st.counts
    lines = (
        ("State", b.state), ("Progress", f"{bar(st.settled, st.total)} ({st.settled:,} of {st.total:,})"),
        ("Sent", f"{c['sent']:,}"), ("Queued", f"{c['queued'] - st.waiting:,}"),
        *((("Waiting", f"{st.waiting:,} outside their working hours; next at {st.next_at}"),)
          if st.waiting else ()),
        ("Sending", f"{c['sending']:,}"),
        ("Retrying", f"{c['failed']:,}"), ("Failed", f"{c['final_failed']:,}"),
        ("Skipped", f"{c['skipped']:,}"), ("Celebrations", f"{st.celebrations:,}"),
    )
    blocks: list[Any] = [Text(f"Broadcast {b.id}: {b.title}", heading=True), Fields(lines)]
    if st.reasons:
        blocks.append(Text("Why some were not delivered:\n" + "\n".join(
            f"• {r} ({n:,})" for r, n in st.reasons)))
        blocks.append(Context(f"Export every failure: staffvoice broadcast status {b.id} --csv FILE"))
    text = "\n".join(f"{k}: {v}" for k, v in lines)
    if st.reasons:
        text += "\nWhy some were not delivered:\n" + "\n".join(
            f"- {r} ({n:,})" for r, n in st.reasons)
    return Message(tuple(blocks), fallback=f"Broadcast {b.id}: {b.title}\n{text}")


async def failures_csv(core: Core, bid: str) -> str:
    """Every recipient not delivered to, with the reason, as CSV."""
    async with core.db.session() as s:
        rows = (await s.execute(
            select(Delivery, Person.email).outerjoin(Person, Person.id == Delivery.person_id)
            .where(Delivery.broadcast_id == bid,
                   Delivery.state.in_(("final_failed", "skipped", "failed")))
            .order_by(Delivery.state, Delivery.recipient))).all()
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["recipient", "email", "platform", "state", "attempts", "reason"])
    for d, email in rows:
        w.writerow([spreadsheet.text(d.recipient), spreadsheet.text(email or ""), d.platform or "",
                    d.state, d.attempts, spreadsheet.text(d.error or "")])
    return out.getvalue()


async def get(core: Core, bid: str) -> Broadcast | None:
    async with core.db.session() as s:
        return await s.get(Broadcast, bid)


async def recent(core: Core, limit: int = 10) -> list[Broadcast]:
    async with core.db.session() as s:
        return list((await s.execute(select(Broadcast).order_by(
            Broadcast.created_at.desc()).limit(limit))).scalars())


async def notify_settled(core: Core, bid: str) -> None:
    """Tell the author a broadcast finished (or its retract did), with the delivery report."""
    st = await status(core, bid)
    b, c = st.broadcast, st.counts
    if b.state == "retracted":
        text = f"Your broadcast '{b.title}' was retracted: {c['sent']:,} delivered copies deleted."
    else:
        text = (f"Your broadcast '{b.title}' has finished: delivered to {c['sent']:,} of "
                f"{st.total:,}; {c['skipped']:,} could not be reached; {c['final_failed']:,} failed. "
                f"Type 'broadcast status {b.id}' for the report.")
    for _ in range(3):
        try:
            await core.dm(b.author_person_id, text_message(text))
            return
        except RateLimited as e:  # the report shares the workspace's budget: wait our turn
            await asyncio.sleep(min(e.retry_after, 5.0))
