"""The pulse page's "groups compared" table, read as a person reads it: one row per group the
person may see, its response rate and each scored question's score as the reports service
(and so the anonymity engine) gives them, and the hidden text for a group too small to show."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from bot.reports import service as reports
from bot.reports.results import SCORED, hidden_text
from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round
from tests.web.server import Server, serve_dashboard
from tests.web.test_roadmap_page import Cells
from tests.web.test_signin import _client, _oidc

LEADER = "director@northbridge.example"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    everyone = await emails(loaded)
    # varied answers, so that groups' scores differ
    listened = {e: 1 + i % 5 for i, e in enumerate(everyone)}
    await seed_round(loaded, MONDAY_10, everyone_answers(everyone, listened=listened))
    async with serve_dashboard(loaded) as running:
        yield running


async def test_each_group_is_compared_with_the_engines_figures(server: Server) -> None:
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(f"{server.url}/app/pulse")
        assert resp.status == 200
        page = Cells()
        page.feed(await resp.text())
    async with server.core.db.session() as s:
        info = await reports.latest_closed_round(s)
        assert info is not None
        results = await reports.round_results(s, info)
    expected = []
    for g in results.groups.values():
        if not g.shown:
            expected.append([g.label, hidden_text()])
            continue
        scored = [q for q in results.groups["all"].questions if q.question.kind in SCORED]
        row = [g.label, f"{round(g.rate * 100)}%"]
        for q in scored:
            mine = next(x for x in g.questions if x.question.id == q.question.id)
            row.append(f"{mine.score:g}" if mine.shown and mine.score is not None else "not shown")
        expected.append(row)
    assert page.rows == expected  # the last table on the page
    assert any(r[1] == hidden_text() for r in expected) and any(r[1] != hidden_text() for r in expected)
    assert len({tuple(r[2:]) for r in expected if len(r) > 2}) > 1
