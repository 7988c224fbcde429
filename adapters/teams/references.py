"""Stored conversation references and members: how the bot reaches people later."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
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


async def remember(db: Database, activity: dict[str, Any], now: datetime) -> None:
    """Store (or refresh) the reference of the conversation an activity came from."""
    conv = activity.get("conversation") or {}
    if not conv.get("id") or not activity.get("serviceUrl"):
        return
    cid = base_conversation_id(str(conv["id"]))
    kind = kind_of(activity)
    team = (activity.get("channelData") or {}).get("team") or {}
    user = activity.get("from") or {}
    user_id = str(user.get("id")) if kind == "personal" and user.get("id") else None
    async with db.session() as s:
        known = await s.get(TeamsConversation, cid)
        if (known is not None and known.installed and known.kind == kind
                and known.service_url == str(activity["serviceUrl"]) and known.user_id == user_id):
            # Already reachable the same way: write nothing, so a person's row does not change
            # (and so does not date) each time they tap an anonymous answer.
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
