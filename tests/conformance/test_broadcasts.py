"""Stories: the change team writes an early win in chat, previews it, confirms, and staff see it.

Runs on every driver. Delivery happens in the background sender; `settle()` waits for it.
"""

from __future__ import annotations

import re

from bot.broadcasts import service
from bot.broadcasts.feature import settle

CHANGE = "changelead@northbridge.example"
STAFF = "practitioner1@northbridge.example"
OTHER = "practitioner2@northbridge.example"
GOOD = {
    "title": "Family network meetings in every team",
    "text": "Since October every assessment team runs family network meetings. Thank you!",
    "image_url": "https://example.org/win.png",
    "link_url": "https://example.org/story",
    "link_label": "Read the story",
    "celebrate": "true",
    "audience": "teams: assessment",
    "when": "now",
}


def broadcast_id(texts: list[str]) -> str:
    for t in reversed(texts):
        m = re.search(r"Id: ([0-9a-f]{24})", t)
        if m:
            return m.group(1)
    raise AssertionError("no preview with an id was shown")


async def test_an_early_win_is_previewed_confirmed_and_delivered(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(CHANGE, "broadcast")
    form = driver.form(CHANGE)
    assert form is not None and form.title == "New broadcast"
    assert await driver.submit(CHANGE, GOOD) is None

    preview = driver.seen(CHANGE)[-1]
    assert "Preview: only you can see this" in preview and "Recipients: 6" in preview
    assert GOOD["title"] in preview
    await settle()
    assert not any(GOOD["title"] in t for t in driver.seen(STAFF)), "nothing before confirm"

    await driver.tap(CHANGE, "Send")
    await settle()
    mine = [t for t in driver.seen(STAFF) if GOOD["title"] in t]
    assert len(mine) == 1
    assert "Read the story: https://example.org/story" in mine[0] and "Celebrate" in mine[0]
    assert not any(GOOD["title"] in t for t in driver.seen("practitioner6@northbridge.example"))
    assert any("has finished: delivered to 6 of 6" in t for t in driver.seen(CHANGE))


async def test_celebrate_counts_once_per_person_and_the_author_sees_it(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(CHANGE, "broadcast")
    await driver.submit(CHANGE, GOOD)
    bid = broadcast_id(driver.seen(CHANGE))
    await driver.tap(CHANGE, "Send")
    await settle()

    await driver.tap(STAFF, "Celebrate")
    assert driver.seen(STAFF)[-1].endswith("You celebrated this (1 person so far).")
    await driver.tap(STAFF, "Celebrate")
    assert driver.seen(STAFF)[-1].endswith("You already celebrated this (1 person so far).")
    await driver.tap(OTHER, "Celebrate")
    assert driver.seen(OTHER)[-1].endswith("You celebrated this (2 people so far).")
    assert GOOD["title"] in driver.seen(OTHER)[-1], "the win stays on screen with the count"

    await driver.say(CHANGE, f"broadcast status {bid}")
    status = driver.seen(CHANGE)[-1]
    assert "Celebrations: 2" in status and "Sent: 6" in status and "100%" in status


async def test_retract_removes_a_sent_broadcast(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(CHANGE, "broadcast")
    await driver.submit(CHANGE, GOOD)
    bid = broadcast_id(driver.seen(CHANGE))
    await driver.tap(CHANGE, "Send")
    await settle()
    assert any(GOOD["title"] in t for t in driver.seen(STAFF))

    await driver.say(CHANGE, f"broadcast retract {bid}")
    assert "Retracting: deleting 6 delivered copies" in driver.seen(CHANGE)[-1]
    await settle()
    assert not any(GOOD["title"] in t for t in driver.seen(STAFF))
    assert any("was retracted: 6 delivered copies deleted" in t for t in driver.seen(CHANGE))


async def test_bad_input_is_explained_and_nothing_is_sent(driver) -> None:  # type: ignore[no-untyped-def]
    limit = service.text_limit(set(driver.core.ports))  # 3,000 on Slack, more on Teams
    cases = {
        "text": ({"text": "x" * (limit + 1)}, f"the platform shows at most {limit:,}"),
        "audience": ({"audience": "teams: nowhere"}, "There is no team called 'nowhere'"),
        "image_url": ({"image_url": "http://example.org/win.png"}, "must be an https:// address"),
    }
    for _, (change, message) in cases.items():
        await driver.say(CHANGE, "broadcast")
        errors = await driver.submit(CHANGE, GOOD | change)
        assert errors is not None and message in " ".join(errors.values()), (change, errors)
    await settle()
    assert not any("Preview" in t for t in driver.seen(CHANGE))
    assert not any(GOOD["title"] in t for t in driver.seen(STAFF))


async def test_only_the_change_team_can_broadcast(driver) -> None:  # type: ignore[no-untyped-def]
    await driver.say(STAFF, "broadcast")
    assert driver.seen(STAFF)[-1] == "Sorry, only the change team can do that. Nothing was changed."
    assert driver.form(STAFF) is None
