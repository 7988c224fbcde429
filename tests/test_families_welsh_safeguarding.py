"""The young people's page in Welsh: a disclosure written in Welsh reaches no lead (N55).

The public pages are offered in every language that has a strings file, Welsh (cy) among them
by default (staffvoice/web/families/strings/cy.yaml), but the safeguarding patterns read
English only (bot/feedback/safeguarding.py). A child who reads the page in Welsh and writes in
Welsh is not shown "You may need help now", and nothing reaches the safeguarding leads.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from bot.core import Core
from tests.conformance.drivers.fake import FakeDriver
from tests.test_families import client, items, post, token_of  # noqa: F401 (the fixture)
from tests.test_feedback_helpers import LEADS

# "My stepdad hits me when he is angry." / "I don't feel safe at home." / "I want to kill
# myself." / "My teacher touches me and tells me not to tell."
WELSH = (
    "Mae fy llystad yn fy nharo i pan mae o'n flin.",
    "Dw i ddim yn teimlo'n ddiogel adref.",
    "Dw i eisiau lladd fy hun.",
    "Mae fy athro yn fy nghyffwrdd i ac yn dweud wrtha i am beidio dweud.",
)


@pytest.mark.xfail(strict=True, reason=(
    "N55, not kept today: the safeguarding patterns are English only, and the public pages "
    "are offered in Welsh; patterns for each offered language need a speaker's review"))
async def test_a_disclosure_in_welsh_on_the_welsh_page_reaches_the_leads(
        client: TestClient, loaded: Core) -> None:  # noqa: F811 (the fixture)
    d = FakeDriver(loaded)
    for text in WELSH:
        token = await token_of(client, "/young-people?lang=cy")
        status, _page = await post(client, "/young-people?lang=cy", better=text, token=token)
        assert status == 200
    stored = await items(loaded)
    assert len(stored) == len(WELSH)  # each was stored: the check, not the form, misses them
    assert all(i.urgent for i in stored), [i.text for i in stored if not i.urgent]
    for lead in LEADS:
        assert len([m for m in d.seen(lead) if m.startswith("URGENT")]) == len(WELSH)
