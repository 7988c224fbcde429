"""Reports keep one table: digests already posted."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime


class LeadershipDigest(Base):
    """A leadership digest already posted (one row per week), so a restart never posts twice."""

    __tablename__ = "report_digests"

    week_of: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
