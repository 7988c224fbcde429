"""Issue 21 item 1: retention over three years of activity removes exactly what the rules say,
and every closed round is still reported."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.audit import trail
from bot.broadcasts.tables import Broadcast, Delivery
from bot.core import Core
from bot.feedback.tables import FeedbackHandle, FeedbackItem, FeedbackMessage
from bot.milestones.tables import MilestoneCheckin
from bot.people.tables import Identity, PeopleRun, Person
from bot.privacy import retention
from bot.privacy.rules import KINDS, Retention
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from bot.pulse.tables import PulseAttributedAnswer, PulseComment, PulseQuestion, PulseRound
from bot.reports import service
from bot.reports.anonymity import ALL
from bot.scheduling.tables import Occurrence
from staffvoice.cli import main
from tests.conftest import EXAMPLE
from tests.test_feedback_helpers import dump
from tests.test_reports_seed import SURVEY, emails, everyone_answers, seed_round

START = datetime(2024, 1, 8, 10, 0, tzinfo=UTC)
NOW = datetime(2027, 1, 8, 2, 31, tzinfo=UTC)  # the daily job's time, three years on
MONTHS = 36


def month(m: int) -> datetime:
    y, mo = divmod(START.month - 1 + m, 12)
    return START.replace(year=START.year + y, month=mo + 1)


async def three_years(core: Core) -> None:
    """A round a month (everyone answers, twelve comment), feedback, broadcasts, check-ins,
    people runs and scheduler history every month; and four leavers."""
    people = await emails(core)
    for m in range(MONTHS):
        t = month(m)
        core.clock.set(t)  # type: ignore[attr-defined]
        rid = await seed_round(core, t, everyone_answers(people, comments=12))
        async with core.db.session() as s:
            me = (await s.execute(select(Person).where(
                Person.email == "practitioner1@northbridge.example"))).scalar_one()
            q = (await s.execute(select(PulseQuestion))).scalars().first()
            assert q is not None
            s.add(PulseAttributedAnswer(round_id=rid, person_id=me.id, question_id=q.id, value=3))
            for status in ("done", "new"):
                item = FeedbackItem(day=t.date(), text=f"{status} {m}", status=status, concerns=[])
                s.add(item)
                await s.flush()
                s.add(FeedbackHandle(item_id=item.id, token_key=f"tk-{item.id}", sealed=b"x" * 60))
                if m == 3 and status == "done":  # an old item still talked about last month
                    s.add(FeedbackMessage(item_id=item.id, seq=1, sender="team",
                                          day=(NOW - timedelta(days=30)).date(), text="Any news?"))
            b = Broadcast(author_person_id=me.id, title=f"b{m}", text="t", audience={},
                          state="done", created_at=t, finished_at=t)
            s.add(b)
            await s.flush()
            s.add(Delivery(broadcast_id=b.id, recipient=f"person:{me.id}", person_id=me.id,
                           state="sent", next_attempt_at=t))
            s.add(MilestoneCheckin(milestone_id="family-network-meetings", person_id=me.id,
                                   cycle_at=t, state="done", closed_at=t))
            s.add(PeopleRun(source="import", at=t, outcome="applied", counts={}))
            s.add(Occurrence(job="x", key=f"k{m}", due_at=t, outcome="skipped", at=t))
    async with core.db.session() as s:
        left = {"practitioner11@northbridge.example": ("left_on", 100),  # erased (90)
                "practitioner12@northbridge.example": ("left_on", 40),   # DM cleared only (30)
                "practitioner13@northbridge.example": ("ends_on", 10),   # neither yet
                "practitioner14@northbridge.example": ("ends_on", 95)}   # erased
        for email, (field, days) in left.items():
            p = (await s.execute(select(Person).where(Person.email == email))).scalar_one()
            setattr(p, field, NOW.date() - timedelta(days=days))
            s.add(Identity(platform="fake", workspace="W", user_id=f"U-{email}", person_id=p.id,
                           dm={"platform": "fake", "workspace": "W", "conversation_id": "D1"}))


async def count(core: Core, q) -> int:  # type: ignore[no-untyped-def]
    async with core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(q.subquery()))).scalar_one())


async def expected(core: Core) -> dict[str, int]:
    """What the default rules say should go at NOW, from the rules' plain words."""
    c24 = date(2025, 1, 8)
    c24t = datetime(2025, 1, 8, tzinfo=UTC)
    old_rounds = select(PulseRound.id).where(PulseRound.closes_at < c24t)
    recent_msg = select(FeedbackMessage.item_id).where(FeedbackMessage.day >= c24)
    return {
        "feedback": await count(core, select(FeedbackItem).where(
            FeedbackItem.status == "done", FeedbackItem.day < c24,
            FeedbackItem.id.not_in(recent_msg))),
        "reply_routes": await count(core, select(FeedbackHandle).join(FeedbackItem).where(
            FeedbackItem.day < NOW.date() - timedelta(days=90))),
        "pulse_comments": await count(core, select(PulseComment).where(
            PulseComment.round_id.in_(old_rounds))),
        "attributed_answers": await count(core, select(PulseAttributedAnswer).where(
            PulseAttributedAnswer.round_id.in_(old_rounds))),
        "broadcast_ledger": await count(core, select(Delivery).join(Broadcast).where(
            Broadcast.finished_at < NOW - timedelta(days=90))),
        "checkins": await count(core, select(MilestoneCheckin).where(
            MilestoneCheckin.closed_at < datetime(2026, 1, 8, tzinfo=UTC))),
        "leaver_conversations": 3,  # the three who left more than 30 days ago had a DM route
        "leavers_erased": 2,
        "people_runs": await count(core, select(PeopleRun).where(PeopleRun.at < c24t)),
        "scheduler_history": await count(core, select(Occurrence).where(
            Occurrence.at < NOW - timedelta(days=90))),
    }


async def test_three_years_of_activity_lose_exactly_what_the_rules_say(loaded: Core) -> None:
    await three_years(loaded)
    loaded.clock.set(NOW)  # type: ignore[attr-defined]
    want = await expected(loaded)
    assert want["pulse_comments"] == 12 * 12 and want["feedback"] == 12 - 1  # sanity
    assert want["reply_routes"] == 2 * 34  # all but the last two months
    before = await dump(loaded.db)

    # A dry run counts the same and changes nothing.
    assert await retention.run(loaded.db, NOW, dry_run=True) == want
    assert await dump(loaded.db) == before

    # The daily job (as the scheduler runs it) removes exactly that, and records the counts.
    assert await loaded.router.tickers["retention"](loaded, NOW) == sum(want.values())
    assert await retention.run(loaded.db, NOW, dry_run=True) == dict.fromkeys(want, 0)
    last = (await trail.entries(loaded.db))[-1]
    assert last.action == "retention.run" and last.detail == want and last.who == "scheduler"

    async with loaded.db.session() as s:
        gone = {p.email for p in (await s.execute(select(Person))).scalars()}
        assert "practitioner11@northbridge.example" not in gone
        assert "practitioner14@northbridge.example" not in gone
        assert {"practitioner12@northbridge.example", "practitioner13@northbridge.example"} <= gone
        left = {i.user_id: i.dm for i in (await s.execute(select(Identity))).scalars()}
        assert left["U-practitioner12@northbridge.example"] is None
        assert left["U-practitioner13@northbridge.example"] is not None
        kept = {i.text for i in (await s.execute(select(FeedbackItem))).scalars()}
        assert "done 3" in kept and "done 2" not in kept and "new 0" in kept
        # Every closed round is still reported, from its counts.
        rounds = await service.closed_rounds(s, SURVEY)
        assert len(rounds) == MONTHS
        for info in rounds:
            whole = (await service.round_results(s, info)).groups[ALL]
            assert whole.shown and whole.respondents == whole.invited == 25, info.number
        q = (await s.execute(select(PulseQuestion).where(PulseQuestion.key == "listened-to"))).scalar_one()
        points = await service.trend(s, SURVEY, q.id, ALL)
        assert len(points.points) >= 2 and all(p.score is not None for p in points.points)


async def test_the_programme_file_sets_the_periods_and_refuses_bad_ones(loaded: Core) -> None:
    text = EXAMPLE.read_text() + "\nretention:\n  feedback_months: 12\n  leavers_erase_days: 30\n"
    await loader.load(loaded.db, text, loaded.router)
    from bot.privacy.rules import current

    async with loaded.db.session() as s:
        rules = await current(s)
    assert rules == Retention(feedback_months=12, leavers_erase_days=30)
    before = await dump(loaded.db)
    for bad, says in (("  feedback_months: soon\n", "should be a whole number"),
                      ("  reply_routes_days: 365\n", "must be between 1 and 90"),
                      ("  pulse_comments_months: 0\n", "must be between 1 and 120"),
                      ("  logs: 7\n", "unknown field"),
                      ("  - 24\n", "should be a mapping")):
        with pytest.raises(ProgrammeError, match=says) as e:
            await loader.load(loaded.db, EXAMPLE.read_text() + "\nretention:\n" + bad,
                              loaded.router)
        assert "retention" in str(e.value)
    assert await dump(loaded.db) == before
    assert set(KINDS) == set(Retention.__dataclass_fields__)


async def test_the_command_line_runs_it_and_a_dry_run_changes_nothing(
        loaded: Core, settings, capsys) -> None:  # type: ignore[no-untyped-def]
    async with loaded.db.session() as s:
        s.add(PeopleRun(source="import", at=datetime(2020, 1, 1, tzinfo=UTC), outcome="applied",
                        counts={}))
    before = await dump(loaded.db)
    assert await asyncio.to_thread(main, ["retention", "run", "--dry-run"], settings=settings) == 0
    out = capsys.readouterr().out
    assert "people_runs: would remove 1" in out and "nothing was changed" in out
    assert await dump(loaded.db) == before
    assert await asyncio.to_thread(main, ["retention", "run"], settings=settings) == 0
    assert "people_runs: removed 1" in capsys.readouterr().out
    assert (await trail.entries(loaded.db))[-1].action == "retention.run"


async def test_a_council_that_keeps_reply_routes_30_days_sees_them_gone_after_30(
        loaded: Core) -> None:
    """One rule for reply routes: the programme's `reply_routes_days` is what staff are told
    (the form, the thanks, the privacy notice) and what the daily jobs do."""
    from bot.privacy import notice
    from bot.scheduling.jobs import run_due
    from tests.conformance.drivers.fake import FakeDriver
    from tests.conftest import MONDAY_10
    from tests.test_feedback_helpers import OTHER, give

    await loader.load(loaded.db, EXAMPLE.read_text() + "\nretention:\n  reply_routes_days: 30\n",
                      loaded.router)
    d = FakeDriver(loaded)
    loaded.clock.set(MONDAY_10)  # type: ignore[attr-defined]
    await d.say(OTHER, "feedback")
    form = d.form(OTHER)
    assert form is not None
    told = " ".join(getattr(b, "text", "") for b in form.intro)
    assert "they can reach you for 30 days after you send it" in told
    assert await give(d, OTHER, "Court deadlines clash with network meetings.",
                      replies=True) is None
    thanks = d.form(OTHER)  # the thanks, shown in the form (docs/invariants.md N19)
    assert thanks is not None and thanks.notice
    assert "If the change team answers within 30 days, I'll tell you in our chat." in " ".join(
        getattr(b, "text", "") for b in thanks.intro)
    async with loaded.db.session() as s:
        assert "the way to reply to your anonymous feedback, 30 days after the day you send it" in (
            " ".join((await notice.text_of(s)).split()))
    # The scheduler's daily jobs, 30 days after it was sent and the day after.
    for days, left in ((30, 1), (31, 0)):
        loaded.clock.set(MONDAY_10 + timedelta(days=days))  # type: ignore[attr-defined]
        await run_due(loaded, loaded.clock.now())
        assert len((await dump(loaded.db))["feedback_handles"]) == left, days
    [run] = [e for e in await trail.entries(loaded.db) if e.action == "retention.run"][-1:]
    assert run.detail["reply_routes"] == 1


async def test_an_evening_items_reply_route_is_kept_as_the_notice_says(loaded: Core) -> None:
    """An item sent after the day's last release is dated the next day (N29), and reply routes
    expire by the item's day: Monday 20:00's route goes with Tuesday 10:00's, a day later than
    the day it was sent would give. Expiring it by the day sent would end its "replies
    possible" a day before the others of its day, and tell the change team it came that
    evening; so the rule stays and the privacy notice says it (decided 2026-12-07; before,
    the notice said "at most 30 days", which the evening route outlived: review9)."""
    from bot.privacy import notice
    from bot.scheduling.jobs import run_due
    from tests.conformance.drivers.fake import FakeDriver
    from tests.conftest import MONDAY_10
    from tests.test_feedback_helpers import OTHER, PRACTITIONER, give

    await loader.load(loaded.db, EXAMPLE.read_text() + "\nretention:\n  reply_routes_days: 30\n",
                      loaded.router)
    d = FakeDriver(loaded)
    loaded.clock.set(MONDAY_10.replace(hour=20))  # type: ignore[attr-defined]
    assert await give(d, OTHER, "Court deadlines clash with network meetings.",
                      replies=True) is None
    loaded.clock.set(MONDAY_10 + timedelta(days=1))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled.",
                      replies=True) is None
    items = (await dump(loaded.db))["feedback_items"]
    assert len({i["day"] for i in items}) == 1  # both Tuesday's
    async with loaded.db.session() as s:
        told = " ".join((await notice.text_of(s)).split())
    # In staff's words (review26): no "dated", no "release"; the hour they can see, and what
    # the form tells every sender beforehand is true for this one too.
    assert ("the way to reply to your anonymous feedback, 30 days after the day you send it "
            "(31 if you send it after 17:00, when it counts as the next day's)") in told, told
    assert "at most 30 days" not in told and "dated" not in told and "release" not in told
    loaded.clock.set(MONDAY_10.replace(hour=20))  # type: ignore[attr-defined]
    await d.say(OTHER, "feedback")
    form = d.form(OTHER)
    assert form is not None
    intro = " ".join(getattr(b, "text", "") for b in form.intro)
    assert ("they can reach you for 30 days after you send it (31 if you send it after 17:00)"
            in intro), intro
    # Tuesday + 30 (Monday + 31): both kept; Tuesday + 31: both gone, at the same run.
    for days, left in ((31, 2), (32, 0)):
        loaded.clock.set(MONDAY_10 + timedelta(days=days))  # type: ignore[attr-defined]
        await run_due(loaded, loaded.clock.now())
        assert len((await dump(loaded.db))["feedback_handles"]) == left, days
