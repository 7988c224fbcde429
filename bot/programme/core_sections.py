"""The sections every programme has: programme settings, themes, organisation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, delete, event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import QueryContext, Session

from bot.people.service import ENROLMENT
from bot.people.tables import Person, PersonRole, Setting, Team, Theme
from bot.programme.schema import Doc, Section
from bot.roles import ALL_ROLES, TEAM_LEAD
from storage.perkey import PerKey

DEFAULT_WORKING_HOURS = {"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# -- settings, read through a short-lived cache ----------------------------------------------
#
# Nearly every request reads a setting (the programme's time zone, working hours...), which
# changes only when a programme is loaded. Values are kept per engine (so per `Database`) for
# SETTINGS_TTL_S: another process (a replica, `programme load` from the command line) is seen
# within that. A write by this process through the ORM (`set_setting`, a changed `Setting`
# row) is seen at once:
# - a session holding a `Setting` object (loaded or added) reads with `Session.get` as before,
#   so it sees its own changes, flushed or not;
# - its commit (or rollback) after flushing a `Setting` change empties the cache;
# - a value is kept only if no such write was seen since the read's transaction began (a
#   session's; a bare connection's read) or the statement was sent (so an old snapshot or a
#   read racing a commit is not kept).
# Settings written with a Core statement (`update(Setting)` on a connection or through
# `session.execute`) are not tracked: call `forget_settings` after committing one, or they are
# seen after the time to live. Engine-level events would catch them but cost every
# transaction of every request (~15 us: SQLAlchemy then joins event dispatch per connection).
# A value from the cache is a fresh copy: callers may change it without touching the cache.
# `get_setting_as` instead hands out one parsed object per stored value (parsed again when the
# value read differs), so its parser must return something immutable.

SETTINGS_TTL_S = 1.0
_READ = select(Setting.__table__.c.value).where(Setting.__table__.c.key == bindparam("key"))
_TOUCHED = "staffvoice.settings_touched"  # Session.info: holds Setting objects
_WROTE = "staffvoice.settings_wrote"  # Session.info: flushed a Setting change
_BEGAN = "staffvoice.settings_began"  # Session.info: cache generation at BEGIN


T = TypeVar("T")


class SettingsCache:
    """Setting values of one engine: key -> (read at, JSON text, or None for no row); and
    (key, parser) -> (the JSON text parsed, what the parser made of it)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[float, str | None]] = {}
        self.parsed: dict[tuple[str, Callable[[Any], Any]], tuple[str | None, Any]] = {}
        self.generation = 0  # bumped by every write seen

    def clear(self) -> None:
        self.generation += 1
        self.values.clear()
        self.parsed.clear()


settings_cache: PerKey[Engine, SettingsCache] = PerKey(SettingsCache)
"""`settings_cache(engine)`: the cache of `engine` (a sync engine:
`Database.engine.sync_engine`)."""


def forget_settings(engine: Engine | AsyncEngine) -> None:
    """Drop cached settings of `engine` (after committing a Core statement on `settings`)."""
    settings_cache(engine.sync_engine if isinstance(engine, AsyncEngine) else engine).clear()


def _engine_of(session: Session) -> Engine | None:
    bind = session.bind
    return bind if isinstance(bind, Engine) else bind.engine if bind is not None else None


@event.listens_for(Setting, "load")
def _setting_loaded(target: Setting, context: QueryContext) -> None:
    context.session.info[_TOUCHED] = True


@event.listens_for(Session, "transient_to_pending")
def _setting_added(session: Session, instance: Any) -> None:
    if isinstance(instance, Setting):
        session.info[_TOUCHED] = True


@event.listens_for(Session, "after_begin")
def _session_began(session: Session, transaction: Any, connection: Connection) -> None:
    session.info[_BEGAN] = settings_cache(connection.engine).generation


@event.listens_for(Session, "after_flush")
def _session_flushed(session: Session, flush_context: Any) -> None:
    # Until the commit others rightly read the old value; the commit (or rollback) empties.
    if session.info.get(_TOUCHED) and any(
        isinstance(o, Setting) for objs in (session.new, session.dirty, session.deleted) for o in objs
    ):
        session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _session_ended(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        engine = _engine_of(session)
        if engine is not None:
            settings_cache(engine).clear()


async def get_setting(s: AsyncSession | AsyncConnection, key: str, default: Any = None, *,
                      ttl: float = SETTINGS_TTL_S) -> Any:
    """A setting's value (`default` when there is none), at most `ttl` seconds old unless this
    process changed it since. Works in an ORM session or on a bare connection."""
    found, text, _ = await _read(s, key, ttl)
    if found is not _TEXT:
        return default if found is None else found
    return default if text is None else json.loads(text)


async def get_setting_as(s: AsyncSession | AsyncConnection, key: str, parse: Callable[[Any], T],
                         *, ttl: float = SETTINGS_TTL_S) -> T:
    """`parse(value)` of a setting (None when there is none), read as `get_setting` reads it
    and parsed once per stored value: while the value read is the same, every caller gets the
    same object (so `parse` must return an immutable one); a changed value is parsed again."""
    found, text, cache = await _read(s, key, ttl)
    if found is not _TEXT or cache is None:
        return parse(found)
    memo = cache.parsed.get((key, parse))
    # The text is compared, not trusted: another process (`programme load`, a replica) changes
    # a setting without clearing this process's cache, and the text read is then new.
    if memo is not None and memo[0] == text:
        parsed: T = memo[1]
        return parsed
    parsed = parse(None if text is None else json.loads(text))
    cache.parsed[(key, parse)] = (text, parsed)
    return parsed


_TEXT: Any = object()  # _read's first item when the value is its JSON text


async def _read(s: AsyncSession | AsyncConnection, key: str,
                ttl: float) -> tuple[Any, str | None, SettingsCache | None]:
    """(_TEXT, the value's JSON text or None for no row, the engine's cache) through the cache;
    (the value, None, None) read with `Session.get` in a session holding `Setting` objects."""
    if isinstance(s, AsyncSession):
        if s.info.get(_TOUCHED) or s.bind is None:
            obj = await s.get(Setting, key)
            return (None if obj is None else obj.value), None, None
        cache = settings_cache(s.bind.sync_engine)
    else:
        cache = settings_cache(s.sync_engine)
    hit = cache.values.get(key)
    if hit is not None and time.monotonic() - hit[0] < ttl:
        return _TEXT, hit[1], cache
    if isinstance(s, AsyncSession):
        conn = await s.connection()  # begins the session's transaction (see _session_began)
        began = s.info.get(_BEGAN)
    else:
        conn, began = s, cache.generation
    at = time.monotonic()
    row = (await conn.execute(_READ, {"key": key})).first()
    text = None if row is None else json.dumps(row[0])
    if began == cache.generation:
        cache.values[key] = (at, text)
    return _TEXT, text, cache


async def programme_zone(s: AsyncSession | AsyncConnection) -> ZoneInfo:
    """The programme's time zone, whose calendar days the programme's dates are counted in
    (Europe/London until a programme is loaded, or if its zone is unknown here). Found once
    per stored programme: every feedback form and dated read asks."""
    return await get_setting_as(s, "programme", _zone_of)


def _zone_of(prog: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str((prog or {}).get("timezone") or "Europe/London"))
    except (ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("Europe/London")


async def settings_naming(s: AsyncSession, texts: list[str]) -> list[str]:
    """The keys of the settings whose value mentions any of `texts` (an email, an id)."""
    return sorted(row.key for row in (await s.execute(select(Setting))).scalars()
                  if any(t in json.dumps(row.value, default=str) for t in texts))


async def set_setting(s: AsyncSession, key: str, value: Any) -> None:
    row = await s.get(Setting, key)
    if row is None:
        s.add(Setting(key=key, value=value))
    elif row.value != value:
        row.value = value


# The privacy notice shown at /privacy (linked from the Teams app) when `programme.privacy` is
# not set. A council replaces it with its own, naming its data protection officer.
DEFAULT_PRIVACY = """\
This chat bot is run by the council for its staff during this change programme. The council is
the data controller.

What we hold about you: your name, work email, team and role, from the programme file, the HR
list or the staff directory, and how to reach you in Slack or Microsoft Teams.

Pulse answers are stored without your name. Results are shown only for groups of at least
five people, and comments only for larger groups, so nobody can trace an answer back to you.
Who was asked in a round is kept only while the round is open, to send reminders.

Anonymous feedback is stored without its author. If you allow replies, they reach you through
a sealed route that the change team cannot open and that expires. Feedback that looks like a
risk to a child is passed to the safeguarding leads at once, still without your name: this
service is not a referral route.

We keep each kind of data only as long as the programme needs it. You can ask to see what we
hold about you, or to have it erased, through the council's data protection officer."""


class ProgrammeSection:
    """`programme:` name, vision, region, time zone, working hours, anonymity, privacy text."""

    key = "programme"
    order = 0
    FIELDS = {"name", "vision", "region", "timezone", "working_hours", "anonymity", "channels",
              "privacy"}

    def validate(self, doc: Doc, value: Any) -> None:
        p = (self.key,)
        m = doc.mapping(value, p)
        if m is None:
            return
        doc.unknown_keys(m, p, self.FIELDS)
        doc.get(m, p, "name", str, required=True)
        doc.get(m, p, "vision", str)
        doc.get(m, p, "privacy", str)
        region = doc.get(m, p, "region", str, default="GB-ENG")
        if region is not None:
            _check_region(doc, region, p + ("region",))
        tz = doc.get(m, p, "timezone", str, default="Europe/London")
        if tz is not None:
            doc.tz(tz, p + ("timezone",))
        wh = doc.get(m, p, "working_hours", dict)
        if wh is not None:
            check_working_hours(doc, wh, p + ("working_hours",))
        an = doc.get(m, p, "anonymity", dict)
        if an is not None:
            ap = p + ("anonymity",)
            doc.unknown_keys(an, ap, {"min_group", "min_comments"})
            k = doc.get(an, ap, "min_group", int)
            if k is not None and k < 3:
                doc.problem(ap + ("min_group",), "must be at least 3 (smaller groups can be identified)")
            c = doc.get(an, ap, "min_comments", int)
            if c is not None and c < max(k or 5, 3):
                doc.problem(ap + ("min_comments",), "must be at least min_group")
        ch = doc.get(m, p, "channels", dict)
        if ch is not None:
            for name, v in ch.items():
                if not isinstance(v, str):
                    doc.problem(p + ("channels", name), "should be a channel reference like slack:T0123/C0456")

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        wh = value.get("working_hours") or DEFAULT_WORKING_HOURS
        privacy = (value.get("privacy") or "").strip()
        await set_setting(s, "programme", {
            "name": value["name"],
            "vision": value.get("vision", ""),
            "region": value.get("region", "GB-ENG"),
            "timezone": value.get("timezone", "Europe/London"),
            "working_hours": normalise_working_hours(wh),
            "anonymity": {
                "min_group": int((value.get("anonymity") or {}).get("min_group", 5)),
                "min_comments": int((value.get("anonymity") or {}).get("min_comments", 10)),
            },
            "channels": value.get("channels") or {},
            **({"privacy": privacy} if privacy else {}),  # else DEFAULT_PRIVACY is shown
        })

    async def export(self, s: AsyncSession) -> Any:
        return await get_setting(s, "programme")


def _check_region(doc: Doc, region: str, path: tuple[Any, ...]) -> None:
    from bot.workhours import country_calendar

    try:
        country_calendar(region)
    except (NotImplementedError, KeyError):
        doc.problem(path, f"'{region}' is not a known holiday region (like GB-ENG or GB-SCT)")


def check_working_hours(doc: Doc, wh: dict[str, Any], path: tuple[Any, ...]) -> None:
    doc.unknown_keys(wh, path, {"start", "end", "days"})
    start = doc.clock_time(wh.get("start", "09:00"), path + ("start",))
    end = doc.clock_time(wh.get("end", "17:00"), path + ("end",))
    if start and end and start == end:
        # An end before the start is a night shift (22:00 to 07:00); equal times mean nothing.
        doc.problem(path + ("end",), "must differ from start (a night shift may end before it starts)")
    days = wh.get("days", DEFAULT_WORKING_HOURS["days"])
    if not isinstance(days, list) or not all(d in DAYS for d in days):
        doc.problem(path + ("days",), f"should be a list of {', '.join(DAYS)}")


def normalise_working_hours(wh: dict[str, Any]) -> dict[str, Any]:
    def hhmm(v: Any, default: str) -> str:
        if v is None:
            return default
        if isinstance(v, int):
            return f"{v // 60:02d}:{v % 60:02d}"
        return str(v)[:5]

    return {
        "start": hhmm(wh.get("start"), "09:00"),
        "end": hhmm(wh.get("end"), "17:00"),
        "days": list(wh.get("days", DEFAULT_WORKING_HOURS["days"])),
    }


class ThemesSection:
    """`themes:` what staff can give feedback about and milestones link to."""

    key = "themes"
    order = 1

    def validate(self, doc: Doc, value: Any) -> None:
        if not isinstance(value, list):
            doc.problem((self.key,), "should be a list of themes")
            return
        for path, t in doc.items({self.key: value}, (), self.key):
            doc.unknown_keys(t, path, {"id", "name", "description"})
            tid = doc.slug(t, path)
            doc.get(t, path, "name", str, required=True)
            doc.get(t, path, "description", str)
            if tid:
                if tid in doc.themes:
                    doc.problem(path + ("id",), f"theme '{tid}' appears twice")
                doc.themes.add(tid)

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        keep = set()
        for t in value:
            keep.add(t["id"])
            row = await s.get(Theme, t["id"])
            if row is None:
                s.add(Theme(id=t["id"], name=t["name"], description=t.get("description", "")))
            else:
                row.name, row.description = t["name"], t.get("description", "")
        await s.execute(delete(Theme).where(Theme.id.not_in(keep)))

    async def export(self, s: AsyncSession) -> Any:
        rows = (await s.execute(select(Theme).order_by(Theme.id))).scalars()
        return [_drop_empty({"id": t.id, "name": t.name, "description": t.description}) for t in rows]


class OrganisationSection:
    """`organisation:` teams (with parents and leads) and people (with roles)."""

    key = "organisation"
    order = 2

    def validate(self, doc: Doc, value: Any) -> None:
        p = (self.key,)
        m = doc.mapping(value, p)
        if m is None:
            return
        doc.unknown_keys(m, p, {"teams", "people", "self_enrol", "contact"})
        doc.get(m, p, "self_enrol", bool)
        doc.get(m, p, "contact", str)
        people = doc.items(m, p, "people")
        for path, person in people:
            doc.unknown_keys(person, path, {"email", "name", "team", "roles", "timezone",
                                            "slack_id", "teams_id", "work_pattern"})
            e = doc.email(person.get("email"), path + ("email",))
            if e:
                if e in doc.emails:
                    doc.problem(path + ("email",), f"'{e}' appears twice")
                doc.emails.add(e)
        teams = doc.items(m, p, "teams")
        for path, team in teams:
            doc.unknown_keys(team, path, {"id", "name", "parent", "lead"})
            tid = doc.slug(team, path)
            doc.get(team, path, "name", str, required=True)
            if tid:
                if tid in doc.teams:
                    doc.problem(path + ("id",), f"team '{tid}' appears twice")
                doc.teams.add(tid)
        parents: dict[str, str] = {}
        for path, team in teams:
            if team.get("parent") is not None:
                if doc.team_ref(team["parent"], path + ("parent",)) and isinstance(team.get("id"), str):
                    parents[team["id"]] = team["parent"]
            if team.get("lead") is not None:
                doc.person_ref(team["lead"], path + ("lead",))
        for tid in parents:
            seen, t = set(), tid
            while t in parents:
                if t in seen:
                    doc.problem((self.key, "teams"), f"team '{tid}' is its own ancestor")
                    break
                seen.add(t)
                t = parents[t]
        for path, person in people:
            if person.get("team") is not None:
                doc.team_ref(person["team"], path + ("team",))
            roles = person.get("roles", [])
            if not isinstance(roles, list) or any(r not in ALL_ROLES for r in roles):
                doc.problem(path + ("roles",), f"should be a list of: {', '.join(ALL_ROLES)}")
            if person.get("timezone") is not None:
                doc.tz(person["timezone"], path + ("timezone",))
            if person.get("work_pattern") is not None:
                wp = doc.get(person, path, "work_pattern", dict)
                if wp is not None:
                    check_working_hours(doc, wp, path + ("work_pattern",))

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        from bot.people.tables import Identity

        # Who may use the bot without being listed (see bot.people.service.may_enrol).
        await set_setting(s, ENROLMENT, {"self_enrol": bool(value.get("self_enrol", False)),
                                         "contact": str(value.get("contact") or "")})
        teams = value.get("teams") or []
        # Parents first so foreign keys hold.
        by_id = {t["id"]: t for t in teams}
        for t in _parents_first(teams):
            row = await s.get(Team, t["id"])
            if row is None:
                row = Team(id=t["id"], name=t["name"])
                s.add(row)
            row.name = t["name"]
            row.parent_id = t.get("parent")
            row.source = "programme"
        await s.flush()
        ids: dict[str, str] = {}
        for p in value.get("people") or []:
            email = p["email"].strip().lower()
            person = (await s.execute(select(Person).where(Person.email == email))).scalar_one_or_none()
            if person is None:
                person = Person(email=email)
                s.add(person)
            person.display_name = p.get("name", "")
            person.team_id = p.get("team")
            person.tz = p.get("timezone")
            person.work_pattern = normalise_working_hours(p["work_pattern"]) if p.get("work_pattern") else None
            person.from_programme = True
            person.source, person.left_on = "programme", None
            await s.flush()
            ids[email] = person.id
            wanted = set(p.get("roles") or []) - {TEAM_LEAD}
            have = {
                r.role: r for r in (await s.execute(
                    select(PersonRole).where(PersonRole.person_id == person.id))).scalars()
            }
            for role in wanted - set(have):
                s.add(PersonRole(person_id=person.id, role=role))
            for role, r in have.items():
                if role not in wanted and not r.granted_in_chat and role != "practitioner":
                    await s.delete(r)
            for platform, key in (("slack", "slack_id"), ("teams", "teams_id")):
                if p.get(key):
                    workspace, _, uid = str(p[key]).rpartition("/")
                    existing = await s.get(Identity, (platform, workspace, uid))
                    if existing is None:
                        s.add(Identity(platform=platform, workspace=workspace, user_id=uid, person_id=person.id))
        for tid, t in by_id.items():
            row = await s.get(Team, tid)
            assert row is not None
            row.lead_person_id = ids.get(t["lead"].strip().lower()) if t.get("lead") else None

    async def export(self, s: AsyncSession) -> Any:
        # Teams an HR import or a directory sync brought are theirs, not the programme's.
        teams = list((await s.execute(select(Team).where(
            Team.source.is_(None) | (Team.source == "programme")).order_by(Team.id))).scalars())
        people = list((await s.execute(
            select(Person).where(Person.from_programme.is_(True)).order_by(Person.email))).scalars())
        email_of = {p.id: p.email for p in people}
        roles: dict[str, list[str]] = {}
        for r in (await s.execute(select(PersonRole).order_by(PersonRole.role))).scalars():
            roles.setdefault(r.person_id, []).append(r.role)
        enrolment = await s.get(Setting, ENROLMENT)
        opts = enrolment.value if enrolment is not None and isinstance(enrolment.value, dict) else {}
        return {
            **({"self_enrol": True} if opts.get("self_enrol") else {}),
            **({"contact": opts["contact"]} if opts.get("contact") else {}),
            "teams": [_drop_empty({"id": t.id, "name": t.name, "parent": t.parent_id,
                                   "lead": email_of.get(t.lead_person_id or "")})
                      for t in _parents_first([{"id": t.id, "parent": t.parent_id, "_row": t}
                                               for t in teams], rows=True)],
            "people": [_drop_empty({"email": p.email, "name": p.display_name, "team": p.team_id,
                                    "roles": roles.get(p.id) or None, "timezone": p.tz,
                                    "work_pattern": p.work_pattern})
                       for p in people],
        }


def _parents_first(teams: list[dict[str, Any]], rows: bool = False) -> list[Any]:
    done: set[str] = set()
    out: list[Any] = []
    pending = list(teams)
    while pending:
        progressed = False
        for t in list(pending):
            if not t.get("parent") or t["parent"] in done:
                out.append(t["_row"] if rows else t)
                done.add(t["id"])
                pending.remove(t)
                progressed = True
        if not progressed:  # a cycle was reported by validation already
            out.extend(t["_row"] if rows else t for t in pending)
            break
    return out


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


CORE_SECTIONS: list[Section] = [ProgrammeSection(), ThemesSection(), OrganisationSection()]
