"""Releases: non-urgent feedback becomes readable to the change team at fixed moments of the day.

An item listed from the moment it is stored is dated by whoever lists feedback again and again:
not there at 10:00, there at 10:10, so sent in those ten minutes, by someone free then
(docs/invariants.md, N22). So an item other than an urgent one, and an author's answer in a
thread, waits unread until a release moment of the programme's day (`safeguarding.feedback.
release_times`, in the programme's time zone; 12:00 and 17:00 by default). At a moment, all
that waits becomes readable together, in one transaction, marked by an undated `released`.
A moment that is not the day's last waits for at least two things (items and answers) from the
same listing (staff, the public pages, or the public pages' spam queue), and on the staff
listing from at least two people (bot/feedback/senders.py: one person's two things are a batch
of one author, N25); the day's last releases whatever waits, so a lone
item is dated to its day at best. What is sent after the day's last release waits for the next
day's. Urgent items wait here too, for everyone but the safeguarding leads, who read them at
once as they were alerted at once (bot/feedback/service.py `readable`, N37); their senders are
not marked among the people (they never make a midday release's second person). An author's
urgent answer waits likewise (its leads read it at once), and turns its item urgent and new for
everyone else at its release; a lead's reply to what only the leads read yet waits with it.

Releases run from the scheduler (a ticker that wakes at each moment, whether or not anything
waits) and, so that nothing waits on a scheduler, before every listing (a cheap check: has a moment passed that was not applied?).
A moment found late (the process was down) releases only what was sent on or before its day; a
moment that is not the day's last and is found past halfway to the next one is skipped (its
items wait for the next), so no late release cuts a short interval just before the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.feedback import senders
from bot.feedback import service as fb
from bot.feedback.moments import Moment, after, due
from bot.feedback.moments import describe as describe  # re-exported: the pages say the times
from bot.feedback.tables import FeedbackItem, FeedbackMessage, FeedbackRelease
from bot.people import reach
from bot.programme.core_sections import programme_zone
from storage.db import upsert

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.feedback")

JOB = "feedback-release"
NAME = "feedback"
SPAM = "spam"  # the spam queue's status (bot/families/service.py)
# Each listing the change team reads apart: a release's "at least two" counts within one.
GROUPS: tuple[tuple[str, ...], ...] = ((fb.STAFF,), fb.PUBLIC_SOURCES)
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)
# Per database, once this process has seen a moment applied: the next moment, so that until
# then a listing checks the clock alone. (A changed `release_times` counts from that moment.)
_NEXT: WeakKeyDictionary[Engine, datetime] = WeakKeyDictionary()


async def release_due(core: Core, now: datetime | None = None) -> int:
    """Apply the latest release moment at or before `now` (the core's clock) if it was not
    applied yet; how many moments were applied (0 or 1). Safe to call from any process at any
    time: the moment is claimed in the transaction that releases, so it is applied once."""
    now = now or core.clock.now()
    engine = core.db.engine.sync_engine
    nxt = _NEXT.get(engine)
    if nxt is not None and now < nxt:
        return 0  # the common case: no moment passed since the last one applied
    # This process's senders count at this release (another replica's from its next flush).
    await senders.flush(core)
    async with core.db.transaction() as conn:
        cfg = await fb.config(conn)
        zone = await programme_zone(conn)
        m = due(now, zone, cfg.release_times)
        if m is None:
            return 0
        if m.skip_after is not None and now >= m.skip_after:
            return 0  # found too late: what waits goes at the next moment
        await conn.execute(upsert(conn.dialect.name, FeedbackRelease).values(
            name=NAME, moment=_NEVER).on_conflict_do_nothing(index_elements=["name"]))
        claimed = await conn.execute(update(FeedbackRelease).where(
            FeedbackRelease.name == NAME, FeedbackRelease.moment < m.at).values(moment=m.at))
        done = await _release(core, conn, m) if claimed.rowcount else []
        if claimed.rowcount:
            await _take_reach(conn, m)
    # What the operator learns of feedback arriving: counts, at the release's moment (never a
    # line when an item is stored, which would date it: tests/anonymity/test_log_times.py).
    for listing, items, answers in done:
        log.info("feedback released", extra={"listing": listing, "items": items,
                                             "answers": answers})
    _NEXT[engine] = after(m.at, zone, cfg.release_times).at
    return 1 if claimed.rowcount else 0


async def _release(core: Core, conn: AsyncConnection, m: Moment) -> list[tuple[str, int, int]]:
    """Release what waits, listing by listing, in the caller's transaction; what was released
    (listing, items, answers)."""
    It, M = FeedbackItem, FeedbackMessage
    done: list[tuple[str, int, int]] = []
    for sources in GROUPS:
        rows = (await conn.execute(select(It.id, It.status).where(
            It.released.is_(False), It.source.in_(list(sources)), It.day <= m.day))).all()
        msgs = (await conn.execute(select(M.id, M.item_id, M.seq, M.sender, M.concerns).join(
            It, It.id == M.item_id).where(
            M.released.is_(False), It.source.in_(list(sources)), M.day <= m.day))).all()
        # The spam queue (a public form's hidden field filled in) is a listing of its own: its
        # rows never make up another listing's "two", or one bot's post (or the intruder's)
        # would release a lone item alone at midday.
        spam = [i for i, st in rows if st == SPAM]
        items = [i for i, st in rows if st != SPAM]
        listing = "staff" if sources == (fb.STAFF,) else "public"
        if spam and (len(spam) >= 2 or m.last):
            await conn.execute(update(It).where(It.id.in_(spam)).values(released=True))
            done.append(("spam", len(spam), 0))
        # A lead's reply to what only the leads read yet waits with it (N37): not a thing
        # sent, so never one of the "two", and it puts no item back to new.
        answers = [a for a in msgs if a.sender == "author"]
        waiting = len(items) + len(answers)
        # Two things from one person are one sender: released together at midday they would
        # be a batch of one author, dated to the morning (N25). Staff senders are counted as
        # people (bot/feedback/senders.py); the public pages know no people.
        people = await senders.waiting(core, conn, listing) if listing == senders.STAFF else waiting
        if listing == senders.STAFF and not m.last and await _later(conn, sources, m):
            # Something waits for a later day (the release times changed since it was sent,
            # N29): its sender's mark counts among the people, not its thing among this
            # release's, so the marks cannot say that two people are in this batch.
            people = 0
        if (waiting == 0 and not msgs) or (min(waiting, people) < 2 and not m.last):
            continue
        if listing == senders.STAFF:
            await senders.released(conn, listing, m.at)
        done.append((listing, len(items), len(answers)))
        if items:
            await conn.execute(update(It).where(It.id.in_(items)).values(released=True))
        if msgs:
            await _place(conn, msgs)
            await conn.execute(update(M).where(M.id.in_([a[0] for a in msgs]))
                               .values(released=True))
        if answers:
            # "The author answered": back on the change team's list, at the release.
            await conn.execute(update(It).where(It.id.in_({a[1] for a in answers}))
                               .values(status="new"))
            await _turn_urgent(conn, [a for a in answers if a.concerns is not None])
    return done


async def _turn_urgent(conn: AsyncConnection, answers: Sequence[Any]) -> None:
    """Authors' urgent answers just released turn their items urgent for everyone, with their
    concerns: until now only the leads read them so (`lead_concerns`, N37). An item whose
    author has another urgent answer still waiting stays so for the leads."""
    It, M = FeedbackItem, FeedbackMessage
    found: dict[str, set[str]] = {}
    for a in answers:
        found.setdefault(a.item_id, set()).update(a.concerns or ())
    for item_id, concerns in found.items():
        # Held to the commit: an urgent answer locks its item before it is stored, so none
        # is committed unseen between the look below and the write (service.author_answer).
        row = (await conn.execute(select(It.concerns, It.lead_concerns).where(
            It.id == item_id).with_for_update(key_share=True))).first()
        if row is None:
            continue
        still = (await conn.execute(select(M.id).where(
            M.item_id == item_id, M.released.is_(False), M.concerns.is_not(None)).limit(1))
        ).first() is not None
        await conn.execute(update(It).where(It.id == item_id).values(
            urgent=True, concerns=sorted(set(row.concerns or ()) | concerns),
            lead_concerns=row.lead_concerns if still else None))


REACH = "reach"


async def _take_reach(conn: AsyncConnection, m: Moment) -> None:
    """Keep the leads' reach as the change team is told it, at a release after which no urgent
    thing waits (else a held urgent item would be dated by the warning before it shows), and
    only at the day's last, which releases everything of its day: taken at a midday release
    when nothing urgent waited, the warning's coming at noon or only at 17:00 after a change
    the change team knew of (a lead role it granted at 11:00 to a closed account) said whether
    a disclosure sent that morning was held (review13)."""
    if not m.last:
        return
    It, M = FeedbackItem, FeedbackMessage
    if (await conn.execute(select(It.id).where(
            It.released.is_(False), It.urgent.is_(True)).limit(1))).first() is not None:
        return
    if (await conn.execute(select(M.id).where(
            M.released.is_(False), M.concerns.is_not(None)).limit(1))).first() is not None:
        return
    async with AsyncSession(bind=conn) as s:
        now = await reach.leads_reach(s)
    await conn.execute(upsert(conn.dialect.name, FeedbackRelease).values(
        name=REACH, moment=m.at, reachable=now.reachable, leads=now.total).on_conflict_do_update(
        index_elements=["name"], set_={"moment": m.at, "reachable": now.reachable,
                                       "leads": now.total}))


async def leads_reach(s: AsyncSession, *, lead: bool) -> reach.LeadsReach:
    """How many safeguarding leads can be reached, as a reader is told it: a lead at once;
    anyone else as it was at the last release after which no urgent thing waited. A lead who
    blocked the app is found so when something is sent to them, often an urgent item's alert:
    told at once, a change team looking every few minutes dated the urgent item it cannot
    read before its release (docs/invariants.md N37)."""
    if not lead:
        row = await s.get(FeedbackRelease, REACH)
        if row is not None and row.reachable is not None and row.leads is not None:
            return reach.LeadsReach(row.reachable, row.leads)
    return await reach.leads_reach(s)


async def _later(conn: AsyncConnection, sources: tuple[str, ...], m: Moment) -> bool:
    """Whether anything of `sources` waits for a day after `m`'s (not in its release)."""
    It, M = FeedbackItem, FeedbackMessage
    item = (await conn.execute(select(It.id).where(
        It.released.is_(False), It.source.in_(list(sources)), It.day > m.day).limit(1))).first()
    if item is not None:
        return True
    return (await conn.execute(select(M.id).join(It, It.id == M.item_id).where(
        M.released.is_(False), It.source.in_(list(sources)), M.day > m.day).limit(1))
    ).first() is not None


async def _place(conn: AsyncConnection, answers: Sequence[Any]) -> None:
    """Number released answers after every readable message of their thread, keeping their
    own order: a thread shows an answer where its release put it, never between the replies
    written while it waited (N27)."""
    M = FeedbackMessage
    by_item: dict[str, list[tuple[str, int]]] = {}
    for msg_id, item_id, seq, *_rest in answers:
        by_item.setdefault(item_id, []).append((msg_id, seq))
    last = dict((await conn.execute(select(M.item_id, func.max(M.seq)).where(
        M.item_id.in_(list(by_item)), M.released.is_(True)).group_by(M.item_id))).all())
    for item_id, msgs in by_item.items():
        base = max(int(last.get(item_id) or 0), 0)
        msgs.sort(key=lambda a: (a[1] < 0, abs(a[1])))  # written order (below zero: -1 first)
        for n, (msg_id, _seq) in enumerate(msgs, start=1):
            await conn.execute(update(M).where(M.id == msg_id).values(seq=base + n))


async def next_due(core: Core, now: datetime) -> datetime | None:
    """The next release moment, whether or not anything waits (the scheduler wakes up for it).

    Waking only while something waited made the scheduler's tick at 12:00:00 (its records,
    /metrics) say that something was sent that morning: a lone item, dated to its day by the
    release, was dated to the morning (tests/anonymity/test_release_wakeups.py)."""
    async with core.db.transaction() as conn:
        cfg = await fb.config(conn)
        zone = await programme_zone(conn)
    return after(now, zone, cfg.release_times).at


async def tick(core: Core, now: datetime) -> int:
    """The scheduler's release step: the moment just passed, if any."""
    return await release_due(core, now)
