"""A motivated intruder with a database dump, and the safeguarding alerts' send ledger.

An urgent item reaches the leads at once through `feedback_alerts` (one row per lead, claimed
under a lease while a process talks to the platform). An urgent item may be dated to the
second (its leads are alerted then: N20, N22), but nothing may link it to its sender: the
suspicion was that the lease columns, or the transactions that write them, sit next to the
sender's own rows. They do not: the item's transaction writes no row about its sender (N4),
the claim and the outcome are transactions of their own about leads, and once the alert is
sent (or given up) no time is left in the row. A guard, not a fix: it passed when written.
"""

from __future__ import annotations

from sqlalchemy import select, text

from bot.core import Core
from bot.feedback.tables import FeedbackAlert, FeedbackItem
from bot.people import held
from bot.privacy import notice
from tests.anonymity.test_first_contact import _xmin_of_rows_naming
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import OTHER, PRACTITIONER, give, identity_strings

DISCLOSURE = "A child on my caseload told me her stepfather hits her."


async def test_an_urgent_items_alerts_share_nothing_with_its_sender(loaded: Core) -> None:
    """The sender and another person are known to the bot (accounts, routes and notices
    written). The sender sends an urgent item; the leads are alerted. No row naming the
    sender is written from then on (PostgreSQL: no newer `xmin`), and each alert row keeps
    no lease time once sent."""
    d = FakeDriver(loaded)
    for who in (PRACTITIONER, OTHER):
        await d.say(who, "whoami")
    await held.flush(loaded)
    await notice.flush(loaded)
    author = await identity_strings(loaded.db, PRACTITIONER)
    pg = not loaded.db.is_sqlite
    if pg:
        async with loaded.db.engine.connect() as conn:
            start = int((await conn.execute(text("SELECT txid_current()"))).scalar_one())
    assert await give(d, PRACTITIONER, DISCLOSURE) is None
    async with loaded.db.session() as s:
        [item] = (await s.execute(select(FeedbackItem))).scalars().all()
        alerts = list((await s.execute(select(FeedbackAlert))).scalars())
    assert item.urgent and len(alerts) == 2
    assert {(a.status, a.attempts, a.lease_until) for a in alerts} == {("sent", 1, None)}
    if pg:  # (SQLite has no transaction ids: the ledger's columns above are the check)
        naming = await _xmin_of_rows_naming(loaded, author)
        assert {"people", "identities"} <= set(naming)  # the scan does see the sender's rows
        newer = {t: {x for x in xs if x > start} for t, xs in naming.items()}
        assert not {t: xs for t, xs in newer.items() if xs}, newer
