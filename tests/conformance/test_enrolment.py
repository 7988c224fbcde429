"""Story: someone in the workspace but not in the programme is told who to ask, on every adapter."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.people.tables import Identity, Person

STRANGER = "visitor@elsewhere.example"


async def _counts(driver) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with driver.core.db.session() as s:
        return (await s.scalar(select(func.count()).select_from(Person)) or 0,
                await s.scalar(select(func.count()).select_from(Identity)) or 0)


async def test_someone_outside_the_programme_is_told_who_to_ask_and_not_enrolled(driver) -> None:  # type: ignore[no-untyped-def]
    before = await _counts(driver)
    if driver.name == "teams":  # a member of the tenant the Teams fake must know first
        driver.fake.add_user(STRANGER, "Visitor")
    await driver.say(STRANGER, "help")
    said = driver.seen(STRANGER)[-1]
    assert said.startswith("Sorry, you are not part of this programme yet"), said
    assert "changelead@northbridge.example" in said
    assert await _counts(driver) == before  # not a person, so in no audience
    await driver.core.tick()  # Monday 10:00: the weekly pulse opens for everyone
    assert len(driver.seen(STRANGER)) == 1  # ...which does not include them
