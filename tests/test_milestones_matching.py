"""Finding a milestone from what someone typed, including near misses and typos."""

from __future__ import annotations

import pytest

from bot.milestones.matching import find

ROADMAP = [
    ("family-network-meetings", "Family network meetings offered at every assessment"),
    ("group-supervision", "Group supervision running in every team"),
    ("practice-tools-training", "Practice tools training for all practitioners"),
    ("recording-templates", "Strengths-based recording templates live"),
    ("supervision-policy", "Supervision policy refreshed for reflective practice"),
    ("caseload-weighting", "Caseload weighting tool agreed"),
    ("network-toolkit", "Family network meeting toolkit published"),
]


@pytest.mark.parametrize("typed, wanted", [
    ("family-network-meetings", "family-network-meetings"),  # the id
    ("GROUP-SUPERVISION", "group-supervision"),
    ("Caseload weighting tool agreed", "caseload-weighting"),  # the exact title
    ("the family network meetings milestone", "family-network-meetings"),  # words wrapped round
    ("family network meeting", "network-toolkit"),  # every word exactly in one title only
    ("group supervison", "group-supervision"),  # a typo
    ("recording templats", "recording-templates"),
    ("supervison polcy", "supervision-policy"),
    ("network toolkt", "network-toolkit"),
    ("strengths based recordng", "recording-templates"),
    ("reflective practise", "supervision-policy"),  # British spelling of the verb
    ("weighing tool", "caseload-weighting"),
    ("assesment", "family-network-meetings"),
    ("practice tools", "practice-tools-training"),
])
def test_a_near_miss_finds_the_one_milestone(typed: str, wanted: str) -> None:
    assert find(typed, ROADMAP).one == wanted


@pytest.mark.parametrize("typed, both", [
    ("supervision", {"group-supervision", "supervision-policy"}),
    ("family network", {"family-network-meetings", "network-toolkit"}),
    ("famly netwrk meetings", {"family-network-meetings", "network-toolkit"}),  # too close to call
])
def test_a_name_that_fits_several_lists_them_to_choose_from(typed: str, both: set[str]) -> None:
    found = find(typed, ROADMAP)
    assert found.one is None and set(found.ids) == both


@pytest.mark.parametrize("typed, closest", [
    ("recording audit", "recording-templates"),
    ("caseload review", "caseload-weighting"),
    ("supervisor rota", "group-supervision"),
    ("training budget", "practice-tools-training"),
])
def test_no_match_suggests_the_closest(typed: str, closest: str) -> None:
    found = find(typed, ROADMAP)
    assert found.ids == () and found.closest == closest


@pytest.mark.parametrize("typed", ["budget", "fnm", "", "the milestone", "zzzz qqqq"])
def test_nothing_alike_suggests_nothing(typed: str) -> None:
    found = find(typed, ROADMAP)
    assert found.ids == () and found.closest is None


def test_an_empty_roadmap_finds_nothing() -> None:
    assert find("family network", []).ids == ()
