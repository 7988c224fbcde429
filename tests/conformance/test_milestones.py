"""Stories: an owner is checked in with, goes quiet, and the lead hears; anyone asks the roadmap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

OWNER = "changeofficer@northbridge.example"  # owns family-network-meetings (weekly check-in)
LEAD = "lead.assessment@northbridge.example"  # leads its team, Assessment
ASKER = "practitioner2@northbridge.example"


async def at(driver, when: datetime) -> None:  # type: ignore[no-untyped-def]
    """Run the scheduler at `when`, as the serving process would."""
    driver.core.clock.set(when)
    await driver.core.tick(when)


async def mornings(driver, first: date, last: date) -> None:  # type: ignore[no-untyped-def]
    """The scheduler running at 09:00 every day from `first` to `last` (other features too)."""
    day = first
    while day <= last:
        await at(driver, datetime(day.year, day.month, day.day, 9, tzinfo=UTC))
        day += timedelta(days=1)


def checkins(driver, email: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [t for t in driver.seen(email) if "Check-in: Family network meetings" in t]


async def test_a_check_in_is_answered_then_goes_unanswered_and_the_lead_is_told(driver) -> None:  # type: ignore[no-untyped-def]
    # Sunday 29 Nov: the scheduler first sees the roadmap; the weekly cadence counts from here.
    await at(driver, datetime(2026, 11, 29, 12, tzinfo=UTC))
    await mornings(driver, date(2026, 11, 30), date(2026, 12, 6))
    assert checkins(driver, OWNER) == []

    # The check-in fell due on Sunday 6 Dec, a day off: it waits for Monday 09:00.
    await at(driver, datetime(2026, 12, 7, 9, tzinfo=UTC))
    [card] = checkins(driver, OWNER)
    assert "On track" in card and "At risk" in card and "35%" in card

    # They tap a status, fill in progress and a note: the card becomes a confirmation.
    await driver.tap(OWNER, "At risk")
    form = driver.form(OWNER)
    assert form is not None and [i.name for i in form.inputs] == ["status", "progress", "note"]
    assert await driver.submit(OWNER, {"status": "at_risk", "progress": "45",
                                       "note": "Two teams still to train"}) is None
    seen = driver.seen(OWNER)
    assert checkins(driver, OWNER) == []  # the card was edited in place
    assert any("Thanks, recorded for Family network meetings offered at every assessment: "
               "At risk, 45%" in t for t in seen)

    # Anyone can ask, by a fuzzy name, and sees the update and how old it is.
    await driver.say(LEAD, "status of the family network meetings milestone")
    answer = driver.seen(LEAD)[-1]
    assert "At risk" in answer and "45%" in answer and "Two teams still to train" in answer
    assert "today" in answer and "Change Officer" in answer and "31 Mar 2027" in answer

    # A week after that update, Monday 14 Dec, a new check-in; nobody answers it.
    await mornings(driver, date(2026, 12, 8), date(2026, 12, 14))
    assert len(checkins(driver, OWNER)) == 1
    await mornings(driver, date(2026, 12, 15), date(2026, 12, 15))  # within the grace period
    assert not any(t.startswith("Reminder: Check-in") for t in driver.seen(OWNER))
    await mornings(driver, date(2026, 12, 16), date(2026, 12, 16))  # grace (2 days) passed
    assert len([t for t in driver.seen(OWNER) if t.startswith("Reminder: Check-in")]) == 1
    await mornings(driver, date(2026, 12, 17), date(2026, 12, 17))  # one reminder only
    assert len([t for t in driver.seen(OWNER) if t.startswith("Reminder: Check-in")]) == 1
    assert not any("gone stale" in t for t in driver.seen(LEAD))

    # Friday 18 Dec: the reminder's grace passed too: stale, and the team lead is told once.
    await mornings(driver, date(2026, 12, 18), date(2026, 12, 18))
    told = [t for t in driver.seen(LEAD) if "gone stale" in t]
    assert len(told) == 1 and "Family network meetings offered at every assessment" in told[0]
    await at(driver, datetime(2026, 12, 18, 11, tzinfo=UTC))
    assert len([t for t in driver.seen(LEAD) if "gone stale" in t]) == 1
    await driver.say(ASKER, "status family-network-meetings")
    assert "stale" in driver.seen(ASKER)[-1]

    # The owner answers later from chat: no longer stale.
    await driver.say(OWNER, "update family network meetings")
    assert await driver.submit(OWNER, {"status": "on_track", "progress": "60", "note": ""}) is None
    await driver.say(ASKER, "status family-network-meetings")
    last = driver.seen(ASKER)[-1]
    assert "On track" in last and "60%" in last and "stale" not in last


async def test_anyone_asks_where_the_roadmap_stands(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(ASKER, "status")
    overview = driver.seen(ASKER)[-1]
    assert "Roadmap status" in overview and "Caseload weighting tool agreed" in overview
    assert "🔴 Off track: 1" in overview and "Overdue: 1" in overview

    await driver.say(ASKER, "what's at risk?")
    risky = driver.seen(ASKER)[-1]
    assert "Group supervision running in every team" in risky
    assert "Strengths-based recording templates live" in risky
    assert "Caseload" not in risky

    await driver.say(ASKER, "overdue")
    late = driver.seen(ASKER)[-1]
    assert "Strengths-based recording templates live" in late and "overdue" in late
    assert "Group supervision" not in late

    await driver.say("lead.familysupport@northbridge.example", "my milestones")
    mine = driver.seen("lead.familysupport@northbridge.example")[-1]
    assert "Group supervision running in every team" in mine and "Caseload" not in mine
    await driver.say(ASKER, "my milestones")
    assert driver.seen(ASKER)[-1] == "You don't own any milestones."

    await driver.say(ASKER, "milestones for family support")
    team = driver.seen(ASKER)[-1]
    assert "Milestones for Family Support" in team
    assert "Group supervision" in team and "Family network meeting toolkit published" in team
    assert "Caseload" not in team
    await driver.say(ASKER, "milestones for the finance team")
    assert "I don't know a team called" in driver.seen(ASKER)[-1]


async def test_several_matches_ask_which_and_none_suggests_the_closest(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(ASKER, "status supervision")
    ask = driver.seen(ASKER)[-1]
    assert "matches 2 milestones. Which one?" in ask
    await driver.tap(ASKER, "Supervision policy refreshed for reflective practice")
    shown = driver.seen(ASKER)[-1]
    assert "Not started" in shown and "Change Programme Lead" in shown

    await driver.say(ASKER, "status of the recording audit")
    none = driver.seen(ASKER)[-1]
    assert "couldn't find a milestone matching" in none
    assert "closest is “Strengths-based recording templates live”" in none
    await driver.tap(ASKER, "Show Strengths-based recording templates live")
    assert "Off track" in driver.seen(ASKER)[-1]


async def test_only_owners_and_the_change_team_update(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(ASKER, "update group supervision")
    assert driver.form(ASKER) is None
    assert driver.seen(ASKER)[-1].startswith("Only the owners of Group supervision")

    await driver.say("changelead@northbridge.example", "update group supervision")
    assert driver.form("changelead@northbridge.example") is not None
    assert await driver.submit("changelead@northbridge.example",
                               {"status": "on_track", "progress": "55", "note": "Diaries booked"}) is None
    await driver.say(ASKER, "status group-supervision")
    assert "On track" in driver.seen(ASKER)[-1] and "55%" in driver.seen(ASKER)[-1]
