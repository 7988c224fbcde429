"""Slack installations (one bot token per workspace, sealed) and OAuth state, in the project database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime


class SlackInstallation(Base):
    """A workspace (or org) that installed the app. The token is encrypted with the server key."""

    __tablename__ = "slack_installations"

    # "" rather than NULL so the pair can be a primary key on every backend.
    enterprise_id: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    team_id: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    app_id: Mapped[str | None] = mapped_column(String(32))
    team_name: Mapped[str | None] = mapped_column(String(200))
    bot_id: Mapped[str] = mapped_column(String(32))
    bot_user_id: Mapped[str] = mapped_column(String(32))
    bot_scopes: Mapped[str] = mapped_column(Text, default="")
    bot_token_sealed: Mapped[str] = mapped_column(Text)
    bot_refresh_token_sealed: Mapped[str | None] = mapped_column(Text)
    bot_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_enterprise_install: Mapped[bool] = mapped_column(Boolean, default=False)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlackOAuthState(Base):
    """A one-time `state` value for the OAuth redirect (CSRF protection)."""

    __tablename__ = "slack_oauth_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SlackPendingForm(Base):
    """A form offered by an "Open the form" button (a DM carries no trigger to open a modal
    with; a missed trigger is offered ephemerally, adapters/slack/forms.py), kept here rather than in one process's memory: a second tap after cancelling, a
    restart or another replica opens it too. The modal is sealed with the server key (it may
    hold what the person typed); the row names nobody and goes when it expires."""

    __tablename__ = "slack_pending_forms"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    view_sealed: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
