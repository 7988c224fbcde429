"""The families feature's tables: the answers beside each public item, sealed contact requests,
the per-address rate counters (keyed hashes, kept a day) and the form tokens already used.

The item itself is a `feedback_items` row (source "families" or "young_people"), so themes,
statuses, safeguarding alerts and "you said, we did" work as they do for staff feedback.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime

NO_ROWID = {"sqlite_with_rowid": False}


class FamilyAnswer(Base):
    """What the form said, field by field (the item's text joins them for reading in chat)."""

    __tablename__ = "family_answers"
    __table_args__ = NO_ROWID

    item_id: Mapped[str] = mapped_column(
        ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True)
    audience: Mapped[str] = mapped_column(String(16))  # families | young_people
    rating: Mapped[int | None] = mapped_column(Integer, default=None)  # 1-5, or not given
    working: Mapped[str] = mapped_column(Text, default="")
    better: Mapped[str] = mapped_column(Text, default="")
    lang: Mapped[str] = mapped_column(String(8), default="en")


class FamilyContact(Base):
    """A request to be contacted: name and phone or email, sealed under a derived key.

    Deleted (overwritten first) when the change team marks the contact made, or on
    `delete_after` (the retention period for family contact details).
    """

    __tablename__ = "family_contacts"
    __table_args__ = NO_ROWID

    item_id: Mapped[str] = mapped_column(
        ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    delete_after: Mapped[date] = mapped_column(Date, index=True)


class FamilyRate(Base):
    """Submissions per address on one day: ONE row per day, every address's count under a hash
    keyed by a derived key and the day, sealed under the server key and padded to a size class
    (bot/feedback/sealed.py, N40).

    Written only in batches by each process's flusher (bot/feedback/counts.py), never in the
    transaction that stores an item."""

    __tablename__ = "family_rate"
    __table_args__ = NO_ROWID

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stamp: Mapped[str] = mapped_column(String(16))  # random, new at every write
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class FamilyFormUse(Base):
    """A form token already used: a replayed form is recognised, never stored twice.

    Written with the item (a replay must be refused at once); its key names nobody."""

    __tablename__ = "family_form_uses"
    __table_args__ = NO_ROWID

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # keyed hash of the nonce
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
