"""Pulse surveys as data: definitions, rounds, participation and answers (reports read here)."""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.broadcasts import ledger
from bot.people.tables import Identity, Person, PersonRole, Team
from bot.programme.core_sections import get_setting
from bot.pulse import cells, summary
from bot.pulse.definition import SurveyDef
from bot.pulse.tables import (
    PulseAttributedAnswer,
    PulseCell,
    PulseComment,
    PulseCompletion,
    PulseParticipation,
    PulsePending,
    PulseQuestion,
    PulseRound,
    PulseRoundKey,
    PulseSummary,
    PulseSurvey,
    PulseTally,
)
from bot.reports.anonymity import Thresholds
from bot.roles import CHANGE_TEAM, LEADER, PRACTITIONER, SAFEGUARDING_LEAD, TEAM_LEAD
from bot.secrets import Unsealable, derive, forget_derived, keyed_hash, open_bytes, seal_bytes
from storage.base import UTCDateTime, new_id
from storage.db import connection_of
from storage.perkey import PerKey
from storage.prepared import Prepared

# The respondent's main role on an answer row: one role, so roles cannot be combined to single
# someone out.
ROLE_ORDER = (CHANGE_TEAM, LEADER, SAFEGUARDING_LEAD, TEAM_LEAD, PRACTITIONER)
# Pulse invitations' kind of row in the shared delivery ledger (bot/pulse/invitations.py).
INVITATION_KIND = "pulse"


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
    """Exact counts: from the live tables while open, from the totals kept at close."""
    rnd = await s.get(PulseRound, round_id)
    if rnd is not None and rnd.state == "closed" and rnd.n_asked is not None:
        return Counts(rnd.n_asked, rnd.n_invited or 0, rnd.n_finished or 0,
                      rnd.n_respondents or 0)
    P = PulseParticipation
    row = (await s.execute(
        select(func.count(), func.count(P.invited_at)).where(P.round_id == round_id))).one()
    done = (await s.execute(select(func.count()).select_from(PulseCompletion)
                            .where(PulseCompletion.round_id == round_id))).scalar_one()
    resp = (await s.execute(
        select(func.count(func.distinct(PulsePending.response_key)))
        .where(PulsePending.round_id == round_id))).scalar_one()
    return Counts(int(row[0]), int(row[1]), int(done), int(resp))


def rounded(n: int, step: int = 5) -> int:
    """A live count as the change team sees it while a round is open: to the nearest 5."""
    return int(step * round(n / step))


async def completed_keys(s: AsyncSession, round_id: str) -> set[str]:
    rows = await s.execute(select(PulseCompletion.response_key)
                           .where(PulseCompletion.round_id == round_id))
    return set(rows.scalars())


async def sync_finished(s: AsyncSession, round_id: str, secret: bytes) -> None:
    """Copy who has finished onto participation, all at once (so no row's timing tells)."""
    done = await completed_keys(s, round_id)
    rsec = await round_secret(s, round_id, secret)
    if rsec is None or not done:
        return
    parts = await s.execute(select(PulseParticipation).where(
        PulseParticipation.round_id == round_id, PulseParticipation.finished.is_(False)))
    for p in parts.scalars():
        if response_key(rsec, p.person_id) in done:
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


async def audience_where(s: AsyncSession, survey: PulseSurvey) -> ColumnElement[bool]:
    """The condition on `Person` that selects everyone the survey is for, now (set-based)."""
    cond: ColumnElement[bool] = Person.left_on.is_(None)  # not leavers
    a = survey.audience or {}
    roles = set(a.get("roles") or [])
    if a.get("everyone") or PRACTITIONER in roles:
        return cond
    from bot.people.service import team_and_descendants

    teams: set[str] = set()
    for t in a.get("teams") or []:
        teams |= await team_and_descendants(s, t)
    parts: list[ColumnElement[bool]] = []
    if teams:
        parts.append(Person.team_id.in_(sorted(teams)))
    if roles:
        parts.append(Person.id.in_(select(PersonRole.person_id)
                                   .where(PersonRole.role.in_(sorted(roles)))))
        if TEAM_LEAD in roles:
            parts.append(Person.id.in_(select(Team.lead_person_id)
                                       .where(Team.lead_person_id.is_not(None))))
    return and_(cond, or_(*parts)) if parts else false()


async def audience_of(s: AsyncSession, survey: PulseSurvey) -> list[Person]:
    """Everyone the survey is for, now."""
    where = await audience_where(s, survey)
    return list((await s.execute(select(Person).where(where).order_by(Person.id))).scalars())


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
    # Columns, not objects, and one bulk insert: a round of 50,000 opens in seconds.
    audience = (await s.execute(select(Person.id, Person.team_id)
                                .where(await audience_where(s, survey))
                                .order_by(Person.id))).all()
    roles = await main_roles(s, [pid for pid, _team in audience])
    parents = await team_parents(s)
    k = (await thresholds(s)).min_group
    where = cells.assign(((pid, team, roles[pid]) for pid, team in audience), parents, k)
    rows = [{"round_id": rnd.id, "person_id": pid, "team_id": team, "cell_team": where[pid][0],
             "cell_role": where[pid][1], "invited_at": None, "unreachable": False,
             "reminded": False, "finished": False, "message": None}
            for pid, team in audience]
    table = cast(Table, PulseParticipation.__table__)
    for i in range(0, len(rows), 5000):
        await s.execute(insert(table), rows[i : i + 5000])
    s.add(PulseRoundKey(round_id=rnd.id, sealed=seal_bytes(
        derive(secret, ROUND_KEY_LABEL), rnd.id, os.urandom(32))))
    await s.flush()
    return rnd


async def admit_latecomers(s: AsyncSession, rnd: PulseRound, survey: PulseSurvey) -> int:
    """Ask joiners of the audience in an open round, and try again for the unreachable.

    A joiner goes into an existing reporting cell (none shrinks below k); someone who could not
    be reached at opening (no install, blocked the app) and can be now is invited again.
    Returns how many people were added or made invitable.
    """
    P = PulseParticipation
    # An anti-join: only the audience's people with no participation in the round are read
    # (none on most ticks), never the whole audience.
    asked = select(P.person_id).where(P.round_id == rnd.id,
                                      P.person_id == Person.id).exists()
    joiners = (await s.execute(select(Person.id, Person.team_id)
                               .where(await audience_where(s, survey), ~asked)
                               .order_by(Person.id))).all()
    added = 0
    if joiners:
        roles = await main_roles(s, [pid for pid, _team in joiners])
        parents = await team_parents(s)
        existing = set((await s.execute(select(P.cell_team, P.cell_role).distinct()
                                        .where(P.round_id == rnd.id))).tuples())
        for pid, team in joiners:
            cell = cells.place(team, roles[pid], parents, existing)
            if cell is None:
                continue
            s.add(P(round_id=rnd.id, person_id=pid, team_id=team,
                    cell_team=cell[0], cell_role=cell[1]))
            added += 1
    reachable_now = select(Identity.person_id).where(Identity.reachable.is_(True),
                                                     Identity.dm.is_not(None))
    res = await s.execute(update(P).where(
        P.round_id == rnd.id, P.unreachable.is_(True), P.invited_at.is_(None),
        P.person_id.in_(reachable_now)).values(unreachable=False))
    await s.flush()
    return added + int(res.rowcount or 0)  # type: ignore[attr-defined]


async def thresholds(s: AsyncSession) -> Thresholds:
    """The programme's anonymity thresholds (k for answers, and for comments)."""
    return Thresholds.from_programme(await get_setting(s, "programme"))


async def team_parents(s: AsyncSession) -> dict[str, str | None]:
    return {t: p for t, p in (await s.execute(select(Team.id, Team.parent_id))).all()}


async def main_roles(s: AsyncSession, person_ids: list[str]) -> dict[str, str]:
    """Each person's main role (the first of ROLE_ORDER they hold; leading a team counts)."""
    held: dict[str, set[str]] = {pid: set() for pid in person_ids}
    for pid, role in (await s.execute(select(PersonRole.person_id, PersonRole.role))).all():
        if pid in held:
            held[pid].add(role)
    for (lead,) in (await s.execute(select(Team.lead_person_id)
                                    .where(Team.lead_person_id.is_not(None)))).all():
        if lead in held:
            held[lead].add(TEAM_LEAD)
    return {pid: main_role(frozenset(r)) for pid, r in held.items()}


class _Kept:
    """Per engine: every closed round's people row was seen to keep thresholds and tree."""

    everywhere = False


_kept: PerKey[Engine, _Kept] = PerKey(_Kept)


async def summarise_missing(s: AsyncSession) -> int:
    """Sum closed rounds that have counts but no summary (`pulse_summaries`) from their cells
    and tallies, as the close does: a round closed by a replica still on a version from before
    the summaries (a rolling upgrade) would otherwise report nothing. Returns how many. Also
    keeps today's thresholds (and team tree) for rounds summed before they were kept."""
    has = select(PulseSummary.round_id).where(PulseSummary.round_id == PulseRound.id,
                                               PulseSummary.question_id == summary.PEOPLE)
    missing = list((await s.execute(select(PulseRound.id).where(
        PulseRound.state == "closed", ~has.exists()))).scalars())
    # Rounds summed before the thresholds were kept get today's, the nearest to those their
    # results were read under: reports then never show them under other thresholds than
    # nested in these, so a later change of threshold cannot be subtracted (reports/results.py).
    # Those summed before the team tree was kept get today's tree too, for the same reason.
    # Once a look finds none, this process stops looking (it would read every round's people
    # row at every tick); a round an older replica summed meanwhile gets them at a restart.
    S = PulseSummary
    kept = _kept((await s.connection()).sync_engine)
    old = [] if kept.everywhere else (await s.execute(select(S.round_id, S.counts).where(
        S.question_id == summary.PEOPLE, ~S.counts.contains(summary.THRESHOLDS_KEPT)))).all()
    kept.everywhere = not old
    if not missing and not old:
        return 0
    parents = await team_parents(s)  # the tree now: the nearest to the close
    th = await thresholds(s)  # and the thresholds now, likewise
    for rid in missing:
        invited: dict[cells.Cell, tuple[int, int]] = {}
        for t, r, n_inv, n_resp in (await s.execute(select(
                PulseCell.team_id, PulseCell.role, PulseCell.invited, PulseCell.respondents)
                .where(PulseCell.round_id == rid))).all():
            inv, resp = invited.get((t, r), (0, 0))
            invited[(t, r)] = (inv + int(n_inv), resp + int(n_resp))
        answers: list[tuple[str, cells.Cell, str, int]] = []
        said: list[tuple[str, str | None, int]] = []
        for qid, t, r, v, c, n in (await s.execute(select(
                PulseTally.question_id, PulseTally.team_id, PulseTally.role, PulseTally.value,
                PulseTally.choice, PulseTally.n).where(PulseTally.round_id == rid))).all():
            if v is None and c is None:
                said.append((qid, t, int(n)))  # how many commented, per comment team
            else:
                answers.append((qid, (t, r), str(c if c is not None else v), int(n)))
        await s.execute(insert(PulseSummary),
                        summary.rows(rid, summary.summarise(invited, answers, said, parents, (
                            th.min_group, th.min_comments))))
    for rid, people in old:
        await s.execute(update(S).where(S.round_id == rid, S.question_id == summary.PEOPLE)
                        .values(counts=summary.keep(people, (th.min_group, th.min_comments), parents)))
    return len(missing)


async def close_round(s: AsyncSession, rnd: PulseRound, now: datetime, secret: bytes) -> None:
    """Close a round (early if `now` is before its closing time) and keep only what may stay.

    In this one transaction the sealed answers become counts per reporting cell, comments are
    written shuffled under a team with enough people asked, and the round secret, the pending
    answers, completions and participation are deleted: afterwards no key, the server key
    included, links the round to anyone.
    """
    rnd.state = "closed"
    if rnd.closes_at > now:
        rnd.closes_at = now
    rsec = await round_secret(s, rnd.id, secret)
    parts = list((await s.execute(select(PulseParticipation)
                                  .where(PulseParticipation.round_id == rnd.id))).scalars())
    by_key = {response_key(rsec, p.person_id): p for p in parts} if rsec is not None else {}
    done = await completed_keys(s, rnd.id)
    th = await thresholds(s)
    parents = await team_parents(s)
    # The cells fixed at opening, merged again where an erasure left one below k.
    fixed: Counter[cells.Cell] = Counter((p.cell_team, p.cell_role) for p in parts)
    cell_of = cells.settle(fixed, parents, th.min_group)
    invited: Counter[cells.Cell] = Counter()
    for c, n in fixed.items():
        invited[cell_of[c]] += n
    answered: dict[cells.Cell, set[str]] = {}
    tallies: Counter[tuple[str, cells.Cell, int | None, str | None]] = Counter()
    comments: list[tuple[str, str | None, str]] = []
    attributed: list[dict[str, Any]] = []
    box = derive(rsec, ANSWER_LABEL) if rsec is not None else b""
    pending = (await s.execute(select(PulsePending.response_key, PulsePending.question_id,
                                      PulsePending.sealed)
                               .where(PulsePending.round_id == rnd.id))).all()
    for key, qid, sealed in pending:
        p = by_key.get(key)
        if p is None:
            continue  # not one of the people asked (cannot happen): counted nowhere
        value, choice, txt = _open_answer(box, rnd.id, key, qid, sealed)
        cell = cell_of[(p.cell_team, p.cell_role)]
        answered.setdefault(cell, set()).add(key)
        if txt:
            comments.append((qid, cell[0], txt))
        else:
            tallies[(qid, cell, value, choice)] += 1
        if rnd.anonymity == "attributed":
            attributed.append({"round_id": rnd.id, "person_id": p.person_id, "question_id": qid,
                               "value": value, "choice": choice, "text": txt})
    home = cells.comment_teams(invited, parents, th.min_comments)
    rows = [{"id": new_id(), "round_id": rnd.id, "team_id": t, "role": r, "invited": n,
             "respondents": len(answered.get((t, r), ()))} for (t, r), n in invited.items()]
    if rows:
        await s.execute(insert(PulseCell), rows)
    random.SystemRandom().shuffle(comments)
    comment_rows = [{"id": new_id(), "round_id": rnd.id, "question_id": qid,
                     "team_id": home.get(t, t), "text": txt} for qid, t, txt in comments]
    # How many commented, per comment team, kept as counts too: reports read these, never
    # the comments themselves, to decide what may be shown.
    said: Counter[tuple[str, cells.Cell]] = Counter()
    for qid, t, _txt in comments:
        said[(qid, (home.get(t, t), cells.MIXED))] += 1
    for (qid, cell), n in said.items():
        tallies[(qid, cell, None, None)] += n
    if comment_rows:
        await s.execute(insert(PulseComment), comment_rows)
    tally_rows = [{"id": new_id(), "round_id": rnd.id, "question_id": qid, "team_id": t,
                   "role": r, "value": v, "choice": c, "n": n}
                  for (qid, (t, r), v, c), n in tallies.items()]
    if tally_rows:
        await s.execute(insert(PulseTally), tally_rows)
    # The same counts summed per group of cells, for reports (bot/pulse/summary.py).
    kept = summary.summarise(
        {cell: (n, len(answered.get(cell, ()))) for cell, n in invited.items()},
        ((qid, cell, str(c if c is not None else v), n)
         for (qid, cell, v, c), n in tallies.items()
         if v is not None or c is not None),
        ((qid, t, n) for (qid, (t, _r)), n in said.items()), parents,
        (th.min_group, th.min_comments))
    await s.execute(insert(PulseSummary), summary.rows(rnd.id, kept))
    if attributed:
        await s.execute(insert(PulseAttributedAnswer), attributed)
    rnd.n_asked = len(parts)
    rnd.n_invited = sum(1 for p in parts if p.invited_at is not None)
    rnd.n_finished = len(done & set(by_key))
    rnd.n_respondents = sum(len(keys) for keys in answered.values())
    await s.flush()
    for p in parts:
        s.expunge(p)
    for table in (PulsePending, PulseCompletion, PulseParticipation, PulseRoundKey):
        await s.execute(delete(table).where(table.round_id == rnd.id))
    # The round's invitation rows in the delivery ledger name who was asked: gone too.
    await ledger.forget(s, INVITATION_KIND, rnd.id)
    _SECRETS.pop(rnd.id, None)
    forget_derived()


# -- answers -----------------------------------------------------------------------------


ROUND_KEY_LABEL = "staffvoice pulse round key v1"
ANSWER_LABEL = "staffvoice pulse answer v1"
SECRET_TTL_S = 30.0
# Open rounds' secrets, opened once per process (every tap needs one); gone when rounds close.
_SECRETS: dict[str, tuple[float, bytes]] = {}


def response_key(round_secret: bytes, person_id: str) -> str:
    """The same person's answers in a round share this key; without the round secret it is noise."""
    return keyed_hash(round_secret, "pulse", person_id)


_ROUND_KEY = select(PulseRoundKey.sealed).where(PulseRoundKey.round_id == bindparam("round_id"))


async def round_secret(s: AsyncSession | AsyncConnection, round_id: str, secret: bytes
                       ) -> bytes | None:
    """An open round's own secret (None once the round closed and it was destroyed)."""
    hit = _SECRETS.get(round_id)
    if hit is not None and time.monotonic() - hit[0] < SECRET_TTL_S:
        return hit[1]
    conn = await connection_of(s)
    sealed = (await conn.execute(_ROUND_KEY, {"round_id": round_id})).scalar_one_or_none()
    if sealed is None:
        _SECRETS.pop(round_id, None)
        return None
    try:
        value = open_bytes(derive(secret, ROUND_KEY_LABEL), round_id, sealed)
    except Unsealable:
        return None  # sealed under another server key: nothing can be linked, nothing answered
    if len(_SECRETS) > 1000:
        _SECRETS.clear()
    _SECRETS[round_id] = (time.monotonic(), value)
    return value


def main_role(roles: frozenset[str]) -> str:
    return next(r for r in ROLE_ORDER if r in roles or r == PRACTITIONER)


def _plain(value: int | None, choice: str | None, txt: str | None) -> bytes:
    # UTF-8, not JSON's \uXXXX escapes: escaped, a Cyrillic or Arabic letter took 6 bytes,
    # so a comment of 800 such characters sealed beyond the 4 KB every English one fits in
    # (N47). `json.loads` reads both (rows sealed before), lone surrogates included.
    return json.dumps([value, choice, txt], separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


# AES-GCM hides an answer's bytes, not how many there are: sealed as written, 10 out of 10 was
# a byte longer than 9, and a choice as long as its words, so a dump of an open round read
# each respondent's choices (docs/invariants.md N47). Every answer to a question is padded to
# the longest any answer to it can be (`answer_room`), a comment to the next whole block;
# JSON reads the padding, trailing spaces, as nothing, so rows sealed before open as ever.
VALUE_ROOM = len(_plain(10, None, None))
# A comment may be 2,000 characters: 4 KB holds almost any of them once sealed as JSON, so
# almost every comment is sealed to one length (a long one stood out at 1 KB).
COMMENT_BLOCK = 4096


def answer_room(q: PulseQuestion) -> int:
    """The length every sealed answer to `q` is padded to (a comment's is its block's)."""
    if q.kind != "choice":
        return VALUE_ROOM
    return _choices_room(tuple(q.options.get("choices", ())))


@functools.lru_cache(maxsize=512)
def _choices_room(choices: tuple[str, ...]) -> int:
    # Once per set of choices, not on every tap: serialising five choices cost about
    # 120,000 instructions a tap, three times the seal's own (issue 22 target 1).
    return max([VALUE_ROOM, *(len(_plain(None, c, None)) for c in choices)])


def _seal_answer(round_secret: bytes, round_id: str, key: str, question_id: str,
                 value: int | None, choice: str | None, txt: str | None,
                 room: int = 0) -> bytes:
    plain = _plain(value, choice, txt)
    size = (-(-len(plain) // COMMENT_BLOCK) * COMMENT_BLOCK if txt is not None
            else max(len(plain), room, VALUE_ROOM))
    return seal_bytes(derive(round_secret, ANSWER_LABEL), f"{round_id}.{key}.{question_id}",
                      plain + b" " * (size - len(plain)))


def _open_answer(box: bytes, round_id: str, key: str, question_id: str, sealed: bytes
                 ) -> tuple[int | None, str | None, str | None]:
    try:
        value, choice, txt = json.loads(open_bytes(box, f"{round_id}.{key}.{question_id}",
                                                   sealed))
    except (Unsealable, ValueError):
        return None, None, None  # sealed under a destroyed secret: nothing to count
    return value, choice, txt


# The hot path of every tap, as plain SQL both SQLite (3.24+) and PostgreSQL run: a repeated
# tap (a platform retry, a second device) updates the one row the primary key allows.
UPSERT_ANSWER = text(
    "INSERT INTO pulse_pending (round_id, response_key, question_id, sealed)"
    " VALUES (:round_id, :response_key, :question_id, :sealed)"
    " ON CONFLICT (round_id, response_key, question_id) DO UPDATE SET sealed = excluded.sealed"
).bindparams(bindparam("sealed", type_=LargeBinary()))
MARK_COMPLETED = text(
    "INSERT INTO pulse_completions (round_id, response_key) VALUES (:round_id, :response_key)"
    " ON CONFLICT DO NOTHING"
)
# The round's state, whether this person was asked, and which questions they answered so far,
# in one go (not the sealed answers: a padded comment is 4 KB, stored out of line on PostgreSQL,
# N47, and a tap needs only which questions are done).
RESPONDENT = text(
    "SELECT r.state, r.closes_at, p.person_id, a.question_id"
    " FROM pulse_rounds r"
    " LEFT JOIN pulse_participation p ON p.round_id = r.id AND p.person_id = :person_id"
    " LEFT JOIN pulse_pending a ON a.round_id = r.id AND a.response_key = :response_key"
    " WHERE r.id = :round_id"
).columns(state=String(), closes_at=UTCDateTime(), person_id=String(), question_id=String())
# Every tap runs these two: on the DB-API cursor, without an execution context per call.
_UPSERT_RUN, _RESPONDENT_RUN = Prepared(UPSERT_ANSWER), Prepared(RESPONDENT)


async def save_answer(
    s: AsyncSession | AsyncConnection, *, rnd: PulseRound, question_id: str, key: str,
    round_secret: bytes, value: int | None = None, choice: str | None = None,
    text: str | None = None, room: int = 0,
) -> None:
    """Store (or change) one answer, sealed until the round closes; a repeat is an update.
    `room`: the question's `answer_room`, which a choice's answer must be padded to."""
    conn = await connection_of(s)
    await _UPSERT_RUN.all(conn, {
        "round_id": rnd.id, "question_id": question_id, "response_key": key,
        "sealed": _seal_answer(round_secret, rnd.id, key, question_id, value, choice, text,
                               room),
    })


async def respondent(s: AsyncSession | AsyncConnection, round_id: str, person_id: str, key: str
                     ) -> list[Any]:
    """Rows of (state, closes_at, asked person id or None, question id or None): the round,
    whether this person was asked, and which questions they answered so far. The answers
    stay sealed: a tap only needs to know which were given (every tap opened each one, an
    AES-GCM open and a JSON parse, to throw the values away)."""
    conn = await connection_of(s)
    params = {"round_id": round_id, "person_id": person_id, "response_key": key}
    return await _RESPONDENT_RUN.all(conn, params)


async def answered_questions(s: AsyncSession, round_id: str, key: str) -> set[str]:
    """Which questions one respondent (by response key) has answered so far."""
    rows = await s.execute(select(PulsePending.question_id).where(
        PulsePending.round_id == round_id, PulsePending.response_key == key))
    return set(rows.scalars())


async def participation(s: AsyncSession, round_id: str, person_id: str
                        ) -> PulseParticipation | None:
    return await s.get(PulseParticipation, (round_id, person_id))
