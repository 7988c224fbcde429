"""The retention run counts days in the programme's time zone, as the dates it compares are
stored (a feedback item's day, the day someone left) and as the scheduler runs it (02:30 there).

A council in Auckland (13 hours ahead of UTC in summer, 12 in winter) runs it at 02:31 on the
first Monday after its clocks went back: in UTC it is still the day before, so a run counting
UTC days kept everything a day longer than the rules say."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from bot.core import Core
from bot.feedback.tables import FeedbackHandle, FeedbackItem
from bot.people.tables import PeopleRun, Person
from bot.privacy import retention
from bot.programme import loader
from tests.conftest import EXAMPLE

# 2027-04-05 02:31 in Auckland (NZST, +12; NZDT ended on 2027-04-04) is 14:31 on the 4th in UTC.
NOW = datetime(2027, 4, 4, 14, 31, tzinfo=UTC)
TODAY = date(2027, 4, 5)


async def auckland(core: Core) -> None:
    text = EXAMPLE.read_text().replace("timezone: Europe/London", "timezone: Pacific/Auckland", 1)
    await loader.load(core.db, text, core.router)


async def test_a_council_far_east_of_utc_loses_each_day_what_its_own_calendar_says(
        loaded: Core) -> None:
    await auckland(loaded)
    async with loaded.db.session() as s:
        # Reply routes last 90 days: sent on 4 January, the route goes today; the 5th's stays.
        for day in (date(2027, 1, 4), date(2027, 1, 5)):
            item = FeedbackItem(day=day, text=f"sent {day}", status="new", concerns=[])
            s.add(item)
            await s.flush()
            s.add(FeedbackHandle(item_id=item.id, token_key=f"tk-{day}", sealed=b"x" * 60))
        # Leavers are erased 90 days after they left: the one who left on the 5th goes today.
        for email, left in (("practitioner11@northbridge.example", date(2027, 1, 5)),
                            ("practitioner12@northbridge.example", date(2027, 1, 6))):
            p = (await s.execute(select(Person).where(Person.email == email))).scalar_one()
            p.left_on = left
        # Import records are kept 24 months, to the start of 5 April 2025 in Auckland, which
        # was still summer time (+13): 11:00 UTC on the 4th, not 12:00 as today's offset says.
        for at in (datetime(2025, 4, 4, 10, 50, tzinfo=UTC),   # 23:50 on the 4th there: goes
                   datetime(2025, 4, 4, 11, 30, tzinfo=UTC)):  # 00:30 on the 5th there: stays
            s.add(PeopleRun(source="import", at=at, outcome="applied", counts={}))

    counts = await retention.run(loaded.db, NOW)

    assert (counts["reply_routes"], counts["leavers_erased"], counts["people_runs"]) == (1, 1, 1)
    async with loaded.db.session() as s:
        routed = (await s.execute(select(FeedbackItem.day).join(FeedbackHandle))).scalars()
        assert list(routed) == [date(2027, 1, 5)]
        emails = set((await s.execute(select(Person.email))).scalars())
        assert "practitioner11@northbridge.example" not in emails
        assert "practitioner12@northbridge.example" in emails
        runs = list((await s.execute(select(PeopleRun.at).where(
            PeopleRun.at < datetime(2026, 1, 1, tzinfo=UTC)))).scalars())
        assert [r.astimezone(UTC) for r in runs] == [datetime(2025, 4, 4, 11, 30, tzinfo=UTC)]


async def test_london_at_the_same_moment_is_a_day_behind_auckland(loaded: Core) -> None:
    """The same rows in Europe/London (the example programme): its 4 April, so nothing goes."""
    async with loaded.db.session() as s:
        item = FeedbackItem(day=date(2027, 1, 4), text="sent", status="new", concerns=[])
        s.add(item)
        await s.flush()
        s.add(FeedbackHandle(item_id=item.id, token_key="tk", sealed=b"x" * 60))
    assert (await retention.run(loaded.db, NOW, dry_run=True))["reply_routes"] == 0
