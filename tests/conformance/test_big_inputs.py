"""Stories with big inputs, on every platform: a long roadmap, a page of long feedback, many teams.

Each platform has its limits, and its fake holds to them: Slack refuses a message whose blocks
hold more than about 12,000 characters of text (`msg_blocks_too_long`) or 50 blocks, and a
select menu of more than 100 options (tests/fakes/slack_api.py); Teams refuses a message over
about 28 KB (tests/fakes/teams_connector.py). The person still gets all of it.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select

from bot.core import Core
from bot.feedback import service as fb
from bot.milestones.tables import Milestone
from bot.people.tables import Team
from tests.conformance.drivers.base import Driver
from tests.test_feedback_helpers import release

LEAD = "lead.assessment@northbridge.example"
CHANGE = "changelead@northbridge.example"
SORRY_WORDS = ("went wrong", "sorry")


async def test_a_lead_asks_the_status_of_a_500_milestone_roadmap_and_reads_every_one(
    driver: Driver,
) -> None:
    core: Core = driver.core
    now = core.clock.now()
    async with core.db.session() as s:
        for i in range(500):
            s.add(Milestone(
                id=f"locality-step-{i:03d}",
                title=f"Locality step {i:03d}: family network meetings offered in every "
                      f"assessment & review",
                description="", team_id=None, due=date(2027, 3, 31), status="on_track",
                progress=i % 100, position=1000 + i, created_at=now, early_win_ids=[],
                offer_to=[]))
    before = len(driver.seen(LEAD))
    await driver.say(LEAD, "status")
    answer = driver.seen(LEAD)[before:]
    text = "\n".join(answer)
    assert not any(w in text.lower() for w in SORRY_WORDS) and "shortened" not in text
    # Every milestone, in the roadmap's order, across as many messages as the platform needs.
    ids = re.findall(r"\((locality-step-\d{3})\)", text)
    assert ids == [f"locality-step-{i:03d}" for i in range(500)]
    assert "& review" in text
    first = next(n for n, t in enumerate(answer) if "locality-step-" in t or "Roadmap" in t)
    assert answer[first].startswith("Roadmap status")


async def test_the_change_team_lists_a_page_of_long_feedback_items_and_acts_on_each(
    driver: Driver,
) -> None:
    core: Core = driver.core
    for i in range(30):
        words = f"Item {i:02d}: the new recording templates take longer than the old ones <sic> " * 10
        await fb.store(core, f"seed-person-{i}", text=words, theme_id=None, replies=False,
                       concerns=())
    before = len(driver.seen(CHANGE))
    await release(core)
    await driver.say(CHANGE, "feedback list")
    answer = [t for t in driver.seen(CHANGE)[before:] if "Item " in t]
    text = "\n".join(answer)
    # A page of 20 (the core's), 12,000 characters and more: more than one Slack message.
    assert answer[0].startswith("Feedback (20)") and "shortened" not in text
    listed = sorted(set(re.findall(r"Item (\d{2}):", text)))
    assert len(listed) == 20
    for n in listed:
        # Each item arrives with its own Read and Done buttons, in the same message.
        [holder] = [m for m in answer if f"Item {n}:" in m]
        assert "Read | Done" in holder[holder.index(f"Item {n}:"):]
    assert "<sic>" in text  # user text as typed, not as markup

    # A Done button in the last message works: its first item is marked done.
    first_of_last = re.findall(r"Item (\d{2}):", answer[-1])[0]
    await driver.tap(CHANGE, "Done")
    async with core.db.session() as s:
        items = await fb.list_items(s, statuses=fb.STATUSES, limit=100)
    assert [i.text[:7] for i in items if i.status == "done"] == [f"Item {first_of_last}"]


async def test_a_new_milestone_can_go_to_any_of_150_teams(driver: Driver) -> None:
    core: Core = driver.core
    async with core.db.session() as s:
        for i in range(150):
            s.add(Team(id=f"locality-{i:03d}", name=f"Locality {i:03d} children's team"))
    await driver.say(CHANGE, "milestone new")
    form = driver.form(CHANGE)
    assert form is not None
    [team] = [i for i in form.inputs if i.name == "team"]
    offered = {c.value for c in team.options}  # type: ignore[union-attr]
    assert {f"locality-{i:03d}" for i in range(150)} <= offered
    assert await driver.submit(CHANGE, {
        "id": "last-locality-rollout", "title": "Rollout in the last locality",
        "owners": CHANGE, "team": "locality-149", "due": "2027-06-30",
        "cadence": "fortnightly"}) is None
    async with core.db.session() as s:
        m = (await s.execute(select(Milestone).where(Milestone.id == "last-locality-rollout"))).scalar_one()
    assert m.team_id == "locality-149"
    assert any("Milestone added." in t and "Locality 149" in t for t in driver.seen(CHANGE))
