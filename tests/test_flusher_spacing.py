"""A flush that gives every row of a big table a new version is spaced out by the size of
its last rewrite (bot/flusher.py `Spacing`; bench/README.md, flush arithmetic): the held
writes wait longer, in bigger batches, and none is lost or written in its own moment."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot import flusher
from bot.core import Core
from bot.model import MessageEvent
from bot.people import held
from bot.people.tables import Identity
from bot.privacy import notice
from bot.privacy.tables import NoticeShown
from tests.conformance.drivers.fake import FakeDriver

WHO = "practitioner7@northbridge.example"


def test_the_wait_grows_with_the_rows_rewritten_up_to_a_bound() -> None:
    s = flusher.Spacing()
    assert s.due(now=0.0)  # nothing rewritten yet
    s.wrote(2_000, now=100.0)  # a small organisation: the flush period alone (5 s) spaces it
    assert s.wait() < 1 and s.due(now=101.0)
    s.wrote(200_000, now=100.0)  # 200,000 rows: 40 s
    assert s.wait() == 40.0
    assert not s.due(now=139.0) and s.due(now=140.0)
    s.wrote(5_000_000, now=100.0)
    assert s.wait() == flusher.MAX_SPACING


async def test_a_flush_the_spacing_holds_back_is_still_written_at_shutdown(loaded: Core) -> None:
    """The worker keeps a link, its route and a notice row back after a big rewrite; the
    last flush, when the process stops, writes them all the same."""
    other = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    await other.start()
    d2 = FakeDriver(other)
    async with held.flushing(other, every=3600), notice.flushing(other, every=3600):
        held.held(other).spacing.wrote(10_000_000)  # as if a huge rewrite just committed
        notice._unwritten(other).spacing.wrote(10_000_000)
        assert not held.held(other).spacing.due()
        await other.handle(MessageEvent("spaced-1", d2.user(WHO), d2.conv(WHO), text="whoami"),
                           d2.port)
        assert WHO in d2.seen(WHO)[-1]
        assert held.held(other) and notice.unwritten(other)
    async with loaded.db.session() as s:
        assert [i.user_id for i in (await s.execute(select(Identity).where(
            Identity.user_id == f"U-{WHO}"))).scalars()] == [f"U-{WHO}"]
        assert [r.user_id for r in (await s.execute(select(NoticeShown))).scalars()] == [
            f"U-{WHO}"]
    assert not held.held(other) and notice.unwritten(other) == set()


async def test_the_notice_worker_waits_for_the_links_spacing_when_its_row_needs_a_held_link(
    loaded: Core,
) -> None:
    """A newcomer's notice row waits for their link, and the link's flush rewrites every
    identity row: while the links' spacing holds them back, the notice worker does not
    write them early in their place (its own spacing is due); its last flush writes both."""
    other = Core(loaded.db, settings=loaded.settings, clock=loaded.clock)
    await other.start()
    d2 = FakeDriver(other)
    async with notice.flushing(other, every=0.02):
        held.held(other).spacing.wrote(10_000_000)  # the links' last rewrite was huge
        await other.handle(MessageEvent("spaced-2", d2.user(WHO), d2.conv(WHO), text="whoami"),
                           d2.port)
        assert notice.unwritten(other) and held.held(other).links
        await asyncio.sleep(0.3)  # many of the notice worker's periods
        async with loaded.db.session() as s:
            assert (await s.execute(select(Identity).where(
                Identity.user_id == f"U-{WHO}"))).first() is None, "the links' spacing held"
            assert (await s.execute(select(NoticeShown))).first() is None
        assert held.held(other).links and notice.unwritten(other)
    async with loaded.db.session() as s:  # the last flush, at the end, wrote them
        assert (await s.execute(select(Identity.user_id).where(
            Identity.user_id == f"U-{WHO}"))).scalars().all() == [f"U-{WHO}"]
        assert [r.user_id for r in (await s.execute(select(NoticeShown))).scalars()] == [
            f"U-{WHO}"]
    assert not held.held(other) and notice.unwritten(other) == set()
