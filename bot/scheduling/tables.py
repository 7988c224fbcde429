"""The scheduler's memory: each job's last run and outcome, and occurrences done or skipped."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime


class JobRecord(Base):
    """One row per scheduled job (a feature's ticker): when it last ran and how it went."""

    __tablename__ = "scheduler_jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # ok | error | caught-up (first run after a downtime gap) | skipped (missed beyond grace)
    last_outcome: Mapped[str] = mapped_column(String(16), default="")
    last_count: Mapped[int] = mapped_column(Integer, default=0)
    # The last timetable occurrence handled (timed jobs only), run or skipped.
    last_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    instance: Mapped[str] = mapped_column(String(100), default="")


class Occurrence(Base):
    """One due item of a job (a reminder, a check-in) that was done or skipped, at most once."""

    __tablename__ = "scheduler_occurrences"

    job: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # done | skipped
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
