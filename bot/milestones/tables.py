"""Tables for milestones, their owners, updates, check-ins, early wins and weekly digests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, new_id


class Milestone(Base):
    """One step on the roadmap. `file_values` is what the programme file last said about it."""

    __tablename__ = "milestones"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # slug
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)
    due: Mapped[date] = mapped_column(Date)
    cadence: Mapped[str] = mapped_column(String(16), default="fortnightly")
    grace_days: Mapped[int] = mapped_column(Integer, default=2)
    status: Mapped[str] = mapped_column(String(16), default="not_started")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    theme_id: Mapped[str | None] = mapped_column(String(64), default=None)
    early_win_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    from_file: Mapped[bool] = mapped_column(Boolean, default=False)
    file_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Start of check-in cycles, set when the scheduler first sees the milestone (file loads
    # have no clock of their own); the next check-in is due a cadence after the latest of this,
    # the last update and the last check-in.
    anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Stale: a check-in went unanswered after its reminder; cleared by the next update.
    stale_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stale_told_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Who is still to be told it went stale, once telling began (None: not begun): a platform
    # that refuses the app part-way leaves only them for the next tick, so nobody hears twice.
    stale_tell: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # Change-team members still to be offered an early-win draft (sent in their working hours).
    offer_to: Mapped[list[str]] = mapped_column(JSON, default=list)


class MilestoneOwner(Base):
    __tablename__ = "milestone_owners"

    milestone_id: Mapped[str] = mapped_column(
        ForeignKey("milestones.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class MilestoneUpdate(Base):
    """Who said what about a milestone, and when (status, progress, note)."""

    __tablename__ = "milestone_updates"
    # Each milestone's newest update, found by one probe (the roadmap read asks for it).
    __table_args__ = (Index("ix_milestone_updates_milestone_at", "milestone_id", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    milestone_id: Mapped[str] = mapped_column(
        ForeignKey("milestones.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer)
    prev_status: Mapped[str] = mapped_column(String(16))
    prev_progress: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="chat")  # chat | checkin | file


class MilestoneCheckin(Base):
    """One owner's check-in for one cycle: due, sent, reminded, then answered or expired."""

    __tablename__ = "milestone_checkins"
    __table_args__ = (UniqueConstraint("milestone_id", "person_id", "cycle_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    milestone_id: Mapped[str] = mapped_column(
        ForeignKey("milestones.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str] = mapped_column(String(32))
    cycle_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="due", index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Where the card went, to edit it into a confirmation: [conversation json, message id].
    cards: Mapped[list[Any]] = mapped_column(JSON, default=list)


class EarlyWin(Base):
    """A visible improvement staff should hear about; delivered when its milestone is done."""

    __tablename__ = "early_wins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    theme_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="planned")  # planned | delivered
    delivered_on: Mapped[date | None] = mapped_column(Date, default=None)
    position: Mapped[int] = mapped_column(Integer, default=0)
    file_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class RoadmapDigest(Base):
    """A weekly digest already posted (one row per week), so a restart never posts twice."""

    __tablename__ = "milestone_digests"

    week_of: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
