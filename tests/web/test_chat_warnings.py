"""Stories: what chat already tells the people who act on it, the dashboard tells them too.

- A safeguarding lead's Slack account is deactivated (Slack's signed `user_change` event through
  the real adapter). Chat's urgent queue begins "Only 1 of 2 safeguarding leads can be reached…";
  a lead opening the dashboard's urgent queue reads the same words at the top, from the same
  function (bot/people/reach.py). With every lead reachable, nothing is said.
- Slack refuses some of an open round's pulse invitations. Chat's `pulse` says "3 could not be
  invited (…by kind…)"; the change team's pulse page says the same, counts by kind of reason
  and never whose (bot/pulse/invitations.py). Once the round closes, the page says nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Person
from bot.pulse import service as pulse
from tests.conformance.drivers.slack import SlackDriver
from tests.slack_fixture import slack_with_leads_heard
from tests.test_platform_errors_slack import LEADS
from tests.test_pulse_not_invited import SURVEY, _three_refusals
from tests.web.server import Server, serve_dashboard
from tests.web.test_signin import _client, _oidc

CHANGE = "changelead@northbridge.example"
ONLY_ONE = ("Only 1 of 2 safeguarding leads can be reached in chat (an account was deactivated "
            "or refuses messages): urgent alerts go to the others. Check the safeguarding leads "
            "in the programme file.")
MISSING = ("3 could not be invited (1 no account found in chat (not on a connected platform, or "
           "deactivated), 1 the platform refused the message, 1 their conversation takes no posts "
           "(archived or restricted))")


class Alerts(HTMLParser):
    """The text of each role="alert" box on a page, and where it comes after the first heading."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[str] = []
        self.order: list[str] = []  # "h1" / "alert", in the order they come
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h1":
            self.order.append("h1")
        if self._depth:
            self._depth += 1
        elif ("role", "alert") in attrs:
            self._depth = 1
            self.alerts.append("")
            self.order.append("alert")

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.alerts[-1] += data

    def text(self) -> list[str]:
        return [" ".join(a.split()) for a in self.alerts]


async def _page(server: Server, email: str, path: str) -> tuple[Alerts, str]:
    server.oidc.sign_in_as(email)
    async with _client(server) as http:
        assert (await _oidc(http, server)).status == 303
        resp = await http.get(f"{server.url}{path}")
        assert resp.status == 200
        html = await resp.text()
    page = Alerts()
    page.feed(html)
    return page, html


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    async with slack_with_leads_heard(loaded, LEADS) as d:  # their DMs are open
        yield d


async def test_the_urgent_queue_page_says_a_lead_cannot_be_reached_as_chat_does(
    loaded: Core, slack: SlackDriver
) -> None:
    async with serve_dashboard(loaded) as server:
        page, _ = await _page(server, LEADS[1], "/app/safeguarding")
        assert page.text() == [], "every lead reachable: nothing to warn about"
        assert await slack.user_change(LEADS[0]) == 200  # Slack: the account was deactivated
        await slack.command(CHANGE, "feedback list urgent")
        assert ONLY_ONE in "\n".join(slack.seen(CHANGE)), "chat says it"
        page, html = await _page(server, LEADS[1], "/app/safeguarding")
        assert page.text() == [ONLY_ONE], "the same words, on the dashboard"
        assert page.order[:2] == ["h1", "alert"], "at the top of the queue"
        assert LEADS[0] not in html and slack.user(LEADS[0]).id not in html


async def test_the_pulse_page_counts_invitations_that_could_not_be_sent_as_chat_does(
    loaded: Core, clock: FakeClock, slack: SlackDriver
) -> None:
    emails = await _three_refusals(loaded, slack)
    async with serve_dashboard(loaded) as server:
        page, _ = await _page(server, CHANGE, "/app/pulse")
        assert page.text() == [], "no open round: nothing to say"
        await slack.say(CHANGE, f"pulse open {SURVEY}")
        await slack.say(CHANGE, "pulse")
        assert MISSING in slack.seen(CHANGE)[-1], "chat says it"
        page, html = await _page(server, CHANGE, "/app/pulse")
        async with loaded.db.session() as s:
            survey = await pulse.survey_by_id(s, SURVEY)
            rnd = await pulse.open_round_of(s, SURVEY)
            assert survey is not None and rnd is not None
            names = [str(n) for n in (await s.execute(select(Person.display_name).where(
                Person.email.in_(emails)))).scalars()]
        assert page.text() == [
            "Invitations of an open round that could not be sent: "
            f"{survey.title}, round {rnd.number} (open): {MISSING}."]
        for e in emails:  # numbers, never who
            assert e not in html and slack.user(e).id not in html
        assert names and not any(n in html for n in names)
        # Once closed, the reasons went with the rows that named people (N3): nothing to say.
        clock.advance(timedelta(days=8))
        async with loaded.db.session() as s:
            got = await s.get(pulse.PulseRound, rnd.id)
            assert got is not None
            await pulse.close_round(s, got, clock.now(), loaded.secret)
            await s.commit()
        page, _ = await _page(server, CHANGE, "/app/pulse")
        assert page.text() == []


async def test_with_no_lead_reachable_the_urgent_queue_page_says_nobody_is_alerted(
    loaded: Core, slack: SlackDriver
) -> None:
    for lead in LEADS:
        assert await slack.user_change(lead) == 200
    await slack.command(CHANGE, "feedback list urgent")
    said = "\n".join(slack.seen(CHANGE))
    async with serve_dashboard(loaded) as server:  # the dashboard is no chat: a lead signs in
        page, _ = await _page(server, LEADS[0], "/app/safeguarding")
    [warning] = page.text()
    assert warning.startswith("No safeguarding lead can be reached in chat (0 of 2)")
    assert warning in said, "the same words as chat"


async def test_the_change_teams_home_page_says_a_lead_cannot_be_reached_as_chat_does(
    loaded: Core, slack: SlackDriver
) -> None:
    """The change team reads the urgent queue in chat but cannot open the leads' queue page:
    their dashboard home says it at the top, in chat's words; a practitioner's does not."""
    async with serve_dashboard(loaded) as server:
        page, _ = await _page(server, CHANGE, "/app/")
        assert page.text() == [], "every lead reachable: nothing to warn about"
        assert await slack.user_change(LEADS[0]) == 200  # Slack: the account was deactivated
        await slack.command(CHANGE, "feedback list urgent")
        assert ONLY_ONE in "\n".join(slack.seen(CHANGE)), "chat says it"
        page, html = await _page(server, CHANGE, "/app/")
        assert page.text() == [ONLY_ONE], "the same words, on the change team's home"
        assert page.order[:2] == ["h1", "alert"], "at the top"
        assert LEADS[0] not in html and slack.user(LEADS[0]).id not in html
        page, _ = await _page(server, "practitioner1@northbridge.example", "/app/")
        assert page.text() == [], "not the practitioners' business"
