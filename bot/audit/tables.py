"""Tables for the audit trail: the hash-chained entries, and who each actor key stands for.

An entry names its actor (and the person an action was about) only by an opaque key in
`audit_actors`. The chain is computed over the key, so erasing a person deletes their
`audit_actors` row and leaves every entry, and the chain, intact: the entries then say
"an erased person". Entries are append-only: the product has no way to change or delete
one, and the migration adds database triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime


class AuditEntry(Base):
    """One recorded view or administrative action; `hash` chains it to the one before."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # to the minute
    actor: Mapped[str] = mapped_column(String(32), index=True)  # audit_actors.key
    surface: Mapped[str] = mapped_column(String(32))  # slack | teams | console | web | cli | scheduler
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str | None] = mapped_column(String(32), default=None)  # audit_actors.key
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Two writers reading the same head cannot both append after it: the loser retries.
    prev: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditActor(Base):
    """Who an actor key stands for: a person (by id), or an operator at the shell."""

    __tablename__ = "audit_actors"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_id: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    label: Mapped[str] = mapped_column(String(320), default="")
