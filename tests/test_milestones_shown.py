""""status" shows the roadmap card as last drawn, for at most a couple of seconds: this
process's own changes show at once, a change from elsewhere (another replica, plain SQL)
within `shown.STALE`, and a new day always redraws it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

from sqlalchemy import event, select, text, update

from bot.core import Core, Ctx, _Pending
from bot.milestones import service as milestones
from bot.milestones import shown
from bot.milestones.tables import Milestone
from bot.model import MessageEvent, plain_text
from bot.people.tables import Person, Team
from storage.db import Database
from tests.conformance.drivers.fake import FakeDriver

CHANGE = "changelead@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"
TITLE = "Strengths-based recording templates live"


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL this process sends while the block runs."""
    sent: list[str] = []

    def log(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        sent.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", log)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", log)


async def status(d: FakeDriver) -> str:
    await d.say(PRACTITIONER, "status")
    return d.seen(PRACTITIONER)[-1]


async def test_status_asked_again_shows_the_same_card_without_reading_the_roadmap(loaded: Core) -> None:
    d = FakeDriver(loaded)
    first = await status(d)
    assert "Roadmap status" in first and TITLE in first
    with statements(loaded.db) as sent:
        again = await status(d)
    assert again == first
    assert sent and not [s for s in sent if "milestone" in s]  # the admission's, nothing more


async def test_a_check_in_made_here_shows_at_the_next_status(loaded: Core) -> None:
    d = FakeDriver(loaded)
    assert "Family network meetings" in await status(d)
    await d.say(CHANGE, "update family network meetings")
    assert await d.submit(CHANGE, {"status": "off_track", "progress": "35", "note": ""}) is None
    after = await status(d)  # the same second: no time has passed
    line = next(x for x in after.splitlines() if "family-network-meetings" in x)
    assert line.startswith("• 🔴 Off track") and "35%" in line and "updated today" in line


async def test_names_changed_here_through_a_session_show_at_once(loaded: Core) -> None:
    d = FakeDriver(loaded)
    before = await status(d)
    assert "Front Door Team Manager" in before and TITLE in before
    async with loaded.db.session() as s:  # an ORM object changed
        lead = (await s.execute(Person.__table__.select().where(
            Person.email == "lead.frontdoor@northbridge.example"))).one()
        person = await s.get(Person, lead.id)
        assert person is not None
        person.display_name = "Front Door Service Manager"
    assert "Front Door Service Manager" in await status(d)
    async with loaded.db.session() as s:  # a Core statement through the session
        await s.execute(update(Milestone).where(Milestone.id == "recording-templates")
                        .values(title="Recording templates in use"))
    assert "Recording templates in use" in await status(d)
    async with loaded.db.session() as s:  # a textual one: which table is not known, so any
        await s.execute(text("UPDATE teams SET name = 'Front Door' WHERE name LIKE 'Front Door%'"))
        await s.execute(update(Team).where(Team.id == "no-such-team").values(name="x"))
    assert "Recording templates in use" in await status(d)


async def test_a_change_from_another_process_shows_within_the_stale_window(
    loaded: Core, db_url: str,
) -> None:
    d = FakeDriver(loaded)
    assert TITLE in await status(d)
    other = Database(db_url)  # another replica's engine on the same database
    try:
        async with other.transaction() as conn:  # an operator's plain SQL
            await conn.execute(text("UPDATE milestones SET title = 'Templates, renamed elsewhere' "
                                    "WHERE id = 'recording-templates'"))
    finally:
        await other.dispose()
    assert TITLE in await status(d)  # the card as drawn, under STALE ago
    loaded.clock.advance(shown.STALE - timedelta(milliseconds=1))  # type: ignore[attr-defined]
    assert TITLE in await status(d)
    loaded.clock.advance(timedelta(milliseconds=1))  # type: ignore[attr-defined]
    assert "Templates, renamed elsewhere" in await status(d)


async def test_a_new_day_or_a_clock_set_back_redraws_the_card(loaded: Core) -> None:
    d = FakeDriver(loaded)
    await d.say(CHANGE, "update family network meetings")
    assert await d.submit(CHANGE, {"status": "at_risk", "progress": "40", "note": ""}) is None
    assert "updated today" in await status(d)
    now = loaded.clock.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    loaded.clock.set(midnight)  # type: ignore[attr-defined]
    assert "updated yesterday" in await status(d)
    async with loaded.db.transaction() as conn:  # untracked: a bare connection's statement
        await conn.execute(text("UPDATE milestones SET progress = 41 "
                                "WHERE id = 'family-network-meetings'"))
    loaded.clock.set(midnight - timedelta(seconds=1))  # type: ignore[attr-defined]
    line = next(x for x in (await status(d)).splitlines() if "family-network-meetings" in x)
    assert "41%" in line and "updated today" in line


async def test_a_change_in_the_dispatchers_transaction_shows_once_it_is_committed(
        loaded: Core) -> None:
    """A handler that joins the dispatcher's transaction changes a milestone; another "status"
    in this process draws the card after the handler's session committed (which only ends
    the session: nothing is committed yet) and before the dispatcher's commit.

    Before: the counters moved at the session's commit, so that status cached the old card
    under the new count, and "status" after the real commit showed the old title for up to
    `STALE`."""
    d = FakeDriver(loaded)
    assert TITLE in await status(d)
    today = await _today(loaded)
    drawn: list[str] = []

    class Racing(_Pending):
        async def end(self, *, commit: bool) -> None:
            async with loaded.db.engine.connect() as other:  # status, in the meantime
                drawn.append(plain_text(await shown.overview(other, loaded.clock.now(), today)))
            await super().end(commit=commit)

    pending = Racing(loaded.db, await loaded.db.begun())
    async with loaded.db.session() as s:
        person = (await s.execute(select(Person).where(Person.email == CHANGE))).scalar_one()
    ctx = Ctx(loaded, MessageEvent("race", d.user(CHANGE), d.conv(CHANGE), text="x", trigger="t"),
              d.port, person, frozenset(), pending=pending)
    async with ctx.session() as s:
        milestone = await s.get(Milestone, "recording-templates")
        assert milestone is not None
        milestone.title = "Recording templates in use"
    assert drawn and TITLE in drawn[0]  # the window was there: the old rows were read
    assert "Recording templates in use" in await status(d)  # the same second


async def _today(core: Core) -> date:
    async with core.db.engine.connect() as conn:
        return await milestones.today(conn, core.clock.now())
