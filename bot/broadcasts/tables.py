"""Tables for broadcasts: the broadcast itself, the per-recipient delivery ledger, celebrations.

The ledger is shared: a row is one broadcast message (`kind` "broadcast", `broadcast_id` set) or
a message of another kind that a feature registers with `bot.broadcasts.ledger.register_kind`
(pulse invitations: `kind` "pulse", `subject` the round's id). Every kind is drained by the same
senders under the same workspace leases and rate limits, exactly once per row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, new_id

# Broadcast states: draft -> (scheduled ->) sending -> done; cancelled; retracting -> retracted.
# Delivery states: queued, sending, sent, failed (will retry), final_failed, skipped.
DELIVERY_STATES = ("queued", "sending", "sent", "failed", "final_failed", "skipped")


class Broadcast(Base):
    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    author_person_id: Mapped[str] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    link_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    link_label: Mapped[str] = mapped_column(String(80), default="")
    celebrate: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"kind": "dm"|"channels", "everyone": bool, "teams": [...], "roles": [...], "channels": [...]}
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Where the author's preview card lives, so confirm/cancel can edit it.
    preview_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Delivery(Base):
    """One recipient of one message: a person's DM or a channel. Its id is the idempotency key."""

    __tablename__ = "broadcast_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "recipient"),
        # One row per person per subject (a pulse round): a second enqueue cannot add a twin.
        UniqueConstraint("subject", "person_id"),
        Index("ix_broadcast_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # "broadcast", or a kind registered by another feature ("pulse").
    kind: Mapped[str] = mapped_column(String(16), default="broadcast",
                                      server_default="broadcast")
    broadcast_id: Mapped[str | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True, default=None
    )
    # What a row of another kind delivers (a pulse round's id); its feature deletes the rows.
    subject: Mapped[str | None] = mapped_column(String(32), default=None)
    # "person:<id>" or "channel:<platform:workspace/channel>"
    recipient: Mapped[str] = mapped_column(String(300))
    person_id: Mapped[str | None] = mapped_column(String(32), default=None)
    platform: Mapped[str | None] = mapped_column(String(16), default=None)
    workspace: Mapped[str | None] = mapped_column(String(64), default=None)
    user_id: Mapped[str | None] = mapped_column(String(128), default=None)
    conversation: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    message_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(String(300), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Retract: set when the delivered message was deleted (or found already gone).
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Working hours: a DM is held until the recipient's next working moment (None: due at
    # once). `hours` is their working pattern when queued, re-checked just before sending.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Celebration(Base):
    """One 'celebrate' tap per person per broadcast (the primary key makes a second tap a no-op)."""

    __tablename__ = "broadcast_celebrations"

    broadcast_id: Mapped[str] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkspaceLease(Base):
    """Which sender may send to a workspace now: each replica paces only its own sends, so
    one replica at a time per workspace keeps them together within the platform's limit."""

    __tablename__ = "broadcast_workspace_leases"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime)
