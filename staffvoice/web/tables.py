"""Web sign-in sessions and one-time demo sign-in links.

Neither keeps a token a database reader could use: rows are keyed by a keyed hash of the
secret in the cookie or link (bot/secrets.keyed_hash), so a dump cannot be replayed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.privacy.personal import PersonalRows, Rule, register, table_of
from storage.base import Base, UTCDateTime


class WebSession(Base):
    """One signed-in browser: deleted at sign-out, refused after `expires_at` or when idle."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # keyed hash of the cookie's id
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # slack | entra | link
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When the audit trail last recorded this session following a live stream: shared by every
    # replica, so a session's viewing is one entry an hour however many serve it.
    stream_audited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class WebLoginLink(Base):
    """A one-time sign-in link printed by `staffvoice web login-link` (loopback demos only)."""

    __tablename__ = "web_login_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # keyed hash of the link token
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# What erasure and subject access find about a person here (bot/privacy/personal.py).
register(PersonalRows("web", (
    Rule(table_of(WebSession), "person_id", "person", "delete",
         "their signed-in dashboard sessions"),
    Rule(table_of(WebLoginLink), "person_id", "person", "delete",
         "one-time dashboard sign-in links"),
)))
