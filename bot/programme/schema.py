"""Reading the programme YAML with line numbers, and the checks sections share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

Path = tuple[str | int, ...]
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ProgrammeError(Exception):
    """The file has problems; `problems` lists each with its line and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Doc:
    """The parsed file: plain data plus the line of every path in it."""

    data: dict[str, Any]
    lines: dict[Path, int]
    problems: list[str] = field(default_factory=list)
    # Cross-references every section may check against.
    emails: set[str] = field(default_factory=set)
    teams: set[str] = field(default_factory=set)
    themes: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)

    def line(self, path: Path) -> int:
        p = path
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(f"line {self.line(path)}, {dotted(path) or '(top)'}: {message}")

    # -- typed getters that record a problem and return None when wrong ------------

    def get(self, obj: dict[str, Any], path: Path, key: str, kind: type | tuple[type, ...],
            *, required: bool = False, default: Any = None) -> Any:
        if key not in obj or obj[key] is None:
            if required:
                self.problem(path, f"'{key}' is required")
            return default
        value = obj[key]
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problem(path + (key,), f"should be {_kind_word(names)}, not {value!r:.40}")
            return default
        return value

    def mapping(self, value: Any, path: Path) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, "should be a mapping of fields")
            return None
        return value

    def items(self, obj: dict[str, Any], path: Path, key: str) -> list[tuple[Path, dict[str, Any]]]:
        """The mappings in list `key`, each with its path; problems for anything else."""
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path + (key,), "should be a list")
            return []
        out = []
        for i, item in enumerate(value):
            m = self.mapping(item, path + (key, i))
            if m is not None:
                out.append((path + (key, i), m))
        return out

    def unknown_keys(self, obj: dict[str, Any], path: Path, allowed: set[str]) -> None:
        for k in obj:
            if k not in allowed:
                self.problem(path + (k,), f"unknown field (expected one of: {', '.join(sorted(allowed))})")

    def slug(self, obj: dict[str, Any], path: Path, key: str = "id") -> str | None:
        v: str | None = self.get(obj, path, key, str, required=True)
        if v is not None and not SLUG.match(v):
            self.problem(path + (key,), f"'{v}' should be lower-case letters, digits and dashes")
            return None
        return v

    def email(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or not EMAIL.match(value):
            self.problem(path, f"{value!r:.60} is not an email address")
            return None
        return value.strip().lower()

    def person_ref(self, value: Any, path: Path) -> str | None:
        e = self.email(value, path)
        if e is not None and e not in self.emails:
            self.problem(path, f"'{e}' is not a person in organisation.people")
            return None
        return e

    def team_ref(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or value not in self.teams:
            self.problem(path, f"{value!r:.60} is not a team in organisation.teams")
            return None
        return value

    def theme_ref(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or value not in self.themes:
            self.problem(path, f"{value!r:.60} is not a theme in themes")
            return None
        return value

    def tz(self, value: Any, path: Path) -> str | None:
        try:
            ZoneInfo(str(value))
            return str(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(path, f"{value!r:.60} is not a time zone (like Europe/London)")
            return None

    def date(self, value: Any, path: Path) -> date | None:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.problem(path, f"{value!r:.60} is not a date (YYYY-MM-DD)")
            return None

    def clock_time(self, value: Any, path: Path) -> time | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 09:00 as sexagesimal minutes.
            value = f"{value // 60:02d}:{value % 60:02d}"
        try:
            return time.fromisoformat(str(value))
        except ValueError:
            self.problem(path, f"{value!r:.60} is not a time of day (HH:MM)")
            return None


def _kind_word(name: str) -> str:
    return {
        "str": "text", "int": "a whole number", "dict": "a mapping", "list": "a list",
        "bool": "true or false", "float": "a number",
    }.get(name, name)


def dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse(text: str) -> Doc:
    """Parse YAML, keeping the line of every mapping key and list item."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "line ?"
        raise ProgrammeError([f"{where}: not valid YAML ({getattr(e, 'problem', e)})"]) from None
    if node is None:
        raise ProgrammeError(["line 1: the file is empty"])
    lines: dict[Path, int] = {}
    _walk(node, (), lines)
    try:
        data = yaml.safe_load(text)
    except (ValueError, TypeError, OverflowError) as e:
        # A scalar that looks like a date but is not one (2027-13-01) fails while constructing.
        bad = _bad_scalar(node)
        where = f"line {bad.start_mark.line + 1}" if bad is not None else "line ?"
        what = f"'{bad.value}' is not a valid date" if bad is not None else str(e)
        raise ProgrammeError([f"{where}: {what}"]) from None
    if not isinstance(data, dict):
        raise ProgrammeError(["line 1: the file should be a mapping of sections"])
    return Doc(data=data, lines=lines)


def _bad_scalar(node: yaml.Node) -> yaml.Node | None:
    """The first scalar PyYAML cannot construct (its implicit timestamps raise ValueError)."""
    loader = yaml.SafeLoader("")
    stack = [node]
    while stack:
        n = stack.pop(0)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.ScalarNode):
            try:
                loader.construct_object(n, deep=True)
            except (ValueError, TypeError, OverflowError, yaml.YAMLError):
                return n
    return None


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            lines[path + (key,)] = k.start_mark.line + 1
            _walk(v, path + (key,), lines)
            lines[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), lines)


class Section(Protocol):
    """One top-level key of the programme file, owned by one feature."""

    key: str
    order: int  # lower validates and syncs first (organisation before milestones)

    def validate(self, doc: Doc, value: Any) -> None:
        """Record problems in `doc`; may add cross-references (emails, teams)."""
        ...

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        """Make the database match this section (idempotent)."""
        ...

    async def export(self, s: AsyncSession) -> Any:
        """The section as it is now, in the file's shape (None: leave out)."""
        ...
