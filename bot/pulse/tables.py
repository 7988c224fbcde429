"""Tables for pulse surveys: definitions, rounds, who took part, and the (anonymous) answers.

The anonymity rule lives in the shape of these tables: `pulse_answers` has no person id, no
timestamp and random keys; who took part is in `pulse_participation`, with nothing that points
at an answer row. Only surveys in `attributed` mode also write `pulse_attributions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, new_id

KINDS = ("likert5", "enps", "choice", "yesno", "text")


class PulseSurvey(Base):
    """A survey: what is asked, of whom, how often, and how answers are kept."""

    __tablename__ = "pulse_surveys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # slug
    title: Mapped[str] = mapped_column(String(200))
    intro: Mapped[str] = mapped_column(Text, default="")
    # {"everyone": true} or {"teams": [...], "roles": [...]} (either matches)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {"every": weekly|fortnightly|monthly|cron, "day": ..., "time": "HH:MM", "cron": ...}
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    remind_after_min: Mapped[int] = mapped_column(Integer)
    close_after_min: Mapped[int] = mapped_column(Integer)
    anonymity: Mapped[str] = mapped_column(String(16), default="anonymous")
    results_url: Mapped[str | None] = mapped_column(String(500), default=None)
    # No rounds for fire times before this (None: any fire time whose window is still open).
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # False once removed from the programme file (its rounds stay for the reports).
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="programme")  # programme | chat


class PulseQuestion(Base):
    __tablename__ = "pulse_questions"
    __table_args__ = (UniqueConstraint("survey_id", "key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("pulse_surveys.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))  # stable id from the programme file
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # one of KINDS
    text: Mapped[str] = mapped_column(Text)
    # choice: {"choices": [...]}; likert5/enps: {"low": label, "high": label}
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class PulseRound(Base):
    """One sending of a survey; its question list is fixed when it opens."""

    __tablename__ = "pulse_rounds"
    __table_args__ = (
        UniqueConstraint("survey_id", "number"),
        # Two scheduler replicas cannot both open the round for the same fire time.
        UniqueConstraint("survey_id", "opens_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("pulse_surveys.id", ondelete="CASCADE"),
                                           index=True)
    number: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    anonymity: Mapped[str] = mapped_column(String(16), default="anonymous")
    question_ids: Mapped[list[str]] = mapped_column(JSON)


class PulseParticipation(Base):
    """Who was asked in a round and how far they got: never which answers are theirs."""

    __tablename__ = "pulse_participation"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"),
                                           primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)  # snapshot at opening
    invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    reminded: Mapped[bool] = mapped_column(Boolean, default=False)
    # Copied from pulse_completions in batches (at the reminder and at closing), never at the
    # moment someone answers.
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    # The live survey message in their DM ({"conversation": ..., "message_id": ...}).
    message: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class PulseAnswer(Base):
    """One answer. No person id, no time; `response_key` is a keyed hash per person and round."""

    __tablename__ = "pulse_answers"
    __table_args__ = (
        # One answer per person, question and round. Key before question, so its index also
        # finds one respondent's answers (every tap reads them back).
        UniqueConstraint("round_id", "response_key", "question_id"),
        # SQLite keeps WITHOUT ROWID tables in key order (random here), not in insert order.
        {"sqlite_with_rowid": False},
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"))
    question_id: Mapped[str] = mapped_column(ForeignKey("pulse_questions.id", ondelete="CASCADE"))
    response_key: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)
    role: Mapped[str] = mapped_column(String(32))
    value: Mapped[int | None] = mapped_column(Integer, default=None)
    choice: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)


class PulseCompletion(Base):
    """A respondent (by response key only) reached the end of a round's questions.

    Kept by key, not on the participation row: writing a person's row at the moment they
    answer would let a database reader pair it with the answer rows written just before.
    """

    __tablename__ = "pulse_completions"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    response_key: Mapped[str] = mapped_column(String(64), primary_key=True)


class PulseAttribution(Base):
    """Attributed surveys only: whose response key is whose, per round."""

    __tablename__ = "pulse_attributions"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    response_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
