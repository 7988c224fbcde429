"""The anonymity engine: which groups' results may be shown without outing anyone.

Every report, export and chart asks this module which groups are visible. The threat is a
viewer who combines visible results (sums, counts, distributions are all linear) to work out
the answers of fewer than k people.

Model. Respondents fall into cells (their team, their main role). A group (the whole audience,
a team with its sub-teams, a role) is a union of cells. A viewer can derive the aggregate of any
set of cells whose indicator vector lies in the linear span of the visible groups' vectors.

Why the check below is exact. The span of the visible teams (a laminar family that includes the
whole) is every function constant on the tree *atoms* (a visible team minus its visible
sub-teams, or the whole minus the visible top teams); the span of the visible roles is every
function constant on the role *classes* (each visible role, plus "the rest"). A derivable set is
a 0/1 vector x = f(atom) + g(class) on the non-empty cells. Writing p(atom) = f, p(class) = -g,
x is 1 exactly where p(atom) - p(class) = 1, and every such x splits into level sets S that are
closed (a class in S drags every atom it touches into S), each contributing the cells
(atom in S, class not in S). So the smallest derivable non-empty set is either a single atom or,
for a proper non-empty set B of classes, D(B) = the respondents of other classes inside the
atoms that touch B. There are few classes (at most six), so all of them are checked.

If any of those sets holds between 1 and k-1 respondents, one more group is suppressed (the
smallest involved) and the check runs again, until nothing small can be derived.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

ALL = "all"
NOT_ENOUGH = "not enough responses to show"
DEFAULT_MIN_GROUP = 5
FLOOR_MIN_GROUP = 3
DEFAULT_MIN_COMMENTS = 10
REST = "\x00rest"  # the role class of everyone whose role group is not shown

Cell = tuple[str | None, str]  # (team id at answer time, main role)


@dataclass(frozen=True)
class Thresholds:
    """Minimum group size for results (never below 3) and for comments (never below 10)."""

    min_group: int = DEFAULT_MIN_GROUP
    min_comments: int = DEFAULT_MIN_COMMENTS

    def __post_init__(self) -> None:
        # Configuration may only make us stricter.
        object.__setattr__(self, "min_group", max(int(self.min_group), FLOOR_MIN_GROUP))
        object.__setattr__(
            self, "min_comments", max(int(self.min_comments), DEFAULT_MIN_COMMENTS, self.min_group)
        )

    @classmethod
    def from_programme(cls, programme: Mapping[str, Any] | None) -> Thresholds:
        """Thresholds from the programme setting's `anonymity` mapping (defaults if absent)."""
        an = (programme or {}).get("anonymity") or {}
        return cls(
            int(an.get("min_group", DEFAULT_MIN_GROUP)),
            int(an.get("min_comments", DEFAULT_MIN_COMMENTS)),
        )


def team_key(team_id: str) -> str:
    return f"team:{team_id}"


def role_key(role: str) -> str:
    return f"role:{role}"


@dataclass(frozen=True)
class Org:
    """The organisation as the engine sees it: team parents and the roles reported on."""

    parents: Mapping[str, str | None]
    roles: tuple[str, ...]
    _children: dict[str | None, list[str]] = field(default_factory=dict, compare=False, repr=False)
    _chains: dict[str | None, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    _keys: dict[str | None, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    _groups: list[str] = field(default_factory=list, compare=False, repr=False)
    _order: dict[str, list[tuple[str, str | None]] | None] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for t, p in self.parents.items():
            # A parent outside the organisation is treated as the top.
            self._children.setdefault(p if p in self.parents else None, []).append(t)
        self._groups.extend([ALL, *(team_key(t) for t in sorted(self.parents)),
                             *(role_key(r) for r in self.roles)])

    def groups(self) -> list[str]:
        """Every group key: the whole, every team, every role."""
        return list(self._groups)

    def parent_group(self, key: str) -> str | None:
        """The group a team sits in (its parent team, else the whole); None for the whole."""
        if key == ALL:
            return None
        if key.startswith("team:"):
            p = self.parents.get(key[5:])
            return team_key(p) if p in self.parents and p is not None else ALL
        return ALL

    def ancestors(self, team_id: str | None) -> tuple[str, ...]:
        """The team and its ancestors, nearest first (empty for no team or an unknown one)."""
        chain = self._chains.get(team_id)
        if chain is None:
            out: list[str] = []
            t = team_id
            while t is not None and t in self.parents and t not in out:
                out.append(t)
                t = self.parents[t]
            chain = self._chains[team_id] = tuple(out)
        return chain

    def upward(self) -> list[tuple[str, str | None]] | None:
        """(team, parent in the organisation or None), every team after all teams below it;
        None if the parents loop (each team's ancestors then stop where the loop closes)."""
        if "up" not in self._order:
            depth = {t: len(self.ancestors(t)) for t in self.parents}
            looped = any(self.parents[t] in self.parents
                         and depth[self.parents[t]] != depth[t] - 1  # type: ignore[index]
                         for t in self.parents)
            self._order["up"] = None if looped else [
                (t, self.parents[t] if self.parents[t] in self.parents else None)
                for t in sorted(self.parents, key=lambda t: -depth[t])]
        return self._order["up"]

    def team_groups(self, team_id: str | None) -> tuple[str, ...]:
        """The group keys of the team and its ancestors, nearest first."""
        keys = self._keys.get(team_id)
        if keys is None:
            keys = self._keys[team_id] = tuple(team_key(t) for t in self.ancestors(team_id))
        return keys

    def contains(self, key: str, cell: Cell) -> bool:
        """Whether group `key` includes respondents of `cell`."""
        team, role = cell
        if key == ALL:
            return True
        if key.startswith("team:"):
            return key[5:] in self.ancestors(team)
        return key == role_key(role)


def group_counts(org: Org, counts: Mapping[Cell, int]) -> dict[str, int]:
    """Respondents per group, from respondents per cell."""
    out = dict.fromkeys(org.groups(), 0)
    by_team: dict[str | None, int] = {}
    by_role: dict[str, int] = {}
    for (team, role), n in counts.items():
        if n > 0:
            by_team[team] = by_team.get(team, 0) + n
            by_role[role] = by_role.get(role, 0) + n
    for team, n in by_team.items():
        for g in org.team_groups(team):
            out[g] += n
    for r in org.roles:
        out[role_key(r)] += by_role.get(r, 0)
    out[ALL] = sum(by_team.values())
    return out


@dataclass(frozen=True)
class Disclosure:
    """Which groups may be shown for one set of counts, and the counts themselves."""

    visible: frozenset[str]
    counts: Mapping[str, int]
    k: int

    def shown(self, key: str) -> bool:
        return key in self.visible


@dataclass(frozen=True)
class _Leak:
    size: int
    involved: tuple[str, ...]  # visible groups whose suppression may close it


def disclose(
    org: Org, counts: Mapping[Cell, int], k: int, *, hidden: Iterable[str] = ()
) -> Disclosure:
    """The groups that may be shown: each has >= k, and no combination pins down < k people."""
    k = max(int(k), FLOOR_MIN_GROUP)
    cells = {c: n for c, n in counts.items() if n > 0}
    n = group_counts(org, cells)
    visible = {g for g in org.groups() if n[g] >= k} - set(hidden)
    if ALL not in visible:
        return Disclosure(frozenset(), n, k)
    while True:
        leak = find_leak(org, cells, visible, k)
        if leak is None:
            return Disclosure(frozenset(visible), n, k)
        if not leak.involved:  # cannot happen by construction; fail closed if it does
            return Disclosure(frozenset(), n, k)
        # Hide the least informative group involved; ties broken by key for determinism.
        victim = min(leak.involved, key=lambda g: (n[g], g))
        visible.discard(victim)


def find_leak(
    org: Org, cells: Mapping[Cell, int], visible: set[str], k: int
) -> _Leak | None:
    """A derivable set of 1..k-1 respondents given the visible groups, or None."""
    atom_of = _atoms(org, visible)
    class_of: dict[str, str] = {}
    grid: dict[str, dict[str, int]] = {}
    for (team, role), cnt in cells.items():
        if cnt <= 0:
            continue
        cls = class_of.get(role)
        if cls is None:
            cls = class_of[role] = role if role_key(role) in visible else REST
        a = atom_of(team)
        row = grid.get(a)
        if row is None:
            row = grid[a] = {}
        row[cls] = row.get(cls, 0) + cnt
    # A single atom: a visible team minus its visible sub-teams (or the whole minus teams);
    # the first by key, so the same group is suppressed whatever order the cells came in.
    small = [(a, size) for a, row in grid.items() if 0 < (size := sum(row.values())) < k]
    if small:
        a, size = min(small)
        inner = _visible_children(org, a, visible)
        return _Leak(size, tuple(inner) or ((a,) if a != ALL else ()))
    classes = sorted({c for row in grid.values() for c in row})
    # Atoms touching the same classes behave alike: sum them per class mask (at most 2^6).
    bit = {c: 1 << i for i, c in enumerate(classes)}
    by_mask: dict[int, dict[str, int]] = {}
    for row in grid.values():
        mask = sum(bit[c] for c, cnt in row.items() if cnt > 0)
        agg = by_mask.setdefault(mask, {})
        for c, cnt in row.items():
            agg[c] = agg.get(c, 0) + cnt
    for r in range(1, len(classes)):
        for chosen in combinations(classes, r):
            b = sum(bit[c] for c in chosen)
            size = sum(cnt for mask, agg in by_mask.items() if mask & b
                       for c, cnt in agg.items() if not bit[c] & b)
            if 0 < size < k:
                touching = [a for a, row in grid.items() if any(bit[c] & b for c in row)]
                return _Leak(size, _involved(grid, touching, set(chosen), visible))
    return None


def _atoms(org: Org, visible: set[str]) -> Any:
    """Map a cell's team to its tree atom: the nearest visible team above it, else the whole."""
    memo: dict[str | None, str] = {}

    def atom(team: str | None) -> str:
        if team not in memo:
            memo[team] = next((g for g in org.team_groups(team) if g in visible), ALL)
        return memo[team]

    return atom


def _visible_children(org: Org, atom: str, visible: set[str]) -> list[str]:
    """Visible teams whose nearest visible ancestor is `atom`."""
    out = []
    for g in visible:
        if not g.startswith("team:"):
            continue
        above = next(
            (team_key(t) for t in org.ancestors(g[5:])[1:] if team_key(t) in visible), ALL
        )
        if above == atom:
            out.append(g)
    return out


def _involved(
    grid: Mapping[str, Mapping[str, int]], touching: Sequence[str], b: set[str], visible: set[str]
) -> tuple[str, ...]:
    """Visible groups taking part in a role-class derivation."""
    out: set[str] = set()
    for a in touching:
        row = grid[a]
        for c, cnt in row.items():
            if cnt > 0 and c != REST:
                out.add(role_key(c))
        if a != ALL and any(cnt > 0 for c, cnt in row.items() if c not in b):
            out.add(a)
    return tuple(g for g in out if g in visible)


# --- comments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment:
    """A free-text answer as shown: the text and the round it came from, nothing else."""

    text: str
    round_label: str
    round_date: datetime


def shuffled_comments(
    items: Iterable[tuple[str, str, datetime]], *, rng: random.Random | None = None
) -> list[Comment]:
    """Comments in random order (never the order people answered), dated by round only."""
    out = [Comment(t, label, when) for t, label, when in items if t and t.strip()]
    (rng or random.SystemRandom()).shuffle(out)
    return out
