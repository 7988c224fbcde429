"""Stored conversation references and members: how the bot reaches people later."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, exists, literal, select, update
from sqlalchemy.exc import IntegrityError

from adapters.teams.tables import TeamsConversation, TeamsMember
from bot.core import day_of
from storage.db import Database

log = logging.getLogger("staffvoice.teams.references")


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
    """The fields of a Bot Framework conversation reference, from an inbound activity."""
    conv = dict(activity.get("conversation") or {})
    conv["id"] = base_conversation_id(str(conv.get("id", "")))
    return {
        "bot": activity.get("recipient") or {},
        "user": activity.get("from") or {},
        "conversation": conv,
        "channelId": activity.get("channelId", "msteams"),
        "serviceUrl": activity.get("serviceUrl", ""),
        "locale": activity.get("locale"),
    }


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


def _reference_key(activity: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    """(conversation id, kind, service URL, personal chat's user) as `remember` stores them."""
    conv = activity.get("conversation") or {}
    if not conv.get("id") or not activity.get("serviceUrl"):
        return None
    kind = kind_of(activity)
    user = activity.get("from") or {}
    user_id = str(user.get("id")) if kind == "personal" and user.get("id") else None
    return base_conversation_id(str(conv["id"])), kind, str(activity["serviceUrl"]), user_id


async def seen(db: Database, activity: dict[str, Any]) -> Seen:
    """Read what `remember` and the sender lookup need; raises when the database is away
    (the endpoint then answers 503 so the Bot Framework delivers the activity again)."""
    key = _reference_key(activity) or ("", "", "", None)
    sender = str((activity.get("from") or {}).get("id") or "")
    async with db.transaction() as conn:
        row = (await conn.execute(_SEEN, {
            "cid": key[0], "kind": key[1], "url": key[2], "uid": key[3],
            "tenant": tenant_of(activity), "member": sender,
        })).one()
    return Seen(bool(row.current) and key[0] != "",
                (row.email, row.name or "") if row.known is not None else None)


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
        async with db.session() as s:
            row = await s.get(TeamsConversation, cid)
            if (row is not None and row.installed and row.kind == kind
                    and row.service_url == str(activity["serviceUrl"])
                    and row.user_id == user_id):
                # Already reachable the same way: write nothing, so a person's row does not
                # change (and so does not date) each time they tap an anonymous answer.
                return
    await _upsert(db, TeamsConversation, (cid,), {
        "conversation_id": cid,
        "tenant_id": tenant_of(activity),
        "kind": kind,
        "service_url": str(activity["serviceUrl"]),
        "user_id": user_id,
        "team_id": team.get("id"),
        "reference": reference_of(activity),
        "installed": True,
        # The day only: a time per activity next to a user would date their taps.
        "updated_at": day_of(now),
    })
    if user_id is not None:
        await _supersede(db, cid, tenant_of(activity), user_id)


async def _supersede(db: Database, current: str, tenant: str, user_id: str) -> None:
    """A person has one personal chat with the bot: a newly seen one replaces the others.

    Teams keeps that chat's id, but the Microsoft 365 Agents Playground starts a new one each
    time it starts; writing to the old one would fail (404 ConversationNotFound)."""
    async with db.session() as s:
        await s.execute(
            update(TeamsConversation)
            .where(TeamsConversation.tenant_id == tenant, TeamsConversation.user_id == user_id,
                   TeamsConversation.kind == "personal",
                   TeamsConversation.conversation_id != current,
                   TeamsConversation.installed.is_(True))
            .values(installed=False)
        )


async def forget(db: Database, conversation_id: str) -> None:
    """The app was removed from a conversation: keep the row, stop using it."""
    async with db.session() as s:
        row = await s.get(TeamsConversation, base_conversation_id(conversation_id))
        if row is not None:
            row.installed = False


async def remember_member(
    db: Database, tenant: str, account: dict[str, Any], now: datetime, team_id: str | None = None
) -> None:
    uid = account.get("id")
    if not uid:
        return
    email = account.get("email") or account.get("userPrincipalName")
    values = {
        "tenant_id": tenant, "user_id": str(uid),
        "aad_object_id": account.get("aadObjectId") or account.get("aad_object_id"),
        "email": str(email).lower() if email else None,
        "name": str(account.get("name") or "")[:200],
        "team_id": team_id,
        "updated_at": day_of(now),
    }
    await _upsert(db, TeamsMember, (tenant, str(uid)), values)


async def conversation(db: Database, conversation_id: str) -> TeamsConversation | None:
    async with db.session() as s:
        return await s.get(TeamsConversation, base_conversation_id(conversation_id))


async def personal(db: Database, tenant: str, user_id: str) -> TeamsConversation | None:
    async with db.session() as s:
        return (await s.execute(
            select(TeamsConversation)
            .where(TeamsConversation.tenant_id == tenant, TeamsConversation.user_id == user_id,
                   TeamsConversation.kind == "personal")
            .order_by(TeamsConversation.installed.desc(), TeamsConversation.updated_at.desc())
            .limit(1)
        )).scalar_one_or_none()


async def any_in_tenant(db: Database, tenant: str) -> TeamsConversation | None:
    """The newest reference in a tenant: its service URL and bot account serve new chats."""
    async with db.session() as s:
        q = select(TeamsConversation).order_by(TeamsConversation.updated_at.desc()).limit(1)
        if tenant:
            q = q.where(TeamsConversation.tenant_id == tenant)
        return (await s.execute(q)).scalar_one_or_none()


async def member(db: Database, tenant: str, user_id: str) -> TeamsMember | None:
    async with db.session() as s:
        return await s.get(TeamsMember, (tenant, user_id))


async def member_by_email(db: Database, email: str) -> TeamsMember | None:
    async with db.session() as s:
        return (await s.execute(
            select(TeamsMember).where(TeamsMember.email == email.strip().lower())
            .order_by(TeamsMember.updated_at.desc()).limit(1)
        )).scalar_one_or_none()
