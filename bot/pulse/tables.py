"""Tables for pulse surveys: definitions, rounds, who took part, and the (anonymous) answers.

The anonymity rules live in the shape of these tables (docs/invariants.md):

- While a round is open, each answer waits in `pulse_pending`, sealed under the round's own
  secret (`pulse_round_keys`, itself sealed under the server key) and keyed by a hash under that
  secret: a database reader sees neither values nor people, only opaque keys.
- When the round closes, in one transaction: answers become counts per reporting cell
  (`pulse_tallies`, `pulse_cells`), comments are written in shuffled order under a team of at
  least the comment threshold (`pulse_comments`), and the pending answers, completions,
  participation and the round secret are deleted. No row then links a closed round to a person,
  and no stored team or role is shared by fewer than k people who were asked (bot/pulse/cells.py).
- In the same transaction the same counts are also kept summed per group of cells
  (`pulse_summaries`, bot/pulse/summary.py), so reports read a few rows per round, however many
  answered. Every figure there is a sum of whole cells: it tells nothing the cells do not.
- Only surveys in `attributed` mode keep answers by person (`pulse_attributed_answers`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
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
    # Totals kept when the round closes (participation is deleted then): numbers, never who.
    n_asked: Mapped[int | None] = mapped_column(Integer, default=None)
    n_invited: Mapped[int | None] = mapped_column(Integer, default=None)
    n_finished: Mapped[int | None] = mapped_column(Integer, default=None)
    n_respondents: Mapped[int | None] = mapped_column(Integer, default=None)


class PulseParticipation(Base):
    """Who was asked in a round and how far they got: never which answers are theirs.

    Kept only while the round is open (for invitations and the reminder); deleted at close.
    """

    __tablename__ = "pulse_participation"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"),
                                           primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)  # snapshot at opening
    # The reporting cell their answers are counted under (bot/pulse/cells.py), fixed at opening.
    cell_team: Mapped[str | None] = mapped_column(String(64), default=None)
    cell_role: Mapped[str] = mapped_column(String(32), default="*")
    invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    reminded: Mapped[bool] = mapped_column(Boolean, default=False)
    # Copied from pulse_completions in batches (at the reminder and at closing), never at the
    # moment someone answers.
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    # The live survey message in their DM ({"conversation": ..., "message_id": ...}).
    message: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class PulseRoundKey(Base):
    """An open round's own secret, sealed under the server key; deleted when the round closes."""

    __tablename__ = "pulse_round_keys"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class PulsePending(Base):
    """One answer of an open round, sealed under the round secret until the round closes.

    No person id, no time, no team or role in clear; `response_key` is a hash of the person
    under the round secret, so the same person's taps update one row per question.
    """

    __tablename__ = "pulse_pending"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    response_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class PulseCompletion(Base):
    """A respondent (by response key only) reached the end of an open round's questions.

    Kept by key, not on the participation row: writing a person's row at the moment they
    answer would let a database reader pair it with the answers written just before.
    """

    __tablename__ = "pulse_completions"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    response_key: Mapped[str] = mapped_column(String(64), primary_key=True)


class PulseCell(Base):
    """A closed round's reporting cell: how many were asked in it and how many answered."""

    __tablename__ = "pulse_cells"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          index=True)
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)
    role: Mapped[str] = mapped_column(String(32))
    invited: Mapped[int] = mapped_column(Integer)
    respondents: Mapped[int] = mapped_column(Integer)


class PulseTally(Base):
    """A closed round's answers as counts: how many in a cell gave one answer to one question."""

    __tablename__ = "pulse_tallies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          index=True)
    question_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)
    role: Mapped[str] = mapped_column(String(32))
    value: Mapped[int | None] = mapped_column(Integer, default=None)
    choice: Mapped[str | None] = mapped_column(String(200), default=None)
    n: Mapped[int] = mapped_column(Integer)


class PulseSummary(Base):
    """A closed round's counts summed for reports, one row per question (and one for the people).

    `counts` is JSON (bot/pulse/summary.py): answers per reporting team (roles together), per
    kept role (teams together) and for everyone, and how many answered in each cell. Only sums
    of whole cells, so nothing here narrows an answer below the cells' k people asked.
    """

    __tablename__ = "pulse_summaries"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    question_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for the people
    counts: Mapped[str] = mapped_column(Text)


class PulseComment(Base):
    """A closed round's comment, under a team with at least the comment threshold asked.

    Written at close in shuffled order with random keys, all in one transaction.
    """

    __tablename__ = "pulse_comments"
    __table_args__ = {"sqlite_with_rowid": False}

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          index=True)
    question_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(64), default=None)
    text: Mapped[str] = mapped_column(Text)


class PulseAttributedAnswer(Base):
    """Attributed surveys only (labelled so to every respondent): whose answer is whose."""

    __tablename__ = "pulse_attributed_answers"

    round_id: Mapped[str] = mapped_column(ForeignKey("pulse_rounds.id", ondelete="CASCADE"),
                                          primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"),
                                           primary_key=True)
    question_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int | None] = mapped_column(Integer, default=None)
    choice: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
