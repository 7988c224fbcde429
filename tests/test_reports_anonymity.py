"""The anonymity engine: nobody can be worked out from what reports show.

The property tests check the engine's answer with an independent, exhaustive method: every
set of cells (team x role) whose aggregate a viewer could compute as a linear combination of
the visible groups' results must hold 0 or at least k respondents.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from fractions import Fraction
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.reports.anonymity import (
    ALL,
    Org,
    Thresholds,
    disclose,
    group_counts,
    role_key,
    shuffled_comments,
    team_key,
)

ROLES = ("practitioner", "team_lead", "leader")


# --- an independent oracle ------------------------------------------------------------------


def null_space(rows: list[list[int]], width: int) -> list[list[int]]:
    """Integer basis of {z : row . z = 0 for every row}, by exact Gaussian elimination."""
    m = [[Fraction(v) for v in r] for r in rows]
    pivots: list[int] = []
    r = 0
    for col in range(width):
        piv = next((i for i in range(r, len(m)) if m[i][col] != 0), None)
        if piv is None:
            continue
        m[r], m[piv] = m[piv], m[r]
        m[r] = [v / m[r][col] for v in m[r]]
        for i in range(len(m)):
            if i != r and m[i][col] != 0:
                f = m[i][col]
                m[i] = [a - f * b for a, b in zip(m[i], m[r], strict=True)]
        pivots.append(col)
        r += 1
    basis = []
    for free in (c for c in range(width) if c not in pivots):
        z = [Fraction(0)] * width
        z[free] = Fraction(1)
        for i, pc in enumerate(pivots):
            z[pc] = -m[i][free]
        scale = 1
        for v in z:
            scale = scale * v.denominator // _gcd(scale, v.denominator)
        basis.append([int(v * scale) for v in z])
    return basis


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def smallest_derivable(org: Org, cells: dict, visible: frozenset[str], k: int) -> int | None:
    """The size of a derivable set of 1..k-1 respondents, or None (meet in the middle)."""
    live = sorted((c for c, n in cells.items() if n > 0), key=str)
    if not visible or not live:
        return None
    rows = [[1 if org.contains(g, c) else 0 for c in live] for g in sorted(visible)]
    ns = null_space(rows, len(live))
    half = len(live) // 2
    left, right = live[:half], live[half:]

    def sides(part: list, offset: int) -> dict[tuple[int, ...], set[int]]:
        out: dict[tuple[int, ...], set[int]] = {}
        for bits in product((0, 1), repeat=len(part)):
            key = tuple(
                sum(b * z[offset + i] for i, b in enumerate(bits)) for z in ns
            )
            weight = sum(cells[c] for c, b in zip(part, bits, strict=True) if b)
            out.setdefault(key, set()).add(weight)
        return out

    right_side = sides(right, half)
    for key, weights in sides(left, 0).items():
        for wr in right_side.get(tuple(-v for v in key), ()):
            for wl in weights:
                if 0 < wl + wr < k:
                    return wl + wr
    return None


def in_span(org: Org, cells: dict, visible: frozenset[str], group: str) -> bool:
    """Whether a group's results follow linearly from the visible groups' results."""
    live = sorted((c for c, n in cells.items() if n > 0), key=str)
    rows = [[1 if org.contains(g, c) else 0 for c in live] for g in sorted(visible)]
    target = [1 if org.contains(group, c) else 0 for c in live]
    return all(sum(a * b for a, b in zip(z, target, strict=True)) == 0
               for z in null_space(rows, len(live)))


# --- random organisations and answer sets ---------------------------------------------------


@st.composite
def organisations(draw: st.DrawFn) -> tuple[Org, dict]:
    size = draw(st.integers(1, 6))
    parents: dict[str, str | None] = {}
    for i in range(size):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        parents[f"t{i}"] = None if parent is None else f"t{parent}"
    roles = tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True)))
    org = Org(parents, roles)
    counts = st.one_of(st.just(0), st.integers(1, 3), st.integers(4, 12))
    cells: dict = {}
    for team in [None, *parents]:
        for role in ROLES:  # roles not reported on still answer (they count in the whole)
            n = draw(counts)
            if n:
                cells[(team, role)] = n
    return org, cells


@settings(max_examples=300, deadline=None)
@given(organisations(), st.integers(3, 6))
def test_no_combination_of_visible_results_pins_down_a_small_group(case, k) -> None:  # type: ignore[no-untyped-def]
    org, cells = case
    shown = disclose(org, cells, k)
    counts = group_counts(org, cells)
    for g in shown.visible:
        assert counts[g] >= k, f"{g} shown with {counts[g]} < {k}"
    assert smallest_derivable(org, cells, shown.visible, k) is None
    for g in org.groups():
        if 0 < counts[g] < k:
            assert not in_span(org, cells, shown.visible, g), f"{g} derivable"


@settings(max_examples=150, deadline=None)
@given(organisations(), st.integers(3, 6))
def test_any_subset_of_a_safe_set_is_safe_so_viewers_can_be_filtered(case, k) -> None:  # type: ignore[no-untyped-def]
    org, cells = case
    shown = disclose(org, cells, k)
    rng = random.Random(len(cells))
    subset = frozenset(g for g in shown.visible if g == ALL or rng.random() < 0.5)
    assert smallest_derivable(org, cells, subset, k) is None


# --- the cases people think of first --------------------------------------------------------


def test_a_team_under_five_shows_nothing() -> None:
    org = Org({"a": None, "b": None}, ("practitioner",))
    shown = disclose(org, {("a", "practitioner"): 4, ("b", "practitioner"): 9}, 5)
    assert team_key("a") not in shown.visible
    # b alone would give a = whole - b, so b must go too.
    assert team_key("b") not in shown.visible
    assert ALL in shown.visible


def test_the_next_smallest_sibling_is_hidden_so_nobody_can_subtract() -> None:
    org = Org({"p": None, "x": "p", "y": "p", "z": "p"}, ())
    cells = {("x", "r"): 2, ("y", "r"): 6, ("z", "r"): 9, ("p", "r"): 7}
    shown = disclose(org, cells, 5)
    assert team_key("x") not in shown.visible
    assert {team_key("p"), team_key("y"), team_key("z")} <= shown.visible  # p's own 7+2 hide x


def test_own_members_of_a_parent_cannot_be_worked_out() -> None:
    org = Org({"p": None, "x": "p", "y": "p"}, ())
    cells = {("x", "r"): 6, ("y", "r"): 6, ("p", "r"): 2}  # two people sit directly in p
    shown = disclose(org, cells, 5)
    assert not {team_key("p"), team_key("x"), team_key("y")} <= shown.visible
    assert smallest_derivable(org, cells, shown.visible, 5) is None


def test_a_role_minus_a_one_role_team_does_not_reveal_the_rest_of_that_role() -> None:
    org = Org({"change": None, "ops": None}, ("practitioner", "change_team"))
    cells = {("change", "change_team"): 6, ("ops", "change_team"): 2, ("ops", "practitioner"): 30}
    shown = disclose(org, cells, 5)
    # change_team (8) - team change (6) would be the two change-team people in ops.
    assert not {role_key("change_team"), team_key("change")} <= shown.visible
    assert smallest_derivable(org, cells, shown.visible, 5) is None


def test_a_healthy_organisation_shows_everything() -> None:
    org = Org({"p": None, "x": "p", "y": "p"}, ("practitioner", "team_lead"))
    cells = {("x", "practitioner"): 8, ("y", "practitioner"): 9, ("p", "practitioner"): 6,
             ("x", "team_lead"): 3, ("y", "team_lead"): 3}
    shown = disclose(org, cells, 5)
    assert shown.visible == frozenset(org.groups())


def test_thresholds_never_go_below_three_and_ten() -> None:
    assert Thresholds(2, 4) == Thresholds(3, 10)
    assert Thresholds.from_programme({"anonymity": {"min_group": 7, "min_comments": 12}}) == \
        Thresholds(7, 12)
    assert Thresholds.from_programme(None) == Thresholds(5, 10)
    assert disclose(Org({}, ()), {(None, "r"): 2}, 1).visible == frozenset()


def test_comments_are_shuffled_and_carry_only_their_round() -> None:
    when = datetime(2026, 11, 30, tzinfo=UTC)
    items = [(f"comment {i}", "round 3", when) for i in range(12)]
    shown = shuffled_comments(items, rng=random.Random(4))
    assert sorted(c.text for c in shown) == sorted(t for t, _, _ in items)
    assert [c.text for c in shown] != [t for t, _, _ in items]
    assert {(c.round_label, c.round_date) for c in shown} == {("round 3", when)}


# --- the whole results pipeline passes through the engine -----------------------------------


@settings(max_examples=60, deadline=None)
@given(organisations(), st.integers(3, 5), st.randoms(use_true_random=False))
def test_every_number_in_a_results_report_is_safe(case, k, rnd) -> None:  # type: ignore[no-untyped-def]
    from bot.pulse.summary import summarise
    from bot.reports.results import QuestionInfo, RoundData, RoundInfo, compute

    org, cells = case
    questions = [QuestionInfo("q1", "Rating", "likert5"), QuestionInfo("q2", "Comment", "text")]
    answers, commenters = [], []
    for cell, n in cells.items():
        answered = rnd.randint(0, n)  # some skip the rating
        if answered:
            answers.append(("q1", cell, str(rnd.randint(1, 5)), answered))
        commented = rnd.randint(0, n)
        if commented:  # comments are counted per team only
            commenters.append(("q2", cell[0], commented))
    kept = summarise({c: (n + 1, n) for c, n in cells.items()}, answers, commenters)
    data = RoundData.from_summary(kept.items(), {q.id: q.kind for q in questions})
    info = RoundInfo("r", "s", "Survey", 1, datetime(2026, 11, 30, tzinfo=UTC), True)
    res = compute(org, {}, Thresholds(k, 10), info, questions, data)
    shown = frozenset(g for g, r in res.groups.items() if r.shown)
    rated = frozenset(g for g, r in res.groups.items() if r.shown and r.questions[0].shown)
    commented = frozenset(g for g, r in res.groups.items() if r.shown and r.questions[1].comments_shown)
    assert smallest_derivable(org, cells, shown, k) is None
    assert smallest_derivable(org, data.answered.get("q1", {}), rated, k) is None
    assert smallest_derivable(org, data.commenters.get("q2", {}), commented, 10) is None
    for g in rated:
        assert res.groups[g].questions[0].n >= k
