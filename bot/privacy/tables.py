"""Which platform accounts have been shown the privacy notice (on first contact)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class NoticeShown(Base):
    """One platform account was shown the privacy notice. Undated, and written apart from
    the first message, in batches (bot/privacy/notice.py): a first message is often
    "feedback", so when it came would point at an item (docs/invariants.md, N18)."""

    __tablename__ = "privacy_notices_shown"
    # No rowid on SQLite: rows are stored in key order, never in the order accounts were told.
    __table_args__ = {"sqlite_with_rowid": False}

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
