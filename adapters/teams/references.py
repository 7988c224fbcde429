"""Stored conversation references and members: how the bot reaches people later."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import String, bindparam, exists, literal, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.teams.tables import TeamsConversation, TeamsMember
from bot.core import Core, day_of
from bot.people import held as people_held
from bot.people.tables import Identity
from storage.db import Database, upsert
from storage.perkey import PerKey
from storage.prepared import Prepared

log = logging.getLogger("staffvoice.teams.references")
_T = TypeVar("_T")


def base_conversation_id(conversation_id: str) -> str:
    """A channel thread's id is '19:...@thread.tacv2;messageid=123'; the channel is before ';'."""
    return conversation_id.split(";messageid=", 1)[0]


def thread_of(conversation_id: str) -> str | None:
    _, sep, rest = conversation_id.partition(";messageid=")
    return rest or None if sep else None


def kind_of(activity: dict[str, Any]) -> str:
    conv = activity.get("conversation") or {}
    kind = conv.get("conversationType") or ""
    if kind in ("personal", "groupChat", "channel"):
        return kind
    return "channel" if (activity.get("channelData") or {}).get("team") else "personal"


def tenant_of(activity: dict[str, Any]) -> str:
    conv = activity.get("conversation") or {}
    tenant = (activity.get("channelData") or {}).get("tenant") or {}
    return str(conv.get("tenantId") or tenant.get("id") or "")


def reference_of(activity: dict[str, Any]) -> dict[str, Any]:
    """The fields of a Bot Framework conversation reference, from an inbound activity. The
    sender is kept for a personal chat only (it is that chat's person): a channel's or group
    chat's reference would otherwise name whoever last wrote there, and on which day."""
    conv = dict(activity.get("conversation") or {})
    conv["id"] = base_conversation_id(str(conv.get("id", "")))
    return {
        "bot": activity.get("recipient") or {},
        "user": (activity.get("from") or {}) if kind_of(activity) == "personal" else {},
        "conversation": conv,
        "channelId": activity.get("channelId", "msteams"),
        "serviceUrl": activity.get("serviceUrl", ""),
        "locale": activity.get("locale"),
    }


@dataclass
class Held:
    """Rows naming a person that an inbound activity would write, held per process (per
    Database: a test's two Cores on one database share it) until the people flusher writes
    them (bot/people/held.py, `Also`): a personal chat's reference and a sender's member
    row, first seen with a person's first message, which is often "feedback" (N21, B4)."""

    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)  # cid -> row
    members: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.conversations or self.members)


held: PerKey[Database, Held] = PerKey(Held)
"""`held(db)`: what this process holds for `db`, not yet written (`held.get(db)`: only if
anything was)."""
_shuffle = random.SystemRandom().shuffle


def _fits(values: dict[str, Any], model: type[Any]) -> bool:
    """Whether every text fits its column: a held row that did not would fail every flush
    (and with it everything held beside it), so it is not held (and logged)."""
    cols = model.__table__.c
    ok = all(not isinstance(v, str) or getattr(cols[k].type, "length", None) is None
             or len(v) <= cols[k].type.length for k, v in values.items())
    if not ok:
        log.warning("a Teams row too long to store was not kept", extra={"table": model.__tablename__})
    return ok


def _row(values: dict[str, Any], model: type[_T]) -> _T:
    """A held row as a new object in no session (reading it writes nothing)."""
    return model(**values)


@dataclass(frozen=True)
class Seen:
    """What the store knows of an inbound activity's conversation and sender, in one read."""

    reference_current: bool  # stored, installed and reachable the same way: nothing to write
    member: tuple[str | None, str] | None  # (email, name) of a known sender, else None


_CONV = TeamsConversation.__table__.c
_MEMBER = TeamsMember.__table__.c
_MEMBER_KEY = (_MEMBER.tenant_id == bindparam("tenant"), _MEMBER.user_id == bindparam("member"))
# One statement instead of two sessions (and a readiness ping) per inbound activity.
_SEEN = select(
    exists().where(
        _CONV.conversation_id == bindparam("cid"), _CONV.installed.is_(True),
        _CONV.kind == bindparam("kind"), _CONV.service_url == bindparam("url"),
        _CONV.user_id.is_not_distinct_from(bindparam("uid", type_=String)),
    ).label("current"),
    select(literal(1)).where(*_MEMBER_KEY).scalar_subquery().label("known"),
    select(_MEMBER.email).where(*_MEMBER_KEY).scalar_subquery().label("email"),
    select(_MEMBER.name).where(*_MEMBER_KEY).scalar_subquery().label("name"),
)
_SEEN_RUN = Prepared(_SEEN)  # every activity: on the DB-API cursor (storage/prepared.py)


def _reference_key(activity: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    """(conversation id, kind, service URL, personal chat's user) as `remember` stores them."""
    conv = activity.get("conversation") or {}
    if not conv.get("id") or not activity.get("serviceUrl"):
        return None
    kind = kind_of(activity)
    user = activity.get("from") or {}
    user_id = str(user.get("id")) if kind == "personal" and user.get("id") else None
    return base_conversation_id(str(conv["id"])), kind, str(activity["serviceUrl"]), user_id


async def seen(db: Database, activity: dict[str, Any], conn: AsyncConnection | None = None) -> Seen:
    """Read what `remember` and the sender lookup need, in `conn`'s transaction (the
    endpoint's, begun ahead and taken over by the event's admission: storage.db.Opened), or
    in one of its own; raises when the database is away (the endpoint then answers 503 so
    the Bot Framework delivers the activity again)."""
    key = _reference_key(activity) or ("", "", "", None)
    sender = str((activity.get("from") or {}).get("id") or "")
    params = {"cid": key[0], "kind": key[1], "url": key[2], "uid": key[3],
              "tenant": tenant_of(activity), "member": sender}
    if conn is not None:
        row = (await _SEEN_RUN.all(conn, params))[0]
    else:
        async with db.transaction() as own:
            row = (await _SEEN_RUN.all(own, params))[0]
    member = (row.email, row.name or "") if row.known is not None else None
    h = held.get(db)
    current = bool(row.current) and key[0] != ""
    if h:
        kept = h.members.get((tenant_of(activity), sender))
        if member is None and kept is not None:
            member = (kept["email"], kept["name"])
        conv = h.conversations.get(key[0])
        current = current or (conv is not None and conv["installed"] and (
            conv["kind"], conv["service_url"], conv["user_id"]) == key[1:])
    return Seen(current, member)


async def _upsert(db: Database, model: type[Any], key: tuple[Any, ...], values: dict[str, Any]) -> None:
    for _ in range(2):
        try:
            async with db.session() as s:
                row = await s.get(model, key)
                if row is None:
                    s.add(model(**values))
                else:
                    for k, v in values.items():
                        setattr(row, k, v)
            return
        except IntegrityError:
            continue  # a concurrent request inserted it first: update on the second pass
    log.warning("could not store a Teams reference")


async def remember(db: Database, activity: dict[str, Any], now: datetime,
                   known: Seen | None = None) -> None:
    """Store (or refresh) the reference of the conversation an activity came from.

    `known`, read by `seen` for this activity, stands in for this function's own read."""
    key = _reference_key(activity)
    if key is None or (known is not None and known.reference_current):
        return
    cid, kind, _, user_id = key
    team = (activity.get("channelData") or {}).get("team") or {}
    if known is None:
        row = await conversation(db, cid)
        if (row is not None and row.installed and row.kind == kind
                and row.service_url == str(activity["serviceUrl"])
                and row.user_id == user_id):
            # Already reachable the same way: write nothing, so a person's row does not
            # change (and so does not date) each time they tap an anonymous answer.
            return
    if user_id is not None:
        # A personal chat names its person: held, written undated by the flusher (N21).
        kept = {"conversation_id": cid, "tenant_id": tenant_of(activity), "kind": kind,
                "service_url": str(activity["serviceUrl"]), "user_id": user_id, "team_id": None,
                "reference": reference_of(activity), "installed": True, "updated_at": None}
        if _fits(kept, TeamsConversation):
            h = held(db)
            for other in h.conversations.values():
                if (other["tenant_id"], other["user_id"]) == (kept["tenant_id"], user_id):
                    other["installed"] = False  # one personal chat: the newest (_SUPERSEDE)
            h.conversations[cid] = kept
        return
    await _upsert(db, TeamsConversation, (cid,), {
        "conversation_id": cid,
        "tenant_id": tenant_of(activity),
        "kind": kind,
        "service_url": str(activity["serviceUrl"]),
        "user_id": None,
        "team_id": team.get("id"),
        "reference": reference_of(activity),
        "installed": True,
        # The day only (of a channel or group chat, naming nobody): the newest serves new chats.
        "updated_at": day_of(now),
    })


# A person has one personal chat with the bot: a newly seen one replaces the others. Teams
# keeps that chat's id, but the Microsoft 365 Agents Playground starts a new one each time it
# starts; writing to the old one would fail (404 ConversationNotFound).
_SUPERSEDE = (update(TeamsConversation)
              .where(TeamsConversation.tenant_id == bindparam("t"),
                     TeamsConversation.user_id == bindparam("u"),
                     TeamsConversation.kind == "personal",
                     TeamsConversation.conversation_id != bindparam("c"),
                     TeamsConversation.installed.is_(True))
              .values(installed=False))
# Column = column: a new version of every row, so every live row carries the flush's xmin.
_TOUCH_CONVERSATIONS = update(TeamsConversation).values(installed=TeamsConversation.installed)
_TOUCH_MEMBERS = update(TeamsMember).values(name=TeamsMember.name)


def _take(core: Core) -> Held | None:
    h = held.get(core.db)
    if not h:
        return None
    batch = Held(h.conversations, h.members)
    h.conversations, h.members = {}, {}
    return batch


def _keep(core: Core, batch: Held) -> None:
    h = held(core.db)
    h.conversations = {**batch.conversations, **h.conversations}
    h.members = {**batch.members, **h.members}


async def _linked(conn: AsyncConnection, accounts: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of (tenant, user id) that are linked Teams accounts of a person (after the
    flush's links): nothing is written for someone outside the programme, or erased since."""
    if not accounts:
        return set()
    rows = await conn.execute(select(Identity.workspace, Identity.user_id).where(
        Identity.platform == "teams",  # adapters.teams.port.PLATFORM (which imports this)
        tuple_(Identity.workspace, Identity.user_id).in_(sorted(accounts))))
    return {(w, u) for w, u in rows.all()}


async def _write(conn: AsyncConnection, batch: Held) -> int:
    """The held rows, in the people flush's transaction: laid down shuffled, undated, then
    every row of both tables rewritten (one `xmin` for all)."""
    convs = list(batch.conversations.values())
    alive = await _linked(conn, {(c["tenant_id"], c["user_id"]) for c in convs}
                          | set(batch.members))
    convs = [c for c in convs if (c["tenant_id"], c["user_id"]) in alive]
    members = [m for k, m in batch.members.items() if k in alive]
    _shuffle(convs)
    _shuffle(members)
    dialect = conn.dialect.name
    for rows, model, key in ((convs, TeamsConversation, ["conversation_id"]),
                             (members, TeamsMember, ["tenant_id", "user_id"])):
        if not rows:
            continue
        stmt = upsert(dialect, model)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=key,
            set_={c: getattr(stmt.excluded, c) for c in rows[0] if c not in key}), rows)
    current = [{"t": c["tenant_id"], "u": c["user_id"], "c": c["conversation_id"]}
               for c in convs if c["installed"]]  # a chat removed since supersedes nothing
    if current:
        await conn.execute(_SUPERSEDE, current)
    if convs:
        await conn.execute(_TOUCH_CONVERSATIONS)
    if members:
        await conn.execute(_TOUCH_MEMBERS)
    return len(convs) + len(members)


people_held.ALSO.append(people_held.Also(_take, _write, _keep))


async def forget(db: Database, conversation_id: str) -> None:
    """The app was removed from a conversation: keep the row, stop using it (a held one
    is written so by the flusher)."""
    h = held.get(db)
    kept = h.conversations.get(base_conversation_id(conversation_id)) if h else None
    if kept is not None:
        kept["installed"] = False
    async with db.session() as s:
        row = await s.get(TeamsConversation, base_conversation_id(conversation_id))
        if row is not None:
            row.installed = False


def _member_values(tenant: str, account: dict[str, Any], team_id: str | None,
                   day: datetime | None) -> dict[str, Any] | None:
    uid = account.get("id")
    if not uid:
        return None
    email = account.get("email") or account.get("userPrincipalName")
    return {
        "tenant_id": tenant, "user_id": str(uid),
        "aad_object_id": account.get("aadObjectId") or account.get("aad_object_id"),
        "email": str(email).lower() if email else None,
        "name": str(account.get("name") or "")[:200],
        "team_id": team_id,
        "updated_at": day,
    }


async def remember_member(
    db: Database, tenant: str, account: dict[str, Any], now: datetime, team_id: str | None = None
) -> None:
    """Store a member read from a roster (a directory sync, not anyone's message)."""
    values = _member_values(tenant, account, team_id, day_of(now))
    if values is not None:
        await _upsert(db, TeamsMember, (tenant, values["user_id"]), values)


def hold_member(db: Database, tenant: str, account: dict[str, Any]) -> None:
    """A sender's member row, looked up at their activity: held, written undated by the
    flusher, for a linked account only (N21)."""
    values = _member_values(tenant, account, None, None)
    if values is not None and _fits(values, TeamsMember):
        held(db).members[(tenant, values["user_id"])] = values


async def conversation(db: Database, conversation_id: str) -> TeamsConversation | None:
    cid = base_conversation_id(conversation_id)
    h = held.get(db)
    if h and cid in h.conversations:
        return _row(h.conversations[cid], TeamsConversation)
    async with db.session() as s:
        return await s.get(TeamsConversation, cid)


async def personal(db: Database, tenant: str, user_id: str) -> TeamsConversation | None:
    h = held.get(db)
    mine = {c["conversation_id"]: c for c in (h.conversations.values() if h else ())
            if c["tenant_id"] == tenant and c["user_id"] == user_id}
    for c in mine.values():
        if c["installed"]:
            return _row(c, TeamsConversation)  # the newest personal chat, held
    async with db.session() as s:
        stored = (await s.execute(
            select(TeamsConversation)
            .where(TeamsConversation.tenant_id == tenant, TeamsConversation.user_id == user_id,
                   TeamsConversation.kind == "personal")
            .order_by(TeamsConversation.installed.desc(),
                      TeamsConversation.updated_at.desc().nulls_last())
            .limit(1)
        )).scalar_one_or_none()
    if stored is not None and stored.conversation_id in mine:
        return _row(mine[stored.conversation_id], TeamsConversation)  # as held: removed since
    if stored is None and mine:
        return _row(next(reversed(mine.values())), TeamsConversation)
    return stored


async def any_in_tenant(db: Database, tenant: str) -> TeamsConversation | None:
    """The newest reference in a tenant: its service URL and bot account serve new chats."""
    async with db.session() as s:
        q = (select(TeamsConversation)
             .order_by(TeamsConversation.updated_at.desc().nulls_last()).limit(1))
        if tenant:
            q = q.where(TeamsConversation.tenant_id == tenant)
        found = (await s.execute(q)).scalar_one_or_none()
    h = held.get(db)
    if found is None and h:
        for c in h.conversations.values():
            if not tenant or c["tenant_id"] == tenant:
                return _row(c, TeamsConversation)
    return found


async def member(db: Database, tenant: str, user_id: str) -> TeamsMember | None:
    h = held.get(db)
    if h and (tenant, user_id) in h.members:
        return _row(h.members[(tenant, user_id)], TeamsMember)
    async with db.session() as s:
        return await s.get(TeamsMember, (tenant, user_id))


async def member_by_email(db: Database, email: str) -> TeamsMember | None:
    key = email.strip().lower()
    async with db.session() as s:
        found = (await s.execute(
            select(TeamsMember).where(TeamsMember.email == key)
            .order_by(TeamsMember.updated_at.desc().nulls_last()).limit(1)
        )).scalar_one_or_none()
    h = held.get(db)
    if found is None and h:
        for m in h.members.values():
            if m["email"] == key:
                return _row(m, TeamsMember)
    return found
