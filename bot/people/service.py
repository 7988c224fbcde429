"""Looking people up: identities to person records, roles, teams, reachability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, delete, exists, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.model import ConversationRef, UserRef
from bot.people.tables import Identity, Person, PersonRole, Setting, Team
from bot.roles import CHANGE_TEAM, PRACTITIONER, TEAM_LEAD
from storage.db import connection_of
from storage.prepared import Prepared


@lru_cache(maxsize=512)
def valid_tz(name: str | None) -> str | None:
    """A time zone name we can use, or None (platforms and payloads can send anything)."""
    if not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


class NotEnrolled(Exception):
    """A platform user who is not a person of the programme and may not enrol themselves."""


class MustEnrol(Exception):
    """A platform user who matches no person and may enrol themselves: their person is
    created first, in a transaction of its own (`enrol`), never in their event's."""


# Setting written by the programme's organisation section: {"self_enrol": bool, "contact": str}.
ENROLMENT = "enrolment"


async def may_enrol(s: AsyncSession, user: UserRef) -> bool:
    """Whether an account that matches no person may become a new practitioner.

    Guests never may. Once a programme's organisation is loaded, only with
    `organisation.self_enrol: true`. Before any is loaded, and while no HR import or
    directory sync brought anyone, there is nobody to check against (a fresh install being
    tried out), so anyone may.
    """
    if user.guest:
        return False
    row = await s.get(Setting, ENROLMENT)
    if row is not None and isinstance(row.value, dict):
        return bool(row.value.get("self_enrol"))
    listed = await s.execute(select(exists().where(
        Person.from_programme.is_(True) | Person.source.is_not(None))))
    return not listed.scalar()


async def enrolment_contact(s: AsyncSession) -> str:
    """Who a person outside the programme should ask: the programme's contact, else the
    change team's addresses."""
    row = await s.get(Setting, ENROLMENT)
    contact = row.value.get("contact") if row is not None and isinstance(row.value, dict) else None
    if isinstance(contact, str) and contact.strip():
        return contact.strip()
    emails = [p.email for p in await people_with_role(s, CHANGE_TEAM) if p.email]
    return ", ".join(emails[:3]) if emails else "the change team"


async def person_for(s: AsyncSession, user: UserRef) -> Person:
    """The person behind a platform user; linked by verified email, created if new and
    allowed (`may_enrol`), else NotEnrolled."""
    found = (
        await s.execute(
            select(Identity, Person)
            .join(Person, Identity.person_id == Person.id)
            .where(
                Identity.platform == user.platform,
                Identity.workspace == user.workspace,
                Identity.user_id == user.user_id,
            )
        )
    ).first()
    if found is not None:
        known: Person = found[1]
        tz = valid_tz(user.tz)
        if tz and known.tz != tz and not known.from_programme:
            known.tz = tz
        return known
    person, created = await _found_or_enrolled(s, user)
    if not created and valid_tz(user.tz) and not person.tz:
        person.tz = valid_tz(user.tz)
    s.add(
        Identity(
            platform=user.platform,
            workspace=user.workspace,
            user_id=user.user_id,
            person_id=person.id,
        )
    )
    await s.flush()
    return person


async def _found_or_enrolled(s: AsyncSession, user: UserRef) -> tuple[Person, bool]:
    """The person an account belongs to, by its verified email, or a new practitioner if
    enrolment allows (`may_enrol`), else NotEnrolled; True when the person was created."""
    person = await _by_email(s, user)
    if person is not None:
        return person, False
    if not await may_enrol(s, user):
        raise NotEnrolled(user.platform)
    person = Person(
        email=user.email.lower() if user.email and len(user.email) <= 320 else None,
        display_name=(user.display_name or "")[:200],
        tz=valid_tz(user.tz),
    )
    s.add(person)
    await s.flush()
    s.add(PersonRole(person_id=person.id, role=PRACTITIONER))
    await s.flush()
    return person, True


# The sender of almost every event is known: one prepared statement finds them, their roles
# and their DM route (a row per granted role; built once, so SQLAlchemy's statement cache hits).
_KNOWN = (
    select(Identity.dm, Identity.reachable, Person.id, Person.email, Person.display_name,
           Person.tz, Person.team_id, Person.work_pattern, Person.from_programme,
           PersonRole.role,
           exists().where(Team.lead_person_id == Person.id).label("leads"))
    .join(Person, Identity.person_id == Person.id)
    .outerjoin(PersonRole, PersonRole.person_id == Person.id)
    .where(Identity.platform == bindparam("platform"),
           Identity.workspace == bindparam("workspace"),
           Identity.user_id == bindparam("user_id"))
)
_KNOWN_RUN = Prepared(_KNOWN)


async def known_sender(
    s: AsyncSession | AsyncConnection, user: UserRef
) -> tuple[Person, frozenset[str], dict[str, Any] | None, bool] | None:
    """Who a stored platform account is, their roles, its stored DM route and whether it is
    reachable, in one statement that writes nothing; None if the account is not stored.
    The Person is a new object, in no session: changing it writes nothing."""
    conn = await connection_of(s)
    rows = await _KNOWN_RUN.all(conn, {"platform": user.platform, "workspace": user.workspace,
                                       "user_id": user.user_id})
    if not rows:
        return None
    r = rows[0]
    return _detached(r), _roles(rows), r.dm, bool(r.reachable)


_new_person = Person.__mapper__.class_manager.new_instance


def _detached(r: Any) -> Person:
    """A Person from a row of `_KNOWN`, `_HELD_SENDER` or `_BY_ID`, in no session, built as the
    ORM builds a loaded object (its state, then its values), not through `__init__`, whose
    seven attribute events cost a fifth of the sender lookup. Setting an attribute later
    still goes through the ORM's events; the object is never added to a session."""
    person: Person = _new_person()
    person.__dict__.update(id=r.id, email=r.email, display_name=r.display_name, tz=r.tz,
                           team_id=r.team_id, work_pattern=r.work_pattern,
                           from_programme=r.from_programme)
    return person


def _roles(rows: Sequence[Any]) -> frozenset[str]:
    """Granted roles (a row each), practitioner, and team lead for anyone who leads a team:
    what `roles_of` returns."""
    roles = {PRACTITIONER, *(x.role for x in rows if x.role is not None)}
    if rows[0].leads:
        roles.add(TEAM_LEAD)
    return frozenset(roles)


# An account linked by this process and not stored yet (bot/people/held.py): the person and
# their roles by id, in one prepared statement like `_KNOWN` (no ORM session, no statement
# built per call).
_HELD_SENDER = (
    select(Person.id, Person.email, Person.display_name, Person.tz, Person.team_id,
           Person.work_pattern, Person.from_programme, PersonRole.role,
           exists().where(Team.lead_person_id == Person.id).label("leads"))
    .outerjoin(PersonRole, PersonRole.person_id == Person.id)
    .where(Person.id == bindparam("pid"))
)
_HELD_SENDER_RUN = Prepared(_HELD_SENDER)


async def sender_by_id(s: AsyncSession | AsyncConnection,
                       person_id: str) -> tuple[Person, frozenset[str]] | None:
    """A person as a new object in no session, and their roles (as `roles_of`), in one
    statement; None if gone (erased since)."""
    conn = await connection_of(s)
    rows = await _HELD_SENDER_RUN.all(conn, {"pid": person_id})
    if not rows:
        return None
    r = rows[0]
    return _detached(r), _roles(rows)


_BY_ID = select(Person.id, Person.email, Person.display_name, Person.tz, Person.team_id,
                Person.work_pattern, Person.from_programme).where(Person.id == bindparam("pid"))


async def person_by_id(s: AsyncSession | AsyncConnection, person_id: str) -> Person | None:
    """A person as a new object in no session (changing it writes nothing); None if gone."""
    conn = await connection_of(s)
    r = (await conn.execute(_BY_ID, {"pid": person_id})).first()
    if r is None:
        return None
    return _detached(r)


async def person_to_link(s: AsyncSession, user: UserRef) -> Person:
    """The person an account not stored yet belongs to (by verified email); MustEnrol if
    there is none and the account may enrol (`may_enrol`), else NotEnrolled. Writes nothing:
    the caller holds the link (bot/people/held.py)."""
    person = await _by_email(s, user)
    if person is None:
        raise MustEnrol(user.platform) if await may_enrol(s, user) else NotEnrolled(user.platform)
    found = await person_by_id(s, person.id)
    assert found is not None
    return found


async def enrol(s: AsyncSession, user: UserRef) -> str:
    """The id of the person an account belongs to, created as a new practitioner if there is
    none and enrolment allows (else NotEnrolled). The link of a person found is not stored
    (the caller holds it); a person created is stored with their account's link, undated:
    the link is all that says who someone without an email is, so two replicas enrolling
    the same account at once create one person (the second's link conflicts, and its retry
    finds the first's)."""
    linked = await s.scalar(select(Identity.person_id).where(
        Identity.platform == user.platform, Identity.workspace == user.workspace,
        Identity.user_id == user.user_id))
    if linked is not None:
        return linked
    person, created = await _found_or_enrolled(s, user)
    if created:
        s.add(Identity(platform=user.platform, workspace=user.workspace, user_id=user.user_id,
                       person_id=person.id))
        await s.flush()
    return person.id


async def _by_email(s: AsyncSession, user: UserRef) -> Person | None:
    if not user.email:
        return None
    return (await s.execute(
        select(Person).where(Person.email == user.email.lower()))).scalar_one_or_none()


async def person_by_email(s: AsyncSession, email: str) -> Person | None:
    return (
        await s.execute(select(Person).where(Person.email == email.strip().lower()))
    ).scalar_one_or_none()


async def roles_of(s: AsyncSession, person_id: str) -> frozenset[str]:
    """Granted roles, plus team lead for anyone who leads a team (one query)."""
    leads = select(literal(TEAM_LEAD)).where(
        exists().where(Team.lead_person_id == person_id)
    )
    rows = await s.execute(
        select(PersonRole.role).where(PersonRole.person_id == person_id).union_all(leads)
    )
    return frozenset({*rows.scalars(), PRACTITIONER})


async def people_with_role(s: AsyncSession, role: str) -> list[Person]:
    """Current people (not leavers) with `role`."""
    if role == TEAM_LEAD:
        q = select(Person).where(
            Person.id.in_(select(Team.lead_person_id).where(Team.lead_person_id.is_not(None)))
        )
    elif role == PRACTITIONER:
        q = select(Person)
    else:
        q = select(Person).join(PersonRole, PersonRole.person_id == Person.id).where(
            PersonRole.role == role
        )
    q = q.where(Person.left_on.is_(None))  # leavers are not asked or told anything
    return list((await s.execute(q.order_by(Person.id))).scalars())


# Asked on every feedback form sent (its thanks says whether a lead has it): built once, run on
# the DB-API cursor (storage.prepared), not an ORM statement made and compiled each time.
_ANY_WITH_ROLE = Prepared(
    select(PersonRole.person_id).join(Person, Person.id == PersonRole.person_id)
    .where(PersonRole.role == bindparam("role"), Person.left_on.is_(None))
    .limit(1))


async def any_with_role(s: AsyncSession | AsyncConnection, role: str) -> bool:
    """Whether some current person (not a leaver) holds `role` (a role granted by name)."""
    return bool(await _ANY_WITH_ROLE.all(await connection_of(s), {"role": role}))


async def current_of(s: AsyncSession, ids: set[str]) -> set[str]:
    """Those of `ids` who have not left."""
    out: set[str] = set()
    chunk = sorted(ids)
    for i in range(0, len(chunk), 1000):
        out |= set((await s.execute(select(Person.id).where(
            Person.id.in_(chunk[i:i + 1000]), Person.left_on.is_(None)))).scalars())
    return out


async def teams_led_by(s: AsyncSession, person_id: str) -> list[Team]:
    return list(
        (await s.execute(select(Team).where(Team.lead_person_id == person_id))).scalars()
    )


async def team_and_descendants(s: AsyncSession, team_id: str) -> set[str]:
    """A team's id and the ids of every team below it."""
    teams = (await s.execute(select(Team.id, Team.parent_id))).all()
    children: dict[str | None, list[str]] = {}
    for tid, parent in teams:
        children.setdefault(parent, []).append(tid)
    out: set[str] = set()
    stack = [team_id]
    while stack:
        t = stack.pop()
        if t in out:
            continue
        out.add(t)
        stack.extend(children.get(t, []))
    return out


async def find_team(s: AsyncSession, name: str) -> Team | None:
    """A team by id or by name, case-insensitive."""
    key = name.strip().lower()
    for team in (await s.execute(select(Team))).scalars():
        if team.id.lower() == key or team.name.lower() == key:
            return team
    return None


async def identities_of(s: AsyncSession, person_id: str) -> list[Identity]:
    rows = await s.execute(
        select(Identity)
        .where(Identity.person_id == person_id)
        .order_by(Identity.updated_at.desc().nulls_last())
    )
    return list(rows.scalars())


def conversation_to_json(conv: ConversationRef) -> dict[str, Any]:
    d = asdict(conv)
    d["data"] = [list(p) for p in conv.data]
    return d


def conversation_from_json(d: dict[str, Any]) -> ConversationRef:
    return ConversationRef(
        platform=d["platform"],
        workspace=d["workspace"],
        conversation_id=d["conversation_id"],
        thread_id=d.get("thread_id"),
        is_direct=d.get("is_direct", True),
        data=tuple((str(k), str(v)) for k, v in d.get("data", [])),
    )


async def grant_role(s: AsyncSession, person_id: str, role: str) -> bool:
    """Grant a role; False if the person had it already."""
    if await s.get(PersonRole, (person_id, role)) is not None:
        return False
    s.add(PersonRole(person_id=person_id, role=role, granted_in_chat=True))
    return True


async def revoke_role(s: AsyncSession, person_id: str, role: str) -> bool:
    res = await s.execute(
        delete(PersonRole).where(PersonRole.person_id == person_id, PersonRole.role == role)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]
