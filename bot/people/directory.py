"""People and teams from a source (an HR file, a directory): the difference, then applying it.

A source hands over a `Listing` (one `Record` per person it knows, plus people it says have
left); `plan` compares it with what is stored and returns a `Plan`: joiners, movers (old team
-> new team), leavers, role changes, other details, new teams, conflicts and problems. `apply`
writes a plan in the caller's transaction (all or nothing). The same listing planned twice
gives an empty plan: importing the same file again changes nothing.

Who owns a person: the programme file outranks an HR import, which outranks a directory sync.
A source never changes a person another, higher source brought in: a difference is reported
as a conflict and the stored value kept. Leavers are not deleted; they get `left_on`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people.tables import PeopleRun, Person, PersonRole, Team
from bot.roles import ALL_ROLES, PRACTITIONER, TEAM_LEAD
from storage.base import new_id

SOURCES = ("import", "slack", "teams")
RANK = {"programme": 3, "import": 2, "slack": 1, "teams": 1}
FIELD_NAMES = ("email", "name", "team", "manager", "roles", "timezone", "work_pattern", "ends_on")
EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROLE_WORDS = {r.replace("_", ""): r for r in ALL_ROLES} | {"changeteam": "change_team",
                                                            "teamleader": TEAM_LEAD,
                                                            "manager": TEAM_LEAD}


class SourceError(Exception):
    """The source as a whole cannot be read (no email column, not UTF-8, a directory error)."""


@dataclass(frozen=True)
class Problem:
    """Something wrong with one record: blocks the whole change (nothing is written)."""

    where: str  # "row 214" or "Slack user U0123"
    column: str  # the column (or field) at fault, as the source names it
    message: str

    def __str__(self) -> str:
        return f"{self.where}, {self.column}: {self.message}" if self.column else \
            f"{self.where}: {self.message}"


@dataclass
class Record:
    """One person as a source describes them; None means the source does not say."""

    where: str
    email: str
    name: str | None = None
    team: str | None = None  # a team id or name, or a path "Children's Services/Assessment"
    manager: str | None = None  # the manager's email: their team is derived from the chain
    roles: frozenset[str] | None = None
    tz: str | None = None
    work_pattern: dict[str, Any] | None = None
    ends_on: date | None = None
    columns: dict[str, str] = field(default_factory=dict)  # field -> the source's column name

    def col(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class Listing:
    """Everything one source says, at one time."""

    source: str  # import | slack | teams
    records: list[Record]
    gone: list[tuple[str, str]] = field(default_factory=list)  # (where, email) of leavers
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things skipped on purpose (guests...)
    detail: str = ""  # the file name, the workspace


@dataclass
class _Row:
    """A stored person, as planning needs them."""

    id: str
    email: str
    name: str
    team_id: str | None
    tz: str | None
    work_pattern: dict[str, Any] | None
    source: str | None
    left_on: date | None
    ends_on: date | None
    roles: set[str] = field(default_factory=set)  # roles the sources own (not granted in chat)
    chat_roles: set[str] = field(default_factory=set)


@dataclass
class NewTeam:
    id: str
    name: str
    parent_id: str | None
    lead_person_id: str | None = None


@dataclass
class Plan:
    """The difference between a listing and what is stored, and what applying it writes."""

    source: str
    detail: str
    joiners: list[tuple[str, str]] = field(default_factory=list)  # (email, team)
    movers: list[tuple[str, str, str]] = field(default_factory=list)  # (email, old, new)
    leavers: list[str] = field(default_factory=list)
    role_changes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # name, time zone, pattern, end date
    new_teams: list[str] = field(default_factory=list)  # paths
    lead_changes: list[tuple[str, str]] = field(default_factory=list)  # (team, email)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # What apply writes:
    _insert_people: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _update_people: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _insert_teams: list[NewTeam] = field(default_factory=list, repr=False)
    _leads: dict[str, str] = field(default_factory=dict, repr=False)  # team id -> person id
    _add_roles: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _drop_roles: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _leave: list[tuple[str, date]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def empty(self) -> bool:
        return not (self.joiners or self.movers or self.leavers or self.role_changes
                    or self.updated or self.new_teams or self.lead_changes)

    def counts(self) -> dict[str, int]:
        return {"joiners": len(self.joiners), "movers": len(self.movers),
                "leavers": len(self.leavers), "role_changes": len(self.role_changes),
                "updated": len(self.updated), "new_teams": len(self.new_teams),
                "conflicts": len(self.conflicts), "problems": len(self.problems)}

    def summary(self) -> str:
        c = self.counts()
        if self.empty:
            return "no changes"
        return (f"{c['joiners']:,} joiners, {c['movers']:,} movers, {c['leavers']:,} leavers, "
                f"{c['role_changes']:,} role changes, {c['updated']:,} other updates, "
                f"{c['new_teams']:,} new teams")

    def lines(self) -> list[str]:
        """The whole difference, one line each, for a dry run."""
        out = [f"joiner: {e} -> {t}" for e, t in self.joiners]
        out += [f"mover: {e}: {old} -> {new}" for e, old, new in self.movers]
        out += [f"leaver: {e}" for e in self.leavers]
        out += [f"role change: {e}: " + ", ".join([*(f"+{r}" for r in add), *(f"-{r}" for r in rm)])
                for e, add, rm in self.role_changes]
        out += [f"updated: {e}" for e in self.updated]
        out += [f"new team: {p}" for p in self.new_teams]
        out += [f"team lead: {t} -> {e}" for t, e in self.lead_changes]
        out += [f"conflict: {c}" for c in self.conflicts]
        out += [f"note: {n}" for n in self.notes]
        out += [f"problem: {p}" for p in self.problems]
        return out


# -- reading values ---------------------------------------------------------------------------


def parse_roles(text: str) -> tuple[frozenset[str], list[str]]:
    """Roles from 'change team; team lead' (any case, commas or semicolons); and unknown words."""
    roles, bad = set(), []
    for word in re.split(r"[;,|]", text):
        key = re.sub(r"[\s_\-]+", "", word.strip().lower())
        if not key:
            continue
        if key in ROLE_WORDS:
            roles.add(ROLE_WORDS[key])
        else:
            bad.append(word.strip())
    return frozenset(roles - {PRACTITIONER}), bad


def parse_work_pattern(text: str) -> dict[str, Any] | None:
    """'mon-fri 09:00-17:00' or 'mon,wed,sat 17:00-23:00' as the programme stores a pattern."""
    m = re.fullmatch(r"\s*([a-z,\-\s]+?)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text.lower())
    if not m:
        return None
    days: list[str] = []
    for part in m.group(1).replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if a[:3] not in DAYS or (b and b[:3] not in DAYS):
            return None
        i, j = DAYS.index(a[:3]), DAYS.index((b or a)[:3])
        days += [DAYS[k % 7] for k in range(i, j + 1 if j >= i else j + 8)]
    start, end = (f"{int(t.split(':')[0]):02d}:{t.split(':')[1]}" for t in m.group(2, 3))
    if start == end or int(start[:2]) > 23 or int(end[:2]) > 23:
        return None
    return {"start": start, "end": end, "days": [d for d in DAYS if d in days]}


def parse_date(value: Any) -> date | None:
    """A date from 2027-03-31, 31/03/2027 (UK order) or a spreadsheet date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")
    return s or "team"


# -- planning ---------------------------------------------------------------------------------


class _Teams:
    """The stored team tree, plus the teams this plan creates."""

    def __init__(self, rows: Iterable[Any], plan: Plan, source: str) -> None:
        self.plan, self.source = plan, source
        self.by_id: dict[str, Any] = {}
        self.children: dict[tuple[str | None, str], str] = {}
        self.by_name: dict[str, list[str]] = {}
        self.lead: dict[str, str | None] = {}
        self.team_source: dict[str, str | None] = {}
        self.parent: dict[str, str | None] = {}
        self.name: dict[str, str] = {}
        for t in rows:
            self._know(t.id, t.name, t.parent_id, t.lead_person_id, t.source)
        self.had_teams = bool(self.by_id)

    def _know(self, tid: str, name: str, parent: str | None, lead: str | None,
              source: str | None) -> None:
        self.by_id[tid] = True
        self.name[tid], self.parent[tid], self.lead[tid] = name, parent, lead
        self.team_source[tid] = source
        self.children[(parent, name.strip().lower())] = tid
        self.by_name.setdefault(name.strip().lower(), []).append(tid)

    def path(self, tid: str | None) -> str:
        if tid is None:
            return "(no team)"
        parts, seen = [], set()
        while tid is not None and tid not in seen:
            seen.add(tid)
            parts.append(self.name.get(tid, tid))
            tid = self.parent.get(tid)
        return "/".join(reversed(parts))

    def find(self, ref: str) -> str | None:
        """An existing (or planned) team by id or name; None if unknown or ambiguous."""
        key = ref.strip()
        if key in self.by_id:
            return key
        ids = self.by_name.get(key.lower(), [])
        if len(ids) == 1:
            return ids[0]
        tops = [t for t in ids if self.parent.get(t) is None]
        return tops[0] if len(tops) == 1 else None

    def child(self, parent: str | None, name: str) -> str:
        """The team `name` under `parent`, created in this plan if there is none."""
        found = self.children.get((parent, name.strip().lower()))
        if found is not None:
            return found
        base = slug(name)[:64]
        tid = base
        if tid in self.by_id and parent:
            tid = f"{parent}-{base}"[:64]
        n = 2
        while tid in self.by_id:
            tid = f"{base[:58]}-{n}"
            n += 1
        self._know(tid, name.strip()[:200], parent, None, self.source)
        self.plan._insert_teams.append(NewTeam(tid, name.strip()[:200], parent))
        self.plan.new_teams.append(self.path(tid))
        return tid

    def resolve(self, ref: str) -> tuple[str | None, str | None]:
        """(team id, None) for an id, a name or a path; (None, why) when it cannot be placed.

        A path starts at a team that exists (from the programme file, or an earlier import);
        the teams below it are created. Only into an empty organisation may a file bring its
        own top-level teams."""
        parts = [p.strip() for p in ref.split("/") if p.strip()]
        if not parts:
            return None, "is empty"
        top = self.find(parts[0])
        if top is None:
            if len(parts) == 1 and not self.had_teams:
                return self.child(None, parts[0]), None
            if len(parts) == 1:
                return None, (f"no team '{parts[0]}' (give a team id or name from the programme "
                              "file, or a path from the top, like Children's Services/Assessment)")
            if self.had_teams:
                tops = sorted(self.name[t] for t in self.by_id if self.parent[t] is None)
                like = f", like {tops[0]}" if tops else ""
                return None, (f"unknown parent team '{parts[0]}' in '{ref}' (a path starts at a "
                              f"team in the programme file{like})")
            top = self.child(None, parts[0])
        tid = top
        for name in parts[1:]:
            tid = self.child(tid, name)
        return tid, None


async def plan(s: AsyncSession, listing: Listing, today: date) -> Plan:
    """What applying `listing` would change; problems make it inapplicable (see `Plan.ok`)."""
    p = Plan(listing.source, listing.detail, problems=list(listing.problems),
             notes=list(listing.notes))
    source = listing.source
    teams = _Teams((await s.execute(select(Team))).scalars().all(), p, source)
    rows = await _stored(s)
    by_email = {r.email: r for r in rows.values()}

    # Each email once, valid.
    records: dict[str, Record] = {}
    for rec in listing.records:
        if not EMAIL.match(rec.email):
            p.problems.append(Problem(rec.where, rec.col("email"),
                                      f"'{rec.email[:80]}' is not an email address"))
            continue
        if rec.email in records:
            p.problems.append(Problem(rec.where, rec.col("email"),
                                      f"{rec.email} appears twice (also {records[rec.email].where})"))
            continue
        records[rec.email] = rec

    # Managers must be people we know, and the chain must end.
    for rec in records.values():
        if rec.manager is None:
            continue
        if rec.manager == rec.email:
            p.problems.append(Problem(rec.where, rec.col("manager"), "a person cannot manage themselves"))
        elif rec.manager not in records and (rec.manager not in by_email
                                             or by_email[rec.manager].left_on is not None):
            p.problems.append(Problem(rec.where, rec.col("manager"),
                                      f"no person with email {rec.manager}"))
        else:
            chain: list[str] = [rec.email]
            at: str | None = rec.manager
            while at is not None and at in records:
                if at in chain:
                    loop = " -> ".join([*chain[chain.index(at):], at])
                    p.problems.append(Problem(rec.where, rec.col("manager"),
                                              f"the management chain loops: {loop}"))
                    break
                chain.append(at)
                at = records[at].manager
    if p.problems:
        return p  # teams are derived from managers: nothing more is reliable

    # New people get their ids now, so a team can be led by a joiner.
    ids = {e: (by_email[e].id if e in by_email else new_id()) for e in records}

    # Teams: ids, names and paths first; then those derived from the management chain.
    wanted_team: dict[str, str | None] = {}
    for rec in records.values():
        if rec.team:
            tid, why = teams.resolve(rec.team)
            if why:
                p.problems.append(Problem(rec.where, rec.col("team"), why))
            wanted_team[rec.email] = tid
    led = {t: lead for t, lead in teams.lead.items()}
    leads_of: dict[str, list[str]] = {}  # person id -> teams they lead (kept with `led`)
    for t, lead in led.items():
        if lead is not None:
            leads_of.setdefault(lead, []).append(t)

    def set_lead(tid: str, pid: str) -> None:
        old = led.get(tid)
        if old is not None and tid in leads_of.get(old, []):
            leads_of[old].remove(tid)
        led[tid] = pid
        leads_of.setdefault(pid, []).append(tid)

    def lead_by_role(rec: Record) -> None:
        """A 'team lead' role leads the team the person is in."""
        tid = wanted_team.get(rec.email) or (by_email[rec.email].team_id
                                             if rec.email in by_email else None)
        if tid is None:
            p.problems.append(Problem(rec.where, rec.col("roles"), "a team lead needs a team"))
        elif led.get(tid) not in (None, ids[rec.email]) and \
                teams.team_source.get(tid) in (None, "programme"):
            p.conflicts.append(f"{rec.where}, {rec.col('roles')}: {teams.path(tid)} is led by "
                               "someone else in the programme file; kept the programme file's")
        else:
            set_lead(tid, ids[rec.email])

    def managed_team(email: str, depth: int = 0) -> str | None:
        """A person's team from the management chain: the team their manager leads, else a
        team named after the manager, under the manager's own team."""
        rec = records[email]
        if rec.email in wanted_team:
            return wanted_team[rec.email]
        if rec.manager is None or depth > 100:
            known = by_email.get(email)
            return known.team_id if known else None
        mgr_id = ids.get(rec.manager) or by_email[rec.manager].id
        mine = next((t for t in leads_of.get(mgr_id, []) if not teams.name[t].startswith("Team of ")),
                    None)
        if mine is None:
            parent = managed_team(rec.manager, depth + 1) if rec.manager in records else \
                by_email[rec.manager].team_id
            mgr = records.get(rec.manager)
            label = (mgr.name if mgr and mgr.name else None) or \
                (by_email[rec.manager].name if rec.manager in by_email else "") or rec.manager
            mine = teams.child(parent, f"Team of {label}")  # found again by name under its parent
            if led.get(mine) is None:
                set_lead(mine, mgr_id)
        wanted_team[email] = mine
        return mine

    def leads_role(rec: Record) -> bool:
        return rec.roles is not None and TEAM_LEAD in rec.roles

    # Leads of named teams first, so their reports join the team they lead.
    for rec in records.values():
        if leads_role(rec) and (rec.email in wanted_team or rec.manager is None):
            lead_by_role(rec)
    for rec in records.values():
        if rec.email not in wanted_team and rec.manager is not None:
            managed_team(rec.email)
            if leads_role(rec):
                lead_by_role(rec)
    email_of = {i: e for e, i in ids.items()}
    new_team_ids = {t.id: t for t in p._insert_teams}
    for tid, lead in led.items():
        if lead is not None and lead != teams.lead.get(tid):
            if tid in new_team_ids:
                new_team_ids[tid].lead_person_id = lead
            else:
                p._leads[tid] = lead
            p.lead_changes.append((teams.path(tid), email_of.get(lead, lead)))
    if p.problems:
        return p

    # People: joiners, movers, details, roles.
    for rec in records.values():
        known = by_email.get(rec.email)
        team = wanted_team.get(rec.email)
        if rec.ends_on is not None and rec.ends_on < today:
            if known is not None and known.left_on is None and known.source == source:
                p.leavers.append(rec.email)
                p._leave.append((known.id, rec.ends_on + timedelta(days=1)))
            else:
                p.notes.append(f"{rec.where}: {rec.email} left on {rec.ends_on.isoformat()}; not added")
            continue
        if known is not None and known.source is not None and known.source != source \
                and RANK.get(known.source, 0) >= RANK.get(source, 0):
            _conflicts(p, rec, known, team, teams)
            continue
        roles = set(rec.roles - {TEAM_LEAD}) if rec.roles is not None else None
        if known is None:
            p.joiners.append((rec.email, teams.path(team)))
            p._insert_people.append({
                "id": ids[rec.email], "email": rec.email, "display_name": (rec.name or "")[:200],
                "tz": rec.tz, "team_id": team, "work_pattern": rec.work_pattern,
                "from_programme": False, "source": source, "left_on": None, "ends_on": rec.ends_on})
            for r in sorted(roles or ()):
                p._add_roles.append((ids[rec.email], r))
            continue
        new_team = team if rec.email in wanted_team else known.team_id
        new: dict[str, Any] = {
            "id": known.id,
            "display_name": (rec.name or "")[:200] if rec.name is not None else known.name,
            "tz": rec.tz if rec.tz is not None else known.tz,
            "team_id": new_team,
            "work_pattern": rec.work_pattern if rec.work_pattern is not None else known.work_pattern,
            "source": source, "left_on": None,
            "ends_on": rec.ends_on if "ends_on" in rec.columns else known.ends_on,
        }
        old = {"id": known.id, "display_name": known.name, "tz": known.tz,
               "team_id": known.team_id, "work_pattern": known.work_pattern,
               "source": known.source, "left_on": known.left_on, "ends_on": known.ends_on}
        if known.left_on is not None or known.source is None:
            p.joiners.append((rec.email, teams.path(new_team)))
        elif new_team != known.team_id:
            p.movers.append((rec.email, teams.path(known.team_id), teams.path(new_team)))
        elif new != old:
            p.updated.append(rec.email)
        if new != old:
            p._update_people.append(new)
        if roles is not None:
            add = sorted(roles - known.roles - known.chat_roles)
            drop = sorted(known.roles - roles)
            if add or drop:
                p.role_changes.append((rec.email, add, drop))
                p._add_roles += [(known.id, r) for r in add]
                p._drop_roles += [(known.id, r) for r in drop]

    # Leavers: this source's people it no longer lists, and those it says have gone.
    gone = dict((e, w) for w, e in listing.gone)
    for row in rows.values():
        if row.source != source or row.left_on is not None:
            continue
        if row.email in gone or row.email not in records:
            p.leavers.append(row.email)
            p._leave.append((row.id, today))
    for email, where in gone.items():
        known = by_email.get(email)
        if known is not None and known.left_on is None and known.source not in (source, None):
            p.conflicts.append(f"{where}: {email} has left here, but comes from the "
                               f"{_source_name(known.source)}; kept")
    p.leavers.sort()
    return p


def _source_name(source: str | None) -> str:
    return {"programme": "programme file", "import": "HR import", "slack": "Slack sync",
            "teams": "Microsoft Entra ID sync"}.get(source or "", "chat")


def _conflicts(p: Plan, rec: Record, known: _Row, team: str | None, teams: _Teams) -> None:
    """A person a higher source owns: report each difference, change nothing."""
    owner = _source_name(known.source)
    if rec.team is not None or rec.manager is not None:
        if team != known.team_id:
            p.conflicts.append(f"{rec.where}, {rec.col('team')}: {rec.email} is in "
                               f"{teams.path(known.team_id)} in the {owner}; this says "
                               f"{teams.path(team)}; kept the {owner}'s")
    if rec.name is not None and rec.name.strip() and rec.name != known.name:
        p.conflicts.append(f"{rec.where}, {rec.col('name')}: {rec.email} is '{known.name}' in the "
                           f"{owner}; this says '{rec.name}'; kept the {owner}'s")
    if rec.roles is not None and set(rec.roles - {TEAM_LEAD}) != known.roles:
        p.conflicts.append(f"{rec.where}, {rec.col('roles')}: {rec.email} has roles "
                           f"{', '.join(sorted(known.roles)) or 'none'} in the {owner}; this says "
                           f"{', '.join(sorted(rec.roles)) or 'none'}; kept the {owner}'s")


async def _stored(s: AsyncSession) -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    for r in (await s.execute(select(
            Person.id, Person.email, Person.display_name, Person.team_id, Person.tz,
            Person.work_pattern, Person.source, Person.from_programme, Person.left_on,
            Person.ends_on).where(Person.email.is_not(None)))).all():
        rows[r.id] = _Row(r.id, r.email, r.display_name, r.team_id, r.tz, r.work_pattern,
                          "programme" if r.from_programme else r.source, r.left_on, r.ends_on)
    for pid, role, in_chat in (await s.execute(
            select(PersonRole.person_id, PersonRole.role, PersonRole.granted_in_chat))).all():
        row = rows.get(pid)
        if row is not None and role != PRACTITIONER:
            (row.chat_roles if in_chat else row.roles).add(role)
    return rows


# -- applying -------------------------------------------------------------------------------


async def apply(s: AsyncSession, p: Plan, now: datetime) -> None:
    """Write `p` in the caller's transaction, and record the run. Refuses a plan with problems."""
    if p.problems:
        raise ValueError("a plan with problems cannot be applied")
    for t in p._insert_teams:  # parents were planned before their children
        await s.execute(insert(Team), [{"id": t.id, "name": t.name, "parent_id": t.parent_id,
                                        "lead_person_id": None, "source": p.source}])
    if p._insert_people:
        for i in range(0, len(p._insert_people), 5000):
            await s.execute(insert(Person), p._insert_people[i:i + 5000])
    # Updates by primary key, many rows per statement (SQLAlchemy's bulk UPDATE).
    for i in range(0, len(p._update_people), 5000):
        await s.execute(update(Person), p._update_people[i:i + 5000])
    leave = [{"id": pid, "left_on": day} for pid, day in p._leave]
    for i in range(0, len(leave), 5000):
        await s.execute(update(Person), leave[i:i + 5000])
    leads = {t.id: t.lead_person_id for t in p._insert_teams if t.lead_person_id} | p._leads
    for tid, pid in leads.items():
        await s.execute(update(Team).where(Team.id == tid).values(lead_person_id=pid))
    if p._add_roles:
        await s.execute(insert(PersonRole), [{"person_id": pid, "role": r, "granted_in_chat": False}
                                             for pid, r in p._add_roles])
    for pid, r in p._drop_roles:
        await s.execute(delete(PersonRole).where(
            PersonRole.person_id == pid, PersonRole.role == r, PersonRole.granted_in_chat.is_(False)))
    s.add(PeopleRun(source=p.source, at=now, outcome="no changes" if p.empty else "applied",
                    detail=p.detail[:300], counts=p.counts()))
    await s.flush()


async def record_failure(s: AsyncSession, source: str, detail: str, now: datetime,
                         problems: int = 0) -> None:
    """Note a sync that could not be applied, so the change team sees it in chat."""
    s.add(PeopleRun(source=source, at=now, outcome="failed", detail=detail[:300],
                    counts={"problems": problems}))


async def end_contracts(s: AsyncSession, today: date) -> int:
    """People whose fixed-term contract ended before `today` become leavers; how many."""
    res = await s.execute(update(Person).where(
        Person.left_on.is_(None), Person.ends_on.is_not(None), Person.ends_on < today,
    ).values(left_on=today))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def last_run(s: AsyncSession) -> PeopleRun | None:
    """The latest recorded import or sync."""
    return (await s.execute(select(PeopleRun).order_by(PeopleRun.at.desc()).limit(1))
            ).scalar_one_or_none()


async def counts_by_team(s: AsyncSession) -> list[tuple[str | None, int]]:
    """Current people per team id (None: no team); leavers are not counted."""
    rows = await s.execute(select(Person.team_id, func.count()).where(
        Person.left_on.is_(None), Person.source.is_not(None)).group_by(Person.team_id))
    return [(t, int(n)) for t, n in rows.all()]


async def run(db: Any, listing: Listing, now: datetime, *, dry_run: bool = False) -> Plan:
    """Plan `listing` and, unless a dry run or it has problems, apply it: one transaction."""
    async with db.session() as s:
        p = await plan(s, listing, now.date())
        if not dry_run and p.ok:
            await apply(s, p, now)
    return p
