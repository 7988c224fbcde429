"""Reading and changing the roadmap; also what reports read for "roadmap health"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.errors import FormInvalid, UserError
from bot.milestones import matching
from bot.milestones.status import (
    CADENCES,
    DEFAULT_CADENCE,
    DEFAULT_GRACE_DAYS,
    DONE,
    LABELS,
    NOT_STARTED,
    STATUSES,
    parse_status,
)
from bot.milestones.tables import (
    EarlyWin,
    Milestone,
    MilestoneCheckin,
    MilestoneOwner,
    MilestoneUpdate,
)
from bot.people import service as people
from bot.people.tables import Person, Team, Theme
from bot.programme.core_sections import programme_zone
from bot.programme.schema import SLUG
from bot.roles import CHANGE_TEAM
from storage.db import connection_of

OPEN_CHECKIN = ("due", "sent", "reminded")
RISKY = ("at_risk", "off_track")


class MilestoneInfo(NamedTuple):
    """What cards and lists read of a milestone, read without the ORM (not for changing)."""

    id: str
    title: str
    description: str
    team_id: str | None
    due: date
    status: str
    progress: int
    stale_since: datetime | None


class UpdateInfo(NamedTuple):
    """What cards read of an update (read without the ORM)."""

    id: str
    person_id: str | None
    at: datetime
    status: str
    progress: int
    note: str


class PersonInfo(NamedTuple):
    id: str
    email: str | None
    display_name: str


class TeamInfo(NamedTuple):
    id: str
    name: str


AnyMilestone = Milestone | MilestoneInfo


@dataclass(frozen=True)
class View:
    """A milestone with what a card shows about it: ORM objects, or the read-only `...Info`
    records of `roadmap()` (the same attributes, so cards render both alike)."""

    m: AnyMilestone
    owners: list[Person] | list[PersonInfo]
    team: Team | TeamInfo | None
    last: MilestoneUpdate | UpdateInfo | None
    last_by: Person | PersonInfo | None


# -- reading ---------------------------------------------------------------------------


async def today(s: AsyncSession | AsyncConnection, now: datetime) -> date:
    """The date now in the programme's time zone (due dates are local dates)."""
    return now.astimezone(await programme_zone(s)).date()


async def all_milestones(s: AsyncSession) -> list[Milestone]:
    """Every milestone in roadmap order."""
    rows = await s.execute(select(Milestone).order_by(Milestone.position, Milestone.due, Milestone.id))
    return list(rows.scalars())


async def get(s: AsyncSession, milestone_id: str) -> Milestone | None:
    return await s.get(Milestone, milestone_id)


async def owner_ids(s: AsyncSession, milestone_id: str) -> list[str]:
    rows = await s.execute(
        select(MilestoneOwner.person_id)
        .where(MilestoneOwner.milestone_id == milestone_id)
        .order_by(MilestoneOwner.position)
    )
    return list(rows.scalars())


async def owners_of(s: AsyncSession, milestone_id: str) -> list[Person]:
    out = []
    for pid in await owner_ids(s, milestone_id):
        p = await s.get(Person, pid)
        if p is not None:
            out.append(p)
    return out


async def last_update(s: AsyncSession, milestone_id: str) -> MilestoneUpdate | None:
    rows = await s.execute(
        select(MilestoneUpdate)
        .where(MilestoneUpdate.milestone_id == milestone_id)
        .order_by(MilestoneUpdate.at.desc())
        .limit(1)
    )
    return rows.scalar_one_or_none()


async def view(s: AsyncSession, m: Milestone) -> View:
    last = await last_update(s, m.id)
    last_by = await s.get(Person, last.person_id) if last and last.person_id else None
    team = await s.get(Team, m.team_id) if m.team_id else None
    return View(m, await owners_of(s, m.id), team, last, last_by)


async def views(s: AsyncSession, ms: list[Milestone]) -> list[View]:
    """Views of many milestones in a fixed number of queries (not a few per milestone)."""
    if len(ms) <= 1:
        return [await view(s, m) for m in ms]
    ids = [m.id for m in ms]
    owners: dict[str, list[str]] = {}
    for mid, pid in await s.execute(
        select(MilestoneOwner.milestone_id, MilestoneOwner.person_id)
        .where(MilestoneOwner.milestone_id.in_(ids))
        .order_by(MilestoneOwner.milestone_id, MilestoneOwner.position)
    ):
        owners.setdefault(mid, []).append(pid)
    # Only each milestone's newest update: a roadmap gathers thousands over its life.
    newest = (
        select(MilestoneUpdate.id,
               func.row_number().over(partition_by=MilestoneUpdate.milestone_id,
                                      order_by=(MilestoneUpdate.at.desc(),
                                                MilestoneUpdate.id.desc())).label("n"))
        .where(MilestoneUpdate.milestone_id.in_(ids))
        .subquery()
    )
    latest: dict[str, MilestoneUpdate] = {
        u.milestone_id: u for u in (await s.execute(
            select(MilestoneUpdate).join(newest, newest.c.id == MilestoneUpdate.id)
            .where(newest.c.n == 1)
        )).scalars()
    }
    pids = {p for ps in owners.values() for p in ps}
    pids |= {u.person_id for u in latest.values() if u.person_id}
    people = {
        p.id: p for p in (await s.execute(select(Person).where(Person.id.in_(pids)))).scalars()
    } if pids else {}
    team_ids = {m.team_id for m in ms if m.team_id}
    teams = {
        t.id: t for t in (await s.execute(select(Team).where(Team.id.in_(team_ids)))).scalars()
    } if team_ids else {}
    out = []
    for m in ms:
        last = latest.get(m.id)
        out.append(View(
            m,
            [people[p] for p in owners.get(m.id, []) if p in people],
            teams.get(m.team_id) if m.team_id else None,
            last,
            people.get(last.person_id) if last and last.person_id else None,
        ))
    return out


# The whole roadmap for "status" and "what's at risk?", built once (so SQLAlchemy's compiled
# cache hits) on the tables, not the ORM: every milestone in roadmap order with its newest
# update (one index lookup each), that update's author and its team; then every milestone's
# owners in order. People are looked up by id one row at a time (scalar subqueries): joined,
# PostgreSQL hashed the whole people table to find 500 owners, half the page's time at 45,000
# people. The newest update is chosen in a subquery kept apart (OFFSET 0) so that it runs once
# per milestone, not again inside the join.
_M, _U, _O = Milestone.__table__, MilestoneUpdate.__table__, MilestoneOwner.__table__
_T, _P = Team.__table__, Person.__table__


def _person(column: str, person_id: Any) -> Any:
    return select(_P.c[column]).where(_P.c.id == person_id).scalar_subquery()


_NEWEST = (
    select(_U.c.id).where(_U.c.milestone_id == _M.c.id)
    .order_by(_U.c.at.desc(), _U.c.id.desc()).limit(1)
    .correlate(_M).scalar_subquery()
)
_MS = select(_M.c.id, _M.c.title, _M.c.description, _M.c.team_id, _M.c.due, _M.c.status,
             _M.c.progress, _M.c.stale_since, _M.c.position, _NEWEST.label("last_id")
             ).offset(0).subquery("m")
_ROADMAP = (
    select(_MS.c.id, _MS.c.title, _MS.c.description, _MS.c.team_id, _MS.c.due, _MS.c.status,
           _MS.c.progress, _MS.c.stale_since,
           _U.c.id, _U.c.person_id, _U.c.at, _U.c.status, _U.c.progress, _U.c.note,
           _person("email", _U.c.person_id), _person("display_name", _U.c.person_id),
           _T.c.id, _T.c.name)
    .select_from(
        _MS.outerjoin(_U, _U.c.id == _MS.c.last_id)
        .outerjoin(_T, _T.c.id == _MS.c.team_id)
    )
    .order_by(_MS.c.position, _MS.c.due, _MS.c.id)
)
_OWNERS = (
    select(_O.c.milestone_id, _O.c.person_id, _person("email", _O.c.person_id),
           _person("display_name", _O.c.person_id))
    .order_by(_O.c.milestone_id, _O.c.position, _O.c.person_id)
)


async def roadmap(s: AsyncSession | AsyncConnection) -> list[View]:
    """Every milestone in roadmap order, as `views(all_milestones())` would show them, in two
    statements and without ORM objects: for reading only (the overview, lists)."""
    conn = await connection_of(s)
    owners: dict[str, list[PersonInfo]] = {}
    for mid, pid, email, name in await conn.execute(_OWNERS):
        if name is not None:  # None: no such person (display_name is never NULL)
            owners.setdefault(mid, []).append(PersonInfo(pid, email, name))
    out: list[View] = []
    for (m_id, title, description, team_id, due, status, progress, stale_since,
         u_id, u_person, u_at, u_status, u_progress, u_note, a_email, a_name,
         t_id, t_name) in await conn.execute(_ROADMAP):
        out.append(View(
            MilestoneInfo(m_id, title, description, team_id, due, status, progress, stale_since),
            owners.get(m_id, []),
            TeamInfo(t_id, t_name) if t_id is not None else None,
            UpdateInfo(u_id, u_person, u_at, u_status, u_progress, u_note)
            if u_id is not None else None,
            PersonInfo(u_person, a_email, a_name) if a_name is not None else None,
        ))
    return out


def _most_urgent(m: AnyMilestone) -> tuple[bool, date]:
    """The order risky milestones are listed in: off track first, then by due date."""
    return m.status != "off_track", m.due


def risky_first(vs: list[View]) -> list[View]:
    """At risk or off track (and not done), most urgent first: what `at_risk` lists."""
    return sorted([v for v in vs if v.m.status in RISKY], key=lambda v: _most_urgent(v.m))


async def resolve(s: AsyncSession, query: str) -> matching.Found:
    """Which milestone(s) `query` names: by id, by title words, or fuzzily."""
    ms = await all_milestones(s)
    return matching.find(query, [(m.id, m.title) for m in ms])


async def find_one(s: AsyncSession, query: str) -> Milestone:
    """Exactly one milestone by id or an unambiguous name; UserError otherwise."""
    found = await resolve(s, query)
    if found.one:
        m = await get(s, found.one)
        assert m is not None
        return m
    if found.ids:
        raise UserError(
            f"'{query}' could mean {', '.join(found.ids)}. Please use the milestone's id."
        )
    hint = f" The closest is '{found.closest}'." if found.closest else ""
    raise UserError(f"I don't know a milestone called '{query}'.{hint} Type “status” to see them all.")


def is_overdue(m: AnyMilestone, on: date) -> bool:
    return m.status != DONE and m.due < on


async def at_risk(s: AsyncSession) -> list[Milestone]:
    """At risk or off track (and not done), most urgent first."""
    return sorted([m for m in await all_milestones(s) if m.status in RISKY], key=_most_urgent)


async def overdue(s: AsyncSession, on: date) -> list[Milestone]:
    return [m for m in await all_milestones(s) if is_overdue(m, on)]


async def stale(s: AsyncSession) -> list[Milestone]:
    return [m for m in await all_milestones(s) if m.stale_since is not None and m.status != DONE]


async def owned_by(s: AsyncSession, person_id: str) -> list[Milestone]:
    ids = set(
        (await s.execute(select(MilestoneOwner.milestone_id).where(MilestoneOwner.person_id == person_id))).scalars()
    )
    return [m for m in await all_milestones(s) if m.id in ids]


async def of_team(s: AsyncSession, team_id: str) -> list[Milestone]:
    """Milestones of a team and of the teams below it."""
    teams = await people.team_and_descendants(s, team_id)
    return [m for m in await all_milestones(s) if m.team_id in teams]


async def health(s: AsyncSession, on: date | None = None,
                 ms: Sequence[AnyMilestone] | None = None) -> dict[str, int]:
    """Roadmap health for reports: counts by status, plus overdue, stale and total."""
    if ms is None:
        ms = await all_milestones(s)
    return counts(ms, on)


def counts(ms: Sequence[AnyMilestone], on: date | None) -> dict[str, int]:
    """`health` of milestones already read."""
    out = {st: 0 for st in STATUSES}
    for m in ms:
        out[m.status] = out.get(m.status, 0) + 1
    out["overdue"] = sum(is_overdue(m, on) for m in ms) if on else 0
    out["stale"] = sum(m.stale_since is not None and m.status != DONE for m in ms)
    out["total"] = len(ms)
    return out


async def updates_between(s: AsyncSession, start: datetime, end: datetime) -> list[MilestoneUpdate]:
    rows = await s.execute(
        select(MilestoneUpdate)
        .where(MilestoneUpdate.at >= start, MilestoneUpdate.at < end)
        .order_by(MilestoneUpdate.at)
    )
    return list(rows.scalars())


async def early_wins(s: AsyncSession) -> list[EarlyWin]:
    rows = await s.execute(select(EarlyWin).order_by(EarlyWin.position, EarlyWin.id))
    return list(rows.scalars())


async def early_wins_delivered(s: AsyncSession, since: date, until: date) -> list[EarlyWin]:
    """Early wins delivered on a date in [since, until]."""
    return [
        w for w in await early_wins(s)
        if w.status == "delivered" and w.delivered_on and since <= w.delivered_on <= until
    ]


async def may_update(s: AsyncSession, milestone: Milestone, person_id: str, roles: frozenset[str]) -> bool:
    """Owners and the change team may update a milestone."""
    return CHANGE_TEAM in roles or person_id in await owner_ids(s, milestone.id)


# -- changing --------------------------------------------------------------------------


def check_progress(raw: Any) -> int:
    """A whole number from 0 to 100, else UserError."""
    text = str(raw).strip().rstrip("%").strip()
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"Progress should be a whole number from 0 to 100, not '{raw}'. "
                        "Nothing was changed.") from None
    if not 0 <= value <= 100:
        raise UserError(f"Progress should be from 0 to 100, not {value}. Nothing was changed.")
    return value


@dataclass(frozen=True)
class Recorded:
    """An update stored, and what followed from it."""

    update: MilestoneUpdate
    closed_checkins: list[MilestoneCheckin]
    became_done: bool


async def record_update(
    s: AsyncSession, m: Milestone, person_id: str | None, *, status: str, progress: int,
    note: str, at: datetime, source: str = "chat",
) -> Recorded:
    """Store an update (who, when, status, progress, note); close open check-ins; clear stale."""
    if status not in STATUSES:
        raise UserError(f"'{status}' is not a status. Use one of: "
                        f"{', '.join(LABELS[x] for x in STATUSES)}. Nothing was changed.")
    if not 0 <= progress <= 100:
        raise UserError(f"Progress should be from 0 to 100, not {progress}. Nothing was changed.")
    if status == DONE:
        progress = 100
    u = MilestoneUpdate(
        milestone_id=m.id, person_id=person_id, at=at, status=status, progress=progress,
        prev_status=m.status, prev_progress=m.progress, note=note.strip()[:2000], source=source,
    )
    s.add(u)
    became_done = status == DONE and m.status != DONE
    m.status, m.progress, m.last_update_at = status, progress, at
    m.stale_since = m.stale_told_at = m.stale_tell = None
    rows = await s.execute(
        select(MilestoneCheckin).where(
            MilestoneCheckin.milestone_id == m.id, MilestoneCheckin.state.in_(OPEN_CHECKIN)
        )
    )
    closed = list(rows.scalars())
    for c in closed:
        c.state, c.closed_at = "answered", at
    if became_done:
        on = await today(s, at)
        for w in await early_wins(s):
            if w.id in (m.early_win_ids or []) and w.status != "delivered":
                w.status, w.delivered_on = "delivered", on
    await s.flush()
    return Recorded(u, closed, became_done)


async def check_values(
    s: AsyncSession, values: dict[str, str], *, creating: bool, now: datetime,
    current: Milestone | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Clean the fields of the create/edit form; errors by field name (nothing is stored)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    if creating:
        mid = values.get("id", "").strip().lower()
        if not SLUG.match(mid):
            errors["id"] = "Use lower-case letters, digits and dashes, like family-network-meetings."
        elif await get(s, mid) is not None:
            errors["id"] = f"There is already a milestone '{mid}'."
        out["id"] = mid
    title = values.get("title", "").strip()
    if not title:
        errors["title"] = "A title is needed."
    out["title"] = title[:200]
    out["description"] = values.get("description", "").strip()
    owners: list[str] = []
    emails = [e for e in values.get("owners", "").replace(";", ",").replace(" ", ",").split(",") if e]
    unknown = []
    for e in emails:
        p = await people.person_by_email(s, e)
        if p is None:
            unknown.append(e)
        elif p.id not in owners:
            owners.append(p.id)
    if unknown:
        errors["owners"] = f"I don't know {', '.join(unknown)}: owners must be people in the programme."
    elif not owners:
        errors["owners"] = "At least one owner (an email) is needed."
    out["owners"] = owners
    team = values.get("team", "").strip()
    if team and await s.get(Team, team) is None:
        errors["team"] = f"'{team}' is not a team."
    out["team_id"] = team or None
    theme = values.get("theme", "").strip()
    if theme and await s.get(Theme, theme) is None:
        errors["theme"] = f"'{theme}' is not a theme."
    out["theme_id"] = theme or None
    try:
        due = date.fromisoformat(values.get("due", "").strip())
        if creating and due < await today(s, now):
            errors["due"] = f"{due.isoformat()} is in the past; a new milestone needs a future date."
        out["due"] = due
    except ValueError:
        errors["due"] = "Give the due date as YYYY-MM-DD, like 2027-03-31."
    cadence = values.get("cadence", "").strip() or (current.cadence if current else DEFAULT_CADENCE)
    if cadence not in CADENCES:
        errors["cadence"] = f"Use one of: {', '.join(CADENCES)}."
    out["cadence"] = cadence
    return out, errors


async def create(s: AsyncSession, values: dict[str, str], now: datetime) -> Milestone:
    """A new milestone from chat; FormInvalid lists every problem and nothing is stored."""
    clean, errors = await check_values(s, values, creating=True, now=now)
    if errors:
        raise FormInvalid(errors)
    last = (await s.execute(select(func.max(Milestone.position)))).scalar_one_or_none() or 0
    m = Milestone(
        id=clean["id"], title=clean["title"], description=clean["description"],
        team_id=clean["team_id"], due=clean["due"], cadence=clean["cadence"],
        grace_days=DEFAULT_GRACE_DAYS, status=NOT_STARTED, progress=0, theme_id=clean["theme_id"],
        early_win_ids=[], position=last + 1, from_file=False, created_at=now, anchor_at=now,
    )
    s.add(m)
    await s.flush()
    await set_owners(s, m.id, clean["owners"])
    return m


async def edit(s: AsyncSession, m: Milestone, values: dict[str, str], now: datetime) -> None:
    """Change a milestone's details from chat; FormInvalid and nothing changes on a problem."""
    clean, errors = await check_values(s, values, creating=False, now=now, current=m)
    if errors:
        raise FormInvalid(errors)
    m.title, m.description, m.team_id = clean["title"], clean["description"], clean["team_id"]
    m.due, m.cadence, m.theme_id = clean["due"], clean["cadence"], clean["theme_id"]
    await set_owners(s, m.id, clean["owners"])


async def set_owners(s: AsyncSession, milestone_id: str, person_ids: list[str]) -> None:
    await s.execute(delete(MilestoneOwner).where(MilestoneOwner.milestone_id == milestone_id))
    await s.flush()
    for i, pid in enumerate(person_ids):
        s.add(MilestoneOwner(milestone_id=milestone_id, person_id=pid, position=i))
    await s.flush()


def status_from_words(word: str) -> str:
    st = parse_status(word)
    if st is None:
        raise UserError(f"'{word}' is not a status. Use one of: "
                        f"{', '.join(LABELS[x] for x in STATUSES)}. Nothing was changed.")
    return st


def week_start(on: date) -> date:
    """The Monday of `on`'s week."""
    return on - timedelta(days=on.weekday())


async def history(s: AsyncSession, milestone_id: str, limit: int = 50) -> list[tuple[MilestoneUpdate, Person | None]]:
    """A milestone's updates, newest first, each with who made it (None: the programme file)."""
    rows = await s.execute(
        select(MilestoneUpdate, Person).outerjoin(Person, Person.id == MilestoneUpdate.person_id)
        .where(MilestoneUpdate.milestone_id == milestone_id)
        .order_by(MilestoneUpdate.at.desc(), MilestoneUpdate.id.desc()).limit(limit))
    return [(u, p) for u, p in rows.all()]
