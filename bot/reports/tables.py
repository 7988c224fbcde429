"""Reports keep one table (digests already posted) and two read indexes on pulse answers."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index
from sqlalchemy.orm import Mapped, mapped_column

import bot.pulse.tables as _pulse
from storage.base import Base, UTCDateTime


class LeadershipDigest(Base):
    """A leadership digest already posted (one row per week), so a restart never posts twice."""

    __tablename__ = "report_digests"

    week_of: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Covering indexes for the results queries: SQL then groups a round's answers by team, role,
# question and value (and counts respondents per team and role) by walking an index in order,
# instead of visiting a million table rows at random. Reports own them; the pulse feature's
# table is otherwise untouched.
_A = _pulse.PulseAnswer
REPORT_VALUES_INDEX = Index(
    "ix_pulse_answers_report_values",
    _A.round_id, _A.team_id, _A.role, _A.question_id, _A.value, _A.choice,
)
REPORT_RESPONDENTS_INDEX = Index(
    "ix_pulse_answers_report_respondents", _A.round_id, _A.team_id, _A.role, _A.response_key,
)
