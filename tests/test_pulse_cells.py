"""Reporting cells: every stored (team, role) is shared by k or more of the people asked."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pulse import cells

ROLES = ("practitioner", "team_lead", "leader", "change_team")


@st.composite
def organisations(draw):  # type: ignore[no-untyped-def]
    n_teams = draw(st.integers(0, 12))
    parents: dict[str, str | None] = {}
    for i in range(n_teams):
        parents[f"t{i}"] = draw(st.sampled_from([None, *parents])) if parents else None
    teams = [None, *parents, "unknown-team"]
    people = draw(st.lists(st.tuples(st.sampled_from(teams), st.sampled_from(ROLES)),
                           min_size=0, max_size=80))
    return parents, [(f"p{i}", t, r) for i, (t, r) in enumerate(people)]


@settings(max_examples=300, deadline=None)
@given(organisations(), st.integers(3, 10))
def test_no_cell_has_fewer_than_k_people_once_k_were_asked(org, k) -> None:  # type: ignore[no-untyped-def]
    parents, people = org
    where = cells.assign(people, parents, k)
    assert set(where) == {p for p, _t, _r in people}
    sizes = Counter(where.values())
    if len(people) >= k:
        assert min(sizes.values()) >= k, sizes
    for pid, team, role in people:
        t, r = where[pid]
        assert r in (role, cells.MIXED)
        # Counted in their own team or one above it (or the whole), never a sibling's.
        chain, x = [], team
        while x is not None and x in parents and x not in chain:
            chain.append(x)
            x = parents[x]
        assert t is None or t in chain or (team not in parents and t is not None)


def test_a_team_of_three_rolls_up_and_a_lone_lead_loses_the_role() -> None:
    parents = {"locality": None, "assessment": "locality", "care": "locality"}
    people = [(f"a{i}", "assessment", "practitioner") for i in range(5)]
    people += [("lead", "assessment", "team_lead")]
    people += [(f"c{i}", "care", "practitioner") for i in range(3)]
    people += [(f"l{i}", "locality", "practitioner") for i in range(2)]
    where = cells.assign(people, parents, 5)
    assert where["lead"] == ("assessment", cells.MIXED)  # a role of one is never stored
    assert where["a0"] == ("assessment", cells.MIXED)  # and the rest of the team share that
    assert where["c0"] == ("locality", "practitioner")  # three people roll into the locality
    assert Counter(where.values())[("locality", "practitioner")] == 5


def test_a_joiner_goes_into_a_cell_the_round_already_has() -> None:
    parents = {"locality": None, "assessment": "locality", "care": "locality"}
    existing = {("assessment", cells.MIXED), ("locality", "practitioner")}
    assert cells.place("care", "practitioner", parents, existing) == ("locality", "practitioner")
    assert cells.place("assessment", "leader", parents, existing) == ("assessment", cells.MIXED)
    assert cells.place(None, "practitioner", parents, set()) is None
