"""A transaction found ended when its end comes (`Database.end`) is said, with why; and the
dispatcher's transaction that a joined handler's writes were to commit in, found rolled back
already, fails the event instead of passing for stored (bot/core.py `_Pending.end`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from adapters.fake.port import FakePort
from bot.core import Core, _Pending
from bot.dispatch_tables import ProcessedEvent
from bot.model import MessageEvent, UserRef
from storage.db import Database, NotCommitted

DAY = datetime(2026, 12, 6, tzinfo=UTC)
SEEN = insert(ProcessedEvent.__table__)  # type: ignore[arg-type]


async def _ids(db: Database) -> set[str]:
    async with db.session() as s:
        return set((await s.execute(select(ProcessedEvent.event_id))).scalars())


async def test_a_commit_of_a_transaction_ended_already_is_said_with_its_cause(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Before: `end` returned False and said nothing, so a commit that stored nothing
    passed unnoticed in the log."""
    caplog.set_level(logging.WARNING, logger="staffvoice.db")
    conn = await db.begun()
    await conn.execute(SEEN, {"event_id": "lost", "seen_at": DAY})
    await conn.rollback()  # ended by the code that held it
    assert await db.end(conn, commit=True) is False
    said = [r for r in caplog.records if r.name == "staffvoice.db"]
    assert [r.levelno for r in said] == [logging.WARNING]
    assert "asked to commit" in said[0].getMessage()
    assert "its writes are not stored" in said[0].getMessage()
    assert getattr(said[0], "cause", None) == "none"
    assert await _ids(db) == set()
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_transaction_ended_normally_says_nothing(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="staffvoice.db")
    conn = await db.begun()
    await conn.execute(SEEN, {"event_id": "kept", "seen_at": DAY})
    assert await db.end(conn, commit=True) is True
    conn = await db.begun()
    assert await db.end(conn, commit=False) is False
    assert [r for r in caplog.records if r.name == "staffvoice.db"] == []


async def test_a_joined_handlers_writes_rolled_back_under_it_fail_the_event(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    """A joined handler's block wrote in the dispatcher's transaction, which something rolled
    back under it. Before: the block's end committed nothing, returned as if stored, and the
    handler went on to tell the person it was done."""
    caplog.set_level(logging.WARNING, logger="staffvoice.db")
    port = FakePort()
    loaded.add_port(port)
    event = MessageEvent("ev-ended-1", UserRef(port.platform, "W1", "U-someone",
                                               email="practitioner1@northbridge.example"),
                         None, text="status")
    ctx = await loaded.context_for(event, port)
    conn = await loaded.db.begun()
    ctx.pending = _Pending(loaded.db, conn)
    with pytest.raises(NotCommitted):
        async with ctx.connection() as c:
            await c.execute(SEEN, {"event_id": "joined-write", "seen_at": DAY})
            await c.execute(text("SELECT 1"))
            await c.rollback()  # (a session bound to it rolled it back, a failed statement)
    assert await _ids(loaded.db) == set()
    assert [r for r in caplog.records if "asked to commit" in r.getMessage()]
