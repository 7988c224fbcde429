"""A motivated intruder with the logs: an operator, or anyone the log store is shared with.

Log lines carry a time to the millisecond. Feedback items carry their day (N2) and reach the
change team at release moments (N22), so a lone item is dated to its day. A line written when
an item is stored ("feedback stored") dates it to the millisecond for whoever reads the logs,
and beside the platform's own record of who submitted a form at that moment (Slack's and
Microsoft's audit logs of app interactions, a proxy's access log for the public pages), names
its sender. So nothing is logged when an ordinary item is stored; the release logs how many
items it made readable, at its own moment. An urgent item is logged: its leads are alerted in
that second anyway (N20's residue), and an operator must be able to follow a failed alert.
"""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_families import client, post, token_of  # noqa: F401 (the client fixture)
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give

IDEA = "Supervision keeps being cancelled in my team."
DISCLOSURE = "A colleague hit a child during a visit and nobody reported it."


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records]


async def test_storing_an_ordinary_item_writes_no_log_line(
        client: TestClient, loaded: Core, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A practitioner at 10:05 and a parent at 10:40, each the only sender of their listing
    that morning: the logs say nothing at either moment (before: "feedback stored" and
    "family feedback stored", to the millisecond). The day's release logs the counts."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=10, minute=5, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    token = await token_of(client)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    assert await give(d, PRACTITIONER, IDEA) is None
    assert await give(d, OTHER, "The duty rota is fair now.") is None
    clock.set(day.replace(minute=40))  # type: ignore[attr-defined]
    status, _ = await post(client, rating="3", better="The meeting moved three times.",
                           token=token)
    assert status == 200
    assert _lines(caplog) == []
    clock.set(day.replace(hour=17, minute=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    released = [r for r in caplog.records if r.getMessage() == "feedback released"]
    assert sorted((r.listing, r.items) for r in released) == [  # type: ignore[attr-defined]
        ("public", 1), ("staff", 2)]


async def test_an_urgent_item_is_logged_for_the_operator(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    """The leads are alerted in that second: the operator sees that an urgent item came."""
    d = FakeDriver(loaded)
    caplog.set_level(logging.INFO)
    assert await give(d, PRACTITIONER, DISCLOSURE) is None
    assert [x for x in _lines(caplog) if "urgent feedback stored" in x]


async def test_metrics_do_not_count_a_sent_form_at_the_moment_it_is_sent(loaded: Core) -> None:
    """/metrics is scraped every few seconds: a count of successful form submissions that
    rises by one between two scrapes dates the morning's only feedback item to the scrape
    interval, as the log line did. Before: `kind="FormSubmitEvent",outcome="ok"` rose by one
    with each item sent. Messages and taps are still counted, and failures of every kind."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    app, _ = build_app(loaded, {}, Health(loaded))
    d = FakeDriver(loaded)
    async with TestClient(TestServer(app)) as web:
        before = await (await web.get("/metrics")).text()
        assert await give(d, PRACTITIONER, IDEA) is None
        after = await (await web.get("/metrics")).text()
    assert 'kind="MessageEvent",outcome="ok"' in after  # the word that opened the form
    sent = [x for x in after.splitlines() if 'kind="FormSubmitEvent"' in x and "ok" in x]
    assert sent == [x for x in before.splitlines() if 'kind="FormSubmitEvent"' in x and "ok" in x], sent
