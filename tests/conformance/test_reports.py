"""Story: after a pulse round closes, leaders and team leads read results, and nobody is outed."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round

ASSESSMENT = [f"practitioner{i}@northbridge.example" for i in range(1, 6)]


async def _rounds(core) -> None:  # type: ignore[no-untyped-def]
    people = await emails(core)
    await seed_round(core, MONDAY_10 - timedelta(days=14), everyone_answers(people, default=3))
    await seed_round(core, MONDAY_10 - timedelta(days=7), everyone_answers(
        people, {e: 5 for e in ASSESSMENT}, default=3, comments=12))


async def test_the_change_team_reads_results_with_a_chart_described_in_words(driver) -> None:  # type: ignore[no-untyped-def]
    await _rounds(driver.core)
    await driver.say("changelead@northbridge.example", "results Assessment Team")
    card = driver.seen("changelead@northbridge.example")[-1]
    assert "Pulse results: Weekly pulse, Round 2" in card
    assert "Responses: 6 of 6 asked (100%, no change on last round)" in card
    assert "83% favourable (+83.3 pts)" in card
    assert "[image: I understand the shared vision" in card
    assert "Round 1: favourable % 100; response rate 100%." in card


async def test_a_team_lead_is_refused_another_team_exactly_like_a_missing_one(driver) -> None:  # type: ignore[no-untyped-def]
    await _rounds(driver.core)
    lead = "lead.assessment@northbridge.example"
    await driver.say(lead, "results family support")
    await driver.say(lead, "results nowhere")
    other, missing = driver.seen(lead)[-2:]
    assert other == ("Sorry, there are no results you can see for 'family support'. "
                     "Type “results” for what you can see.")
    assert missing == other.replace("family support", "nowhere")
    await driver.say("lead.cic@northbridge.example", "results children in care")
    assert "Not enough responses to show." in driver.seen("lead.cic@northbridge.example")[-1]


async def test_practitioners_cannot_read_results(driver) -> None:  # type: ignore[no-untyped-def]
    await _rounds(driver.core)
    await driver.say("practitioner2@northbridge.example", "results")
    said = driver.seen("practitioner2@northbridge.example")[-1]
    assert said.startswith("Sorry, only") and "Pulse results" not in said
