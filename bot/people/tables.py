"""Tables for people, teams, roles, platform identities and programme settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, new_id


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # slug from the programme
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), default=None)
    lead_person_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # Where the team came from: None or "programme" (the programme file), "import" (an HR
    # file), "slack" or "teams" (a directory sync). Only programme teams are exported.
    source: Mapped[str | None] = mapped_column(String(16), default=None)


# PostgreSQL pages of the two tables the held writes' flush rewrites whole (bot/people/held.py)
# keep room for a second version of every row: each row's new version stays in its page (a HOT
# update: no index entry; the next flush prunes the earlier one without VACUUM). Migration
# people_fillfactor.
REWRITTEN_WHOLE = {"postgresql_with": {"fillfactor": 45}}


class Person(Base):
    __tablename__ = "people"
    __table_args__ = REWRITTEN_WHOLE

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, default=None)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    tz: Mapped[str | None] = mapped_column(String(64), default=None)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), default=None)
    # Own working pattern for shift workers: {"days": [0..6], "start": "HH:MM", "end": "HH:MM"}
    work_pattern: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    from_programme: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where the person record comes from: "programme", "import" (an HR file), "slack" or
    # "teams" (a directory sync); None for someone only met in chat (in no source).
    source: Mapped[str | None] = mapped_column(String(16), default=None)
    # Status: None while they take part; the day they left (a leaver is kept for a grace period:
    # they stop being prompted, drop out of audiences, and are erased by bot/privacy later).
    left_on: Mapped[date | None] = mapped_column(Date, default=None)
    # Last day of a fixed-term or agency contract; from the day after, they count as left.
    ends_on: Mapped[date | None] = mapped_column(Date, default=None)


class PersonRole(Base):
    __tablename__ = "person_roles"

    person_id: Mapped[str] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_in_chat: Mapped[bool] = mapped_column(Boolean, default=False)


class Identity(Base):
    """One platform account of a person, and how to DM them."""

    __tablename__ = "identities"
    __table_args__ = REWRITTEN_WHOLE

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    dm: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    unreachable_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Setting(Base):
    """Programme-wide settings as JSON values (working hours, thresholds, themes...)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Theme(Base):
    __tablename__ = "themes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")


class PeopleRun(Base):
    """One applied HR import or directory sync: when, from where, and what changed (counts)."""

    __tablename__ = "people_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(16))  # import | slack | teams
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # applied | no changes | failed
    detail: Mapped[str] = mapped_column(String(300), default="")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
