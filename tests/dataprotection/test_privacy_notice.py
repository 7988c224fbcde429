"""Issue 21 item 5: the privacy notice on first contact in each platform, and `privacy` any time."""

from __future__ import annotations

from sqlalchemy import select

from bot.core import Core
from bot.model import ActionEvent, InstallEvent
from bot.privacy import notice
from bot.privacy.tables import NoticeShown
from bot.programme import loader
from bot.programme.core_sections import DEFAULT_PRIVACY
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE

PRACTITIONER = "practitioner1@northbridge.example"
FIRST = "Before we start: how staffvoice uses your information"


async def test_the_first_message_on_a_platform_gets_the_notice_first_and_once(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")
    seen = d.seen(PRACTITIONER)
    assert len(seen) == 2 and seen[0].startswith(FIRST)
    assert "Pulse answers are stored without your name" in seen[0]
    assert "Type “privacy” any time" in seen[0]
    assert "Social Worker A" in seen[1]
    await d.say(PRACTITIONER, "help")
    assert len(d.seen(PRACTITIONER)) == 3 and not d.seen(PRACTITIONER)[2].startswith(FIRST)
    await notice.flush(loaded)  # the row waits for the flusher (tests/anonymity/test_first_contact.py)
    async with loaded.db.session() as s:
        rows = (await s.execute(select(NoticeShown))).scalars().all()
    # One row per platform account (platform, workspace, user): each platform is told once.
    assert [(r.platform, r.workspace, r.user_id) for r in rows] == [
        ("fake", d.port.workspace, f"U-{PRACTITIONER}")]
    # Undated: the moment of a first message ("feedback", often) would point at an item.
    assert set(NoticeShown.__table__.c.keys()) == {"platform", "workspace", "user_id"}


async def test_installing_the_app_shows_the_notice_before_the_welcome(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await loaded.handle(InstallEvent("ev-install", d.user(PRACTITIONER), d.conv(PRACTITIONER)),
                        d.port)
    seen = d.seen(PRACTITIONER)
    assert seen[0].startswith(FIRST) and seen[1].startswith("Hello! I'm staffvoice")


async def test_privacy_in_chat_shows_the_programmes_own_notice(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "privacy")
    assert d.seen(PRACTITIONER)[-1].startswith("Privacy notice")
    assert DEFAULT_PRIVACY.split("\n")[0] in d.seen(PRACTITIONER)[-1]
    text = EXAMPLE.read_text().replace(
        "programme:\n",
        "programme:\n  privacy: |-\n    Northbridge Council is the controller.\n\n"
        "    Ask dpo@northbridge.example for a copy of your data.\n", 1)
    await loader.load(loaded.db, text, loaded.router)
    await d.say(PRACTITIONER, "data protection")
    last = d.seen(PRACTITIONER)[-1]
    assert "Northbridge Council is the controller." in last
    assert "Ask dpo@northbridge.example for a copy of your data." in last
    assert "Pulse answers are stored without your name" not in last


async def test_a_tap_never_writes_the_notice_row(loaded: Core) -> None:
    """A pulse answer stays one commit that names nobody: the notice waits for typed words."""
    d = FakeDriver(loaded)
    await loaded.handle(ActionEvent("ev-tap", d.user(PRACTITIONER), d.conv(PRACTITIONER),
                                    action_id="pulse.nav", value="x"), d.port)
    async with loaded.db.session() as s:
        assert (await s.execute(select(NoticeShown))).first() is None


async def test_the_notice_says_how_long_things_are_kept_as_the_programme_sets_it(
        loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "privacy")
    assert "feedback that has been dealt with, 24 months after its last message" in d.seen(
        PRACTITIONER)[-1]
    text = EXAMPLE.read_text() + "\nretention:\n  feedback_months: 12\n  leavers_erase_days: 30\n"
    await loader.load(loaded.db, text, loaded.router)
    await d.say(PRACTITIONER, "privacy")
    last = d.seen(PRACTITIONER)[-1]
    assert "until 30 days after you leave" in last and "dealt with, 12 months" in last


async def test_an_account_linked_again_after_erasure_is_told_again(loaded: Core) -> None:
    """Erasure removes the account and its notice row together; when the same account comes
    back (the person rejoins), the notice comes first again, though this process told it once."""
    from sqlalchemy import delete

    from bot.people.tables import Identity

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")
    await d.say(PRACTITIONER, "whoami")
    assert [m.startswith(FIRST) for m in d.seen(PRACTITIONER)] == [True, False, False]
    await notice.flush(loaded)
    async with loaded.db.session() as s:  # what erasure does to the account's rows
        await s.execute(delete(NoticeShown))
        await s.execute(delete(Identity))
    await d.say(PRACTITIONER, "whoami")
    assert d.seen(PRACTITIONER)[3].startswith(FIRST)
    await d.say(PRACTITIONER, "whoami")
    assert not d.seen(PRACTITIONER)[-1].startswith(FIRST)


async def test_an_account_erased_before_the_flush_is_not_written_back(loaded: Core) -> None:
    """Told, then erased (its identity gone) before the flusher ran: no row names it after."""
    from sqlalchemy import delete

    from bot.people import held
    from bot.people.tables import Identity

    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")
    assert await held.flush(loaded) == 2  # the account's link and its DM route
    async with loaded.db.session() as s:
        await s.execute(delete(Identity))
    assert await notice.flush(loaded) == 0 and notice.unwritten(loaded) == set()
    async with loaded.db.session() as s:
        assert (await s.execute(select(NoticeShown))).first() is None


async def test_an_erasure_in_progress_holds_back_the_notice_flushes(loaded: Core) -> None:
    """A flush reads which accounts are still linked, then writes their rows: an erasure that
    committed between the two would leave a row naming the erased account. On PostgreSQL the
    erasure takes the flushes' advisory lock first, so while it is open no flush of any
    replica can start (one writer at a time does it on SQLite)."""
    import pytest
    from sqlalchemy import text

    from bot.people.tables import Person
    from bot.privacy import erasure

    if loaded.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "whoami")
    async with loaded.db.session() as s:
        person = (await s.execute(select(Person).where(Person.email == PRACTITIONER))).scalar_one()
        await erasure.erase(s, person)
        async with loaded.db.engine.connect() as other:
            free = (await other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                        {"k": notice.FLUSH_LOCK})).scalar_one()
        assert free is False  # a flush now would wait for the erasure to commit
    assert await notice.flush(loaded) == 0
    async with loaded.db.session() as s:
        assert (await s.execute(select(NoticeShown))).first() is None
