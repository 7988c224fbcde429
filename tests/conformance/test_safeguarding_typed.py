"""A disclosure typed in the chat instead of the form gets the safeguarding routes (N52).

Feedback goes through the form; what is typed in the chat is never kept (A11). Someone who
writes "I want to kill myself" to the bot, or what a child on their caseload told them, was
answered "Sorry, I didn't understand that. Type “help”": no route, no 999, on every platform.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.core import UNKNOWN, Core
from bot.feedback import safeguarding
from bot.people.tables import Setting
from tests.test_feedback_helpers import LEADS, PRACTITIONER, as_text, dump

TYPED = [
    ("I want to kill myself", "possible self-harm"),
    ("A boy on my caseload told me his stepdad hits him.", "possible risk to a child"),
    ("My supervisor has been bullying me for months and nobody does anything",
     "possible allegation about a colleague"),
]


async def _routes(core: Core) -> list[str]:
    async with core.db.session() as s:
        row = await s.get(Setting, "safeguarding")
    assert row is not None and row.value.get("routes"), "the example programme configures routes"
    cfg = safeguarding.Config.from_setting(row.value)
    return [safeguarding.FIXED_NOTICE, *(r.name for r in cfg.routes),
            *(x for r in cfg.routes for x in (r.phone, r.email, r.url) if x)]


@pytest.mark.parametrize(("text", "looks_like"), TYPED, ids=["self-harm", "child", "colleague"])
async def test_a_disclosure_typed_in_the_chat_gets_every_route_and_is_not_kept(
        driver: Any, text: str, looks_like: str) -> None:
    """Typed into the DM, not the form: the answer says what it looks like, that nothing
    typed here reaches anyone, and shows every configured route; the text is not echoed, not
    stored, and no lead is sent anything (it names its writer: not a referral route).

    Before: "Sorry, I didn't understand that." on every driver."""
    routes = await _routes(driver.core)
    await driver.say(PRACTITIONER, "help")  # past the privacy notice
    await driver.say(PRACTITIONER, text)
    answer = driver.seen(PRACTITIONER)[-1]
    assert UNKNOWN not in answer, answer
    assert looks_like in answer and "reaches anyone" in answer, answer
    for expected in routes:
        assert expected in answer, expected
    assert text not in answer
    assert all(not driver.seen(lead) for lead in LEADS)
    for name, rows in (await dump(driver.core.db)).items():
        for row in rows:
            assert text not in " ".join(as_text(v) for v in row.values()), name


async def test_ordinary_text_the_bot_does_not_know_is_still_not_understood(driver: Any) -> None:
    await driver.say(PRACTITIONER, "help")
    await driver.say(PRACTITIONER, "The new recording template takes twice as long.")
    assert UNKNOWN in driver.seen(PRACTITIONER)[-1]


async def test_a_disclosure_in_a_channel_mention_is_answered_in_the_dm(driver: Any) -> None:
    """@mentioned in a channel: the routes go to the writer's DM; the channel hears only that
    they were answered privately, not what their words look like."""
    if driver.name not in ("slack", "teams"):
        pytest.skip("only Slack and Teams have channels to mention the bot in")
    text, looks_like = TYPED[0]
    routes = await _routes(driver.core)
    await driver.say(PRACTITIONER, "help")
    dm = len(driver.seen(PRACTITIONER))
    if driver.name == "slack":
        assert await driver.mention(PRACTITIONER, "C0TEAMROOM", text) == 200
        room = [driver._plain(m) for m in driver.fake.in_channel("C0TEAMROOM")]
    else:
        await driver.mention(PRACTITIONER, text)
        from tests.conformance.drivers.teams import CHANNEL_ID, plain_of

        room = [plain_of(p.current) for p in driver.fake.in_conversation(CHANNEL_ID)]
    [answer] = driver.seen(PRACTITIONER)[dm:]
    assert looks_like in answer, answer
    for expected in routes:
        assert expected in answer, expected
    assert any("answered you privately" in m for m in room), room
    assert not any(looks_like in m or "safeguarding" in m for m in room), room


async def test_a_disclosure_that_opens_with_help_gets_every_route(driver: Any) -> None:
    """"Help me, ..." is how a disclosure often starts. The first word is a command that takes
    no words after it, so the rest was thrown away: the writer got the list of commands, no
    route and no 999. The words after a command that takes none are read as if typed alone.

    Before: "What you can do here" on every driver."""
    routes = await _routes(driver.core)
    await driver.say(PRACTITIONER, "help")  # past the privacy notice
    text = "Help me please, my stepdad hits me when my mum is at work"
    await driver.say(PRACTITIONER, text)
    answer = driver.seen(PRACTITIONER)[-1]
    assert "What you can do here" not in answer, answer
    assert "possible risk to a child" in answer and "reaches anyone" in answer, answer
    for expected in routes:
        assert expected in answer, expected
    assert all(not driver.seen(lead) for lead in LEADS)
    await driver.say(PRACTITIONER, "help me find the pulse results")
    assert "What you can do here" in driver.seen(PRACTITIONER)[-1]


async def test_a_disclosure_from_someone_outside_the_programme_gets_every_route(
        driver: Any) -> None:
    """Someone in the workspace but not in the programme (not enrolled yet, or a visitor)
    writes a disclosure to the bot: the routes and who to ask about joining, not only "you
    are not part of this programme" (before: that alone, no route, no 999: found in review22).
    Nothing is kept, nobody is told, no person is enrolled; ordinary text still gets the
    polite notice alone."""
    from sqlalchemy import func, select

    from bot.people.tables import Identity, Person
    from tests.conformance.test_enrolment import STRANGER

    text, looks_like = TYPED[1]
    routes = await _routes(driver.core)
    if driver.name == "teams":  # a member of the tenant the Teams fake must know first
        driver.fake.add_user(STRANGER, "Visitor")

    async def people() -> tuple[int, int]:
        async with driver.core.db.session() as s:
            return (await s.scalar(select(func.count()).select_from(Person)) or 0,
                    await s.scalar(select(func.count()).select_from(Identity)) or 0)

    before = await people()
    await driver.say(STRANGER, "The new recording template takes twice as long.")
    assert driver.seen(STRANGER)[-1].startswith("Sorry, you are not part of this programme yet")
    await driver.say(STRANGER, text)
    answer = driver.seen(STRANGER)[-1]
    assert looks_like in answer and "reaches anyone" in answer, answer
    for expected in routes:
        assert expected in answer, expected
    assert "you are not part of this programme yet" in answer  # and who to ask
    assert text not in answer
    assert all(not driver.seen(lead) for lead in LEADS)
    assert await people() == before
    for name, rows in (await dump(driver.core.db)).items():
        for row in rows:
            assert text not in " ".join(as_text(v) for v in row.values()), name


@pytest.mark.parametrize("dm_opens", [True, False], ids=["dm", "no-dm"])
async def test_an_outsiders_disclosure_in_a_channel_mention_says_nothing_of_it_there(
        driver: Any, dm_opens: bool) -> None:
    """Someone outside the programme @mentions the bot in a channel with a disclosure: the
    routes (with the not-enrolled notice) go to their DM and the channel hears only that they
    were answered privately. Where no DM can be opened, the routes are shown in the channel
    but never what the words look like ("possible risk to a child" beside the writer's name,
    read by their colleagues). Found in review26: the whole answer, its description included,
    was posted in the channel."""
    if driver.name not in ("slack", "teams"):
        pytest.skip("only Slack and Teams have channels to mention the bot in")
    from tests.conformance.test_enrolment import STRANGER

    text, looks_like = TYPED[1]
    routes = await _routes(driver.core)
    if driver.name == "slack":
        if not dm_opens:
            driver.fake.failures["conversations.open"] = ["user_not_visible"]
        assert await driver.mention(STRANGER, "C0TEAMROOM", text) == 200
        room = [driver._plain(m) for m in driver.fake.in_channel("C0TEAMROOM")]
    else:
        from tests.conformance.drivers.teams import CHANNEL_ID, plain_of

        u = driver.fake.add_user(STRANGER, "Visitor")
        if dm_opens:
            u.installed = True
        await driver.mention(STRANGER, text)
        room = [plain_of(p.current) for p in driver.fake.in_conversation(CHANNEL_ID)]
    assert not any(looks_like in m or "may describe a safeguarding" in m for m in room), room
    assert not any(text in m for m in room), room
    if dm_opens:
        assert not any("safeguarding" in m for m in room), room
        [answer] = driver.seen(STRANGER)
        assert looks_like in answer and "you are not part of this programme yet" in answer
        for expected in routes:
            assert expected in answer, expected
        assert any("answered you privately" in m for m in room), room
    else:
        assert driver.seen(STRANGER) == []
        shown = "\n".join(room)
        for expected in routes:
            assert expected in shown, expected
    assert all(not driver.seen(lead) for lead in LEADS)


async def test_a_disclosure_in_a_channel_mention_with_no_dm_does_not_say_what_it_looks_like(
        driver: Any) -> None:
    """@mentioned in a channel by a practitioner the bot cannot message privately: the routes
    are shown in the channel, but not what the words look like, which beside the writer's
    name would tell the channel (found in review26: "may describe a safeguarding concern
    (possible self-harm)" in the channel)."""
    if driver.name not in ("slack", "teams"):
        pytest.skip("only Slack and Teams have channels to mention the bot in")
    text, looks_like = TYPED[0]
    routes = await _routes(driver.core)
    await driver.say(PRACTITIONER, "help")
    dm = len(driver.seen(PRACTITIONER))
    if driver.name == "slack":
        driver.fake.failures["conversations.open"] = ["user_not_visible"]
        assert await driver.mention(PRACTITIONER, "C0TEAMROOM", text) == 200
        room = [driver._plain(m) for m in driver.fake.in_channel("C0TEAMROOM")]
    else:
        from tests.conformance.drivers.teams import CHANNEL_ID, plain_of

        driver.fake.user_by_email(PRACTITIONER).blocked = True
        await driver.mention(PRACTITIONER, text)
        room = [plain_of(p.current) for p in driver.fake.in_conversation(CHANNEL_ID)]
    assert driver.seen(PRACTITIONER)[dm:] == []
    assert not any(looks_like in m or "may describe a safeguarding" in m for m in room), room
    assert not any(text in m for m in room), room
    shown = "\n".join(room)
    for expected in routes:
        assert expected in shown, expected
