"""Reporting cells: the (team, role) an answer is counted under, each shared by k or more people.

Decided once, when a round opens, from who is asked. Whatever is stored next to an answer or a
comment is a cell, so no stored value can narrow it to fewer than k of the people asked:

- a team with fewer than k people asked (its own members plus smaller sub-teams rolled into it)
  rolls up into its parent, and a top-level team into the whole (team None);
- people without a team form the whole's own cell; if that has fewer than k, the smallest
  top-level teams join it until it has k;
- a role is kept only where its team x role cell has k people; the rest of the team share the
  role MIXED, and if that remainder has fewer than k, the smallest kept roles join it.

Comments use the same rule with the comment threshold, on teams only (no role is stored).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MIXED = "*"  # a team's people whose role group is too small to keep
Cell = tuple[str | None, str]


def _depth(parents: Mapping[str, str | None], team: str) -> int:
    d, seen, t = 0, set(), parents.get(team)
    while t is not None and t in parents and t not in seen:
        seen.add(t)
        d, t = d + 1, parents.get(t)
    return d


def team_cells(members: Mapping[str | None, int], parents: Mapping[str, str | None], k: int
               ) -> dict[str | None, str | None]:
    """Where each team's people are counted: the team itself or the nearest ancestor with k.

    `members` counts the people asked per team (None: no team). Returns team -> reporting team.
    """
    size: dict[str | None, int] = {t: n for t, n in members.items() if n > 0}
    home: dict[str | None, str | None] = {t: t for t in size}
    # Deepest teams first, so a small team's people reach its parent before the parent decides.
    for team in sorted((t for t in parents), key=lambda t: -_depth(parents, t)):
        n = size.get(team, 0)
        if 0 < n < k:
            up = parents.get(team)
            up = up if up in parents else None
            size[up] = size.get(up, 0) + n
            size[team] = 0
            for t, h in home.items():
                if h == team:
                    home[t] = up
    # Teams outside the tree (unknown ids) behave like top-level teams.
    for outside, n in list(size.items()):
        if outside is not None and outside not in parents and 0 < n < k:
            size[None] = size.get(None, 0) + n
            size[outside] = 0
            for t, h in home.items():
                if h == outside:
                    home[t] = None
    # The whole's own cell: too small, so the smallest teams join it.
    while 0 < size.get(None, 0) < k:
        kept = sorted((n, t) for t, n in size.items() if t is not None and n > 0)
        if not kept:
            break
        n, team = kept[0]
        size[None] += n
        size[team] = 0
        for t, h in home.items():
            if h == team:
                home[t] = None
    return home


def role_cells(counts: Mapping[Cell, int], k: int) -> dict[Cell, Cell]:
    """Within each reporting team: keep a role only where k share it, else MIXED."""
    by_team: dict[str | None, dict[str, int]] = {}
    for (team, role), n in counts.items():
        if n > 0:
            by_team.setdefault(team, {})[role] = by_team.setdefault(team, {}).get(role, 0) + n
    out: dict[Cell, Cell] = {}
    for team, roles in by_team.items():
        kept = {r: n for r, n in roles.items() if n >= k and r != MIXED}
        mixed = sum(n for r, n in roles.items() if r not in kept)
        while 0 < mixed < k and kept:
            r = min(kept, key=lambda x: (kept[x], x))
            mixed += kept.pop(r)
        for r in roles:
            out[(team, r)] = (team, r if r in kept else MIXED)
    return out


def assign(people: Iterable[tuple[str, str | None, str]], parents: Mapping[str, str | None],
           k: int) -> dict[str, Cell]:
    """person id -> reporting cell, for the people asked in a round: (id, team, main role)."""
    rows = list(people)
    members: dict[str | None, int] = {}
    for _pid, team, _role in rows:
        members[team] = members.get(team, 0) + 1
    home = team_cells(members, parents, k)
    counts: dict[Cell, int] = {}
    for _pid, team, role in rows:
        c = (home.get(team), role)
        counts[c] = counts.get(c, 0) + 1
    roles = role_cells(counts, k)
    return {pid: roles[(home.get(team), role)] for pid, team, role in rows}


def settle(invited: Mapping[Cell, int], parents: Mapping[str, str | None], k: int
           ) -> dict[Cell, Cell]:
    """Cell fixed at opening -> the cell it is counted in at close, each with k or more asked.

    The cells are the same unless people left the round while it was open (erased: their
    participation goes, and so do their answers); a cell that fell below k then joins others
    by the same rule as at opening, so no closed round keeps a cell of fewer than k.
    """
    members: dict[str | None, int] = {}
    for (team, _role), n in invited.items():
        members[team] = members.get(team, 0) + n
    home = team_cells(members, parents, k)
    counts: dict[Cell, int] = {}
    for (team, role), n in invited.items():
        c = (home.get(team, team), role)
        counts[c] = counts.get(c, 0) + n
    roles = role_cells(counts, k)
    return {(team, role): roles[(home.get(team, team), role)] for team, role in invited}


def comment_teams(invited: Mapping[Cell, int], parents: Mapping[str, str | None], k: int
                  ) -> dict[str | None, str | None]:
    """Reporting team -> the team a comment is stored under (k people asked, comments' k)."""
    members: dict[str | None, int] = {}
    for (team, _role), n in invited.items():
        members[team] = members.get(team, 0) + n
    return team_cells(members, parents, k)


def place(team: str | None, role: str, parents: Mapping[str, str | None],
          existing: Iterable[Cell]) -> Cell | None:
    """The cell for someone who joins an open round: an existing cell, so none shrinks below k.

    Their team or the nearest ancestor that has a cell, their role there if kept, else the
    team's MIXED cell, else another cell of the team; None if the round has no cells.
    """
    cells = set(existing)
    if not cells:
        return None
    teams = {t for t, _r in cells}
    t: str | None = team
    seen: set[str] = set()
    while t is not None and t not in teams and t not in seen:
        seen.add(t)
        t = parents.get(t)
    if t not in teams:
        t = None if None in teams else sorted(x for x in teams if x is not None)[0]
    for r in (role, MIXED):
        if (t, r) in cells:
            return (t, r)
    return sorted((c for c in cells if c[0] == t), key=lambda c: c[1])[0]
