"""The dashboard's feedback page keeps staff feedback and the public pages' feedback apart, as
chat does (`feedback list` and `feedback list families`), counts included (issue 20 point 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from bot.feedback import service as fb
from bot.people.service import person_by_email
from tests.test_feedback_helpers import release
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CHANGE = "changelead@northbridge.example"
STAFF_TEXT = "The new supervision template saves me an hour a week."
FAMILY_TEXT = "Our social worker listens and explains what happens next."


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with loaded.db.session() as s:
        await fb.add_public_item(s, [], source="families", day=loaded.clock.now().date(),
                                 text=FAMILY_TEXT, theme_id=None, concerns=())
    async with serve_dashboard(loaded) as running:
        yield running


async def test_staff_and_family_feedback_are_listed_apart(server: Server, loaded: Core) -> None:
    async with loaded.db.session() as s:
        author = await person_by_email(s, "practitioner1@northbridge.example")
        assert author is not None
    await fb.store(loaded, author.id, text=STAFF_TEXT, theme_id=None, replies=False, concerns=())
    server.oidc.sign_in_as(CHANGE)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        await release(loaded)
        staff = await (await http.get(f"{server.url}/app/feedback")).text()
        assert STAFF_TEXT in staff and FAMILY_TEXT not in staff
        families = await http.get(f"{server.url}/app/feedback?source=families&status=all")
        body = await families.text()
        assert families.status == 200
        assert FAMILY_TEXT in body and STAFF_TEXT not in body
        assert "From a parent or carer" in body
        unknown = await http.get(f"{server.url}/app/feedback?source=everyone")
        assert unknown.status == 404


async def test_an_urgent_item_from_a_public_page_is_in_the_leads_urgent_queue(
        server: Server, loaded: Core) -> None:
    """A child writes on the young people's page that they are being hurt at home; the
    safeguarding lead opens the dashboard's urgent queue. Chat's `feedback list urgent` lists
    urgent items from every page; before the fix the dashboard's queue read staff items only,
    so the lead found "Nothing waiting for you" and could not acknowledge it there."""
    child = "My stepdad hits me when mum is at work and I am scared to go home."
    async with loaded.db.session() as s:
        await fb.add_public_item(s, [], source="young_people", day=loaded.clock.now().date(),
                                 text=child, theme_id=None, concerns=("child_risk",))
    server.oidc.sign_in_as("safeguarding.lead@northbridge.example")
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(f"{server.url}/app/safeguarding")
        body = await resp.text()
    assert resp.status == 200
    waiting = body.split("Waiting for you", 1)[1].split("Acknowledged by you", 1)[0]
    assert child in waiting and "From a young person" in waiting
    assert FAMILY_TEXT not in body  # not urgent: not in the queue
