"""Pulse surveys as data: definitions, rounds, participation and answers (reports read here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Text, bindparam, func, select, text, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.people.tables import Person, PersonRole, Team
from bot.pulse.definition import SurveyDef
from bot.pulse.tables import (
    PulseAnswer,
    PulseAttribution,
    PulseCompletion,
    PulseParticipation,
    PulseQuestion,
    PulseRound,
    PulseSurvey,
)
from bot.roles import CHANGE_TEAM, LEADER, PRACTITIONER, SAFEGUARDING_LEAD, TEAM_LEAD
from bot.secrets import keyed_hash
from storage.base import UTCDateTime, new_id
from storage.db import connection_of

# The respondent's main role on an answer row: one role, so roles cannot be combined to single
# someone out.
ROLE_ORDER = (CHANGE_TEAM, LEADER, SAFEGUARDING_LEAD, TEAM_LEAD, PRACTITIONER)


# -- read functions (the reports feature uses these) ---------------------------------------


async def surveys(s: AsyncSession, *, include_inactive: bool = False) -> list[PulseSurvey]:
    q = select(PulseSurvey).order_by(PulseSurvey.id)
    if not include_inactive:
        q = q.where(PulseSurvey.active.is_(True))
    return list((await s.execute(q)).scalars())


async def survey_by_id(s: AsyncSession, survey_id: str) -> PulseSurvey | None:
    return await s.get(PulseSurvey, survey_id)


async def rounds_of(s: AsyncSession, survey_id: str) -> list[PulseRound]:
    """Every round of a survey, oldest first."""
    q = select(PulseRound).where(PulseRound.survey_id == survey_id).order_by(PulseRound.number)
    return list((await s.execute(q)).scalars())


async def round_by_id(s: AsyncSession, round_id: str) -> PulseRound | None:
    return await s.get(PulseRound, round_id)


async def questions_of(s: AsyncSession, survey_id: str, *, include_inactive: bool = False
                       ) -> list[PulseQuestion]:
    """A survey's questions in the order they are asked."""
    q = select(PulseQuestion).where(PulseQuestion.survey_id == survey_id)
    if not include_inactive:
        q = q.where(PulseQuestion.active.is_(True))
    return list((await s.execute(q.order_by(PulseQuestion.position))).scalars())


async def questions_of_round(s: AsyncSession, rnd: PulseRound) -> list[PulseQuestion]:
    """The questions a round asked, in its order."""
    rows = {q.id: q for q in (await s.execute(
        select(PulseQuestion).where(PulseQuestion.id.in_(rnd.question_ids)))).scalars()}
    return [rows[i] for i in rnd.question_ids if i in rows]


async def open_round_of(s: AsyncSession, survey_id: str) -> PulseRound | None:
    q = (select(PulseRound).where(PulseRound.survey_id == survey_id, PulseRound.state == "open")
         .order_by(PulseRound.number.desc()).limit(1))
    return (await s.execute(q)).scalar_one_or_none()


async def latest_opening(s: AsyncSession, survey_id: str) -> datetime | None:
    """When the survey's newest round opened (None before the first)."""
    q = select(func.max(PulseRound.opens_at)).where(PulseRound.survey_id == survey_id)
    value = (await s.execute(q)).scalar_one_or_none()
    if isinstance(value, str):  # SQLite returns an aggregate as text, outside the column type
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


_LAST_CLOSED = (
    select(PulseRound.number, PulseRound.closes_at)
    .where(PulseRound.survey_id == bindparam("survey_id"), PulseRound.state == "closed")
    .order_by(PulseRound.number.desc()).limit(1)
)


async def last_closed(s: AsyncSession | AsyncConnection, survey_id: str
                      ) -> tuple[int, datetime] | None:
    """(number, closing time) of the survey's latest closed round: the tap path's question."""
    conn = await connection_of(s)
    row = (await conn.execute(_LAST_CLOSED, {"survey_id": survey_id})).first()
    return (row.number, row.closes_at) if row is not None else None


@dataclass(frozen=True)
class Counts:
    """Participation counts for a round: numbers only, never who."""

    asked: int
    invited: int
    finished: int
    respondents: int  # distinct people with at least one answer

    @property
    def rate(self) -> float:
        return self.respondents / self.asked if self.asked else 0.0


async def counts(s: AsyncSession, round_id: str) -> Counts:
    P = PulseParticipation
    row = (await s.execute(
        select(func.count(), func.count(P.invited_at)).where(P.round_id == round_id))).one()
    done = (await s.execute(select(func.count()).select_from(PulseCompletion)
                            .where(PulseCompletion.round_id == round_id))).scalar_one()
    resp = (await s.execute(
        select(func.count(func.distinct(PulseAnswer.response_key)))
        .where(PulseAnswer.round_id == round_id))).scalar_one()
    return Counts(int(row[0]), int(row[1]), int(done), int(resp))


async def completed_keys(s: AsyncSession, round_id: str) -> set[str]:
    rows = await s.execute(select(PulseCompletion.response_key)
                           .where(PulseCompletion.round_id == round_id))
    return set(rows.scalars())


async def sync_finished(s: AsyncSession, round_id: str, secret: bytes) -> None:
    """Copy who has finished onto participation, all at once (so no row's timing tells)."""
    done = await completed_keys(s, round_id)
    parts = await s.execute(select(PulseParticipation).where(
        PulseParticipation.round_id == round_id, PulseParticipation.finished.is_(False)))
    for p in parts.scalars():
        if response_key(secret, round_id, p.person_id) in done:
            p.finished = True


async def mark_completed(s: AsyncSession | AsyncConnection, round_id: str, key: str) -> None:
    """Record that this response key reached the end (a repeat is a no-op)."""
    conn = await connection_of(s)
    await conn.execute(MARK_COMPLETED, {"round_id": round_id, "response_key": key})


# -- definitions -------------------------------------------------------------------------


async def store_definition(s: AsyncSession, d: SurveyDef, *, source: str) -> PulseSurvey:
    """Create or update a survey and its questions (questions keep their ids by key)."""
    row = await s.get(PulseSurvey, d.id)
    if row is None:
        row = PulseSurvey(id=d.id, source=source, paused=False)
        s.add(row)
    row.title, row.intro, row.audience = d.title, d.intro, d.audience
    row.schedule, row.timezone = d.schedule, d.timezone
    row.remind_after_min, row.close_after_min = d.remind_after_min, d.close_after_min
    row.anonymity, row.results_url, row.starts_at = d.anonymity, d.results_url, d.starts_at
    row.active = True
    await s.flush()
    existing = {q.key: q for q in await questions_of(s, d.id, include_inactive=True)}
    for pos, qd in enumerate(d.questions):
        q = existing.pop(qd.key, None)
        if q is None:
            q = PulseQuestion(survey_id=d.id, key=qd.key)
            s.add(q)
        q.position, q.kind, q.text, q.options, q.active = pos, qd.kind, qd.text, qd.options, True
    for q in existing.values():  # removed from the definition: kept for past rounds' results
        q.active = False
    await s.flush()
    return row


# -- audience and rounds -----------------------------------------------------------------


async def audience_of(s: AsyncSession, survey: PulseSurvey) -> list[Person]:
    """Everyone the survey is for, now."""
    people = list((await s.execute(select(Person).where(Person.left_on.is_(None))  # not leavers
                               .order_by(Person.id))).scalars())
    a = survey.audience or {}
    if a.get("everyone"):
        return people
    from bot.people.service import team_and_descendants

    teams: set[str] = set()
    for t in a.get("teams") or []:
        teams |= await team_and_descendants(s, t)
    roles = set(a.get("roles") or [])
    with_role: set[str] = set()
    if roles:
        with_role = set((await s.execute(
            select(PersonRole.person_id).where(PersonRole.role.in_(roles)))).scalars())
        if TEAM_LEAD in roles:
            leads = await s.execute(select(Team.lead_person_id))
            with_role |= {p for p in leads.scalars() if p is not None}
        if PRACTITIONER in roles:
            return people
    return [p for p in people if p.team_id in teams or p.id in with_role]


async def open_round(s: AsyncSession, survey: PulseSurvey, opens_at: datetime, secret: bytes
                     ) -> PulseRound | None:
    """Open a round of `survey` at `opens_at` and list who is asked; None if it exists already."""
    questions = await questions_of(s, survey.id)
    if not questions:
        return None
    number = (await s.execute(select(func.coalesce(func.max(PulseRound.number), 0))
                              .where(PulseRound.survey_id == survey.id))).scalar_one() + 1
    # A newer round replaces an older one still open.
    older = await s.execute(select(PulseRound).where(PulseRound.survey_id == survey.id,
                                                     PulseRound.state == "open"))
    for r in older.scalars():
        await close_round(s, r, opens_at, secret)
    rnd = PulseRound(
        survey_id=survey.id, number=number, opens_at=opens_at,
        remind_at=opens_at + timedelta(minutes=survey.remind_after_min),
        closes_at=opens_at + timedelta(minutes=survey.close_after_min),
        state="open", anonymity=survey.anonymity, question_ids=[q.id for q in questions],
    )
    try:
        async with s.begin_nested():
            s.add(rnd)
            await s.flush()
    except IntegrityError:  # another scheduler replica opened it first
        return None
    for person in await audience_of(s, survey):
        s.add(PulseParticipation(round_id=rnd.id, person_id=person.id, team_id=person.team_id))
    await s.flush()
    return rnd


async def close_round(s: AsyncSession, rnd: PulseRound, now: datetime, secret: bytes) -> None:
    """Close a round (early if `now` is before its closing time)."""
    rnd.state = "closed"
    if rnd.closes_at > now:
        rnd.closes_at = now
    await sync_finished(s, rnd.id, secret)


# -- answers -----------------------------------------------------------------------------


def response_key(secret: bytes, round_id: str, person_id: str) -> str:
    """The same person's answers in a round share this key; without the server key it is noise."""
    return keyed_hash(secret, "pulse", round_id, person_id)


def main_role(roles: frozenset[str]) -> str:
    return next(r for r in ROLE_ORDER if r in roles or r == PRACTITIONER)


# The hot path of every tap, as plain SQL both SQLite (3.24+) and PostgreSQL run: a repeated
# tap (a platform retry, a second device) updates the one row the unique key allows.
UPSERT_ANSWER = text(
    "INSERT INTO pulse_answers"
    " (id, round_id, question_id, response_key, team_id, role, value, choice, text)"
    " VALUES (:id, :round_id, :question_id, :response_key, :team_id, :role, :value, :choice,"
    " :text)"
    " ON CONFLICT (round_id, response_key, question_id) DO UPDATE SET"
    " team_id = excluded.team_id, role = excluded.role, value = excluded.value,"
    " choice = excluded.choice, text = excluded.text"
)
MARK_COMPLETED = text(
    "INSERT INTO pulse_completions (round_id, response_key) VALUES (:round_id, :response_key)"
    " ON CONFLICT DO NOTHING"
)
# The round's state, whether this person was asked, and their own answers so far, in one go.
RESPONDENT = text(
    "SELECT r.state, r.closes_at, p.person_id, a.question_id, a.value, a.choice, a.text"
    " FROM pulse_rounds r"
    " LEFT JOIN pulse_participation p ON p.round_id = r.id AND p.person_id = :person_id"
    " LEFT JOIN pulse_answers a ON a.round_id = r.id AND a.response_key = :response_key"
    " WHERE r.id = :round_id"
).columns(state=String(), closes_at=UTCDateTime(), person_id=String(), question_id=String(),
          value=Integer(), choice=String(), text=Text())


async def save_answer(
    s: AsyncSession | AsyncConnection, *, rnd: PulseRound, question_id: str, key: str, team_id: str | None,
    role: str, value: int | None = None, choice: str | None = None, text: str | None = None,
    person_id: str | None = None,
) -> None:
    """Store (or change) one answer; the unique key makes a repeat tap a no-op."""
    conn = await connection_of(s)
    await conn.execute(UPSERT_ANSWER, {
        "id": new_id(), "round_id": rnd.id, "question_id": question_id, "response_key": key,
        "team_id": team_id, "role": role, "value": value, "choice": choice, "text": text,
    })
    if rnd.anonymity == "attributed" and person_id is not None:
        await _upsert(s, PulseAttribution, {"round_id": rnd.id, "response_key": key},
                      {"person_id": person_id})


async def respondent(s: AsyncSession | AsyncConnection, round_id: str, person_id: str, key: str
                     ) -> list[Any]:
    """Rows of (state, closes_at, asked person id or None, question id, value, choice, text)."""
    conn = await connection_of(s)
    params = {"round_id": round_id, "person_id": person_id, "response_key": key}
    return list((await conn.execute(RESPONDENT, params)).all())


async def _upsert(s: AsyncSession | AsyncConnection, table: Any, keys: dict[str, Any],
                  values: dict[str, Any], *, with_id: bool = False) -> None:
    """INSERT .. ON CONFLICT DO UPDATE on SQLite and PostgreSQL; select-then-write elsewhere."""
    conn = await connection_of(s)
    dialect = conn.dialect.name
    row = {**keys, **values, **({"id": new_id()} if with_id else {})}
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        stmt = insert(table).values(**row)
        if values:
            await conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values))
        else:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=list(keys)))
        return
    try:
        async with conn.begin_nested():
            await conn.execute(sa_insert(table).values(**row))
    except IntegrityError:  # the same tap from another device won the race: update theirs
        if values:
            await conn.execute(update(table).filter_by(**keys).values(**values))


async def answers_by_key(s: AsyncSession, round_id: str, key: str) -> dict[str, PulseAnswer]:
    """One respondent's own answers in a round (by their response key), by question id."""
    rows = await s.execute(select(PulseAnswer).where(PulseAnswer.round_id == round_id,
                                                     PulseAnswer.response_key == key))
    return {a.question_id: a for a in rows.scalars()}


async def participation(s: AsyncSession, round_id: str, person_id: str
                        ) -> PulseParticipation | None:
    return await s.get(PulseParticipation, (round_id, person_id))
