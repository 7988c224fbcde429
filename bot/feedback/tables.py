"""Feedback tables. None holds the author's person id, platform id or conversation, nor a precise time.

Keys are random (storage.base.new_id); dates are days. On SQLite the tables are WITHOUT ROWID,
so rows are kept in (random) key order rather than a hidden rowid that follows insertion order. The only way back to an author is a
sealed route in `feedback_handles`, destroyed when the author revokes it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, new_id

NO_ROWID = {"sqlite_with_rowid": False}


class FeedbackItem(Base):
    """One piece of anonymous feedback."""

    __tablename__ = "feedback_items"
    __table_args__ = NO_ROWID

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    day: Mapped[date] = mapped_column(Date, index=True)
    theme_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Safeguarding categories the text matched (child_risk, self_harm, colleague_allegation).
    concerns: Mapped[list[str]] = mapped_column(JSON, default=list)
    response_id: Mapped[str | None] = mapped_column(
        ForeignKey("feedback_responses.id", ondelete="SET NULL"), default=None
    )
    # Where it came from: "staff" (chat), or a public page ("families", "young_people").
    source: Mapped[str] = mapped_column(String(16), default="staff", server_default="staff",
                                        index=True)
    # Readable by the change team: set for all of a release's items in one transaction at a
    # release moment (bot/feedback/release.py), urgent items too (their safeguarding leads read
    # them before: bot/feedback/service.py `readable`, N37). Undated.
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What the safeguarding leads read where it differs from what everyone else reads (N37):
    # `day` is the day of the release an item goes with, urgent or not (N29), and `lead_day`
    # an urgent item's day sent, which its leads' alert told them; `lead_concerns` the item's
    # concerns with those of an author's urgent answer still waiting for its release (the
    # item turns urgent for everyone else at that release). None where the same.
    lead_day: Mapped[date | None] = mapped_column(Date, default=None)
    lead_concerns: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)


class FeedbackHandle(Base):
    """The sealed route back to an item's author, present only while replies are allowed."""

    __tablename__ = "feedback_handles"
    __table_args__ = NO_ROWID

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(
        ForeignKey("feedback_items.id", ondelete="CASCADE"), unique=True
    )
    # keyed_hash(secret, "feedback-handle", token): finds the handle from the author's buttons.
    token_key: Mapped[str] = mapped_column(String(64), unique=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class FeedbackMessage(Base):
    """A message in the thread under an item: the change team's replies and the author's answers."""

    __tablename__ = "feedback_messages"
    __table_args__ = NO_ROWID

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(ForeignKey("feedback_items.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(16))  # "team" or "author"
    # Who in the change team wrote it (never set for the author).
    team_person_id: Mapped[str | None] = mapped_column(String(32), default=None)
    day: Mapped[date] = mapped_column(Date)
    text: Mapped[str] = mapped_column(Text)
    # The change team's replies are released at once; an author's answer at the next release
    # (bot/feedback/release.py), an urgent one too (its leads read it at once: N37); a lead's
    # reply to an item everyone else cannot read yet waits with it.
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # An urgent answer's concerns, applied to its item at the answer's release; and the day
    # the leads were told (`day` is its release's day, as for every waiting message, N29).
    concerns: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    lead_day: Mapped[date | None] = mapped_column(Date, default=None)


class FeedbackRelease(Base):
    """The last release moment applied (one row, `name` "feedback"): a moment of the
    programme's release schedule, never an item's time. Its update and the items it releases
    are one transaction, so two processes never release the same moment twice."""

    __tablename__ = "feedback_releases"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    moment: Mapped[datetime] = mapped_column(UTCDateTime)
    # Row `reach` alone: how many safeguarding leads could be reached, as the change team is
    # told it (bot/feedback/release.py `leads_reach`), taken at a release moment after which no
    # urgent thing waits: a lead found unreachable by an urgent alert said so at its minute.
    reachable: Mapped[int | None] = mapped_column(Integer, default=None)
    leads: Mapped[int | None] = mapped_column(Integer, default=None)


class FeedbackReleaseSender(Base):
    """Who waits for a listing's next release: ONE row per listing, its generation (the moment
    it last released) and the keyed hashes of the people waiting, sealed and padded to a size
    class (bot/feedback/sealed.py), so a dump without the server key says nothing of how many
    people wait (N40). Written only by the flusher, deleted when the listing is released
    (bot/feedback/senders.py, docs/invariants.md N25)."""

    __tablename__ = "feedback_release_senders"
    __table_args__ = NO_ROWID

    listing: Mapped[str] = mapped_column(String(16), primary_key=True)
    gen: Mapped[datetime] = mapped_column(UTCDateTime)
    stamp: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class FeedbackAlert(Base):
    """One urgent item to one safeguarding lead: the ledger that makes the DM go exactly once."""

    __tablename__ = "feedback_alerts"
    __table_args__ = NO_ROWID

    item_id: Mapped[str] = mapped_column(
        ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the lead, not the author
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Claimed by a sender until then (no row lock is held while it talks to the platform).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class FeedbackDayKey(Base):
    """The day's own secret for the daily counters, sealed under the server key.

    Destroyed with the day's counters, so no key, the server key included, links a past day's
    counter (in a backup, say) to a person.
    """

    __tablename__ = "feedback_day_keys"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class FeedbackDailyCount(Base):
    """Submissions per person on one day: ONE row per day, every person's count under a hash
    keyed by the day's secret, sealed under the server key and padded to a size class
    (bot/feedback/sealed.py, N40); deleted after the day.

    Written only in batches by each process's flusher (bot/feedback/counts.py), never in the
    transaction that stores an item."""

    __tablename__ = "feedback_daily_counts"
    __table_args__ = NO_ROWID

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stamp: Mapped[str] = mapped_column(String(16))  # random, new at every write
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class FeedbackResponse(Base):
    """A published "you said, we did" for a theme."""

    __tablename__ = "feedback_responses"
    __table_args__ = NO_ROWID

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    theme_id: Mapped[str | None] = mapped_column(String(64), default=None)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    day: Mapped[date] = mapped_column(Date)
    published_by: Mapped[str | None] = mapped_column(String(32), default=None)
    broadcast: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
