"""Teams tables: how to reach each conversation again, and who is in which team."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.privacy.personal import PersonalRows, Rule, register, table_of
from storage.base import Base, UTCDateTime


class TeamsConversation(Base):
    """A stored conversation reference (personal chat, group chat, team channel)."""

    __tablename__ = "teams_conversations"

    conversation_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True, default="")
    kind: Mapped[str] = mapped_column(String(16), default="personal")
    service_url: Mapped[str] = mapped_column(String(300))
    user_id: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    team_id: Mapped[str | None] = mapped_column(String(300), default=None)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    installed: Mapped[bool] = mapped_column(default=True)
    # A channel's or group chat's day; None for a personal chat (written by the flusher).
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class TeamsMember(Base):
    """A Teams user seen in a conversation or a team roster (for email lookups)."""

    __tablename__ = "teams_members"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    aad_object_id: Mapped[str | None] = mapped_column(String(64), default=None)
    email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    team_id: Mapped[str | None] = mapped_column(String(300), default=None)
    # A roster sync's day; None for a sender looked up at their message (held, then written).
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# What erasure and subject access find about a person here (bot/privacy/personal.py).
register(PersonalRows("teams", (
    Rule(table_of(TeamsConversation), "user_id", "user", "delete",
         "how to reach them in Microsoft Teams"),
    Rule(table_of(TeamsMember), "user_id", "user", "delete", "their Microsoft Teams membership"),
    Rule(table_of(TeamsMember), "email", "email", "delete", "their Microsoft Teams membership"),
)))
