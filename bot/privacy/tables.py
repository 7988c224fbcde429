"""Which platform accounts have been shown the privacy notice (on first contact)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class NoticeShown(Base):
    """One platform account was shown the privacy notice, on this day."""

    __tablename__ = "privacy_notices_shown"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
