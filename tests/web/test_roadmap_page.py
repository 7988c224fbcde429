"""The roadmap page's table, read the way a person reads it: every milestone in roadmap order
with its team, owners, status, progress, due date and last update, the same as each
milestone's own card (milestones.views) says."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from bot.core import Core
from bot.milestones import service as milestones
from bot.milestones.status import age
from bot.people.service import person_by_email
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

LEADER = "director@northbridge.example"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


class Cells(HTMLParser):
    """The text of each cell of the page's last table's body rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self.body, self.rows = True, []
        elif self.body and tag == "tr":
            self.rows.append([])
        elif self.body and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.body = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(re.sub(r"\s+", " ", "".join(self.cell)).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


async def test_the_roadmap_lists_every_milestone_with_its_owners_team_and_last_update(server: Server) -> None:
    core = server.core
    async with core.db.session() as s:  # two updates, by a person and by the programme file
        ms = await milestones.all_milestones(s)
        lead = await person_by_email(s, LEADER)
        assert lead is not None
        await milestones.record_update(s, ms[0], lead.id, status="at_risk", progress=40,
                                       note="Two teams are short of supervisors.",
                                       at=core.clock.now() - timedelta(days=9))
        await milestones.record_update(s, ms[1], None, status="done", progress=100, note="",
                                       at=core.clock.now())
        await s.commit()
    async with core.db.session() as s:
        ms = await milestones.all_milestones(s)
        cards = await milestones.views(s, ms)
        today = await milestones.today(s, core.clock.now())
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(f"{server.url}/app/roadmap")
        assert resp.status == 200
        page = Cells()
        page.feed(await resp.text())
    assert len(cards) >= 3 and any(v.owners for v in cards) and sum(bool(v.last) for v in cards) == 2
    expected = []
    for v in cards:
        m = v.m
        due = f"{m.due.day} {m.due:%b %Y}" + (" Overdue" if milestones.is_overdue(m, today) else "")
        updated = age(v.last.at, core.clock.now()) if v.last else "never"
        stale = m.stale_since is not None and m.status != "done"
        expected.append([m.title, v.team.name if v.team else "–",
                         ", ".join(o.display_name or o.email or "" for o in v.owners) or "–",
                         {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track",
                          "done": "Done", "not_started": "Not started"}[m.status],
                         f"{m.progress}%", due, updated + (" Stale" if stale else "")])
    assert page.rows == expected
