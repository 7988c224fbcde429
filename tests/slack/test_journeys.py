"""Journeys that broke on real Slack (issue 17), on the strict fake: each would fail without its fix."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from bot.feedback.tables import FeedbackItem
from tests.conformance.drivers.slack import SlackDriver
from tests.conftest import MONDAY_10
from tests.test_feedback_helpers import LEADS, dump
from tests.test_reports_seed import emails, everyone_answers, seed_round

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"
CONCERN = "A boy on my caseload told me his stepdad hits him and nobody has visited."


# -- 1. the "Before you send" step comes in the submission's ack ---------------------------


async def test_a_concern_in_the_feedback_form_shows_before_you_send_in_the_same_modal(
        slack: SlackDriver) -> None:
    await slack.shortcut(PRACTITIONER, "feedback.open")
    first = slack.fake.open_view(slack.user(PRACTITIONER).id)
    assert first is not None
    assert await slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}) is None

    # The modal stays open and now shows the check screen; nothing went through views.open with
    # the submission's trigger (which Slack would not show on desktop clients).
    shown = slack.fake.open_view(slack.user(PRACTITIONER).id)
    assert shown is not None and shown.id == first.id
    assert shown.view["title"]["text"] == "Before you send"
    assert "front door" in json.dumps(shown.view).lower()
    assert slack.fake.hidden_views == [] and len(slack.fake.called("views.open")) == 1
    assert slack.late_acks == []
    async with slack.core.db.session() as s:
        assert (await s.execute(select(FeedbackItem))).scalars().all() == []

    # "Send anyway": stored, and every safeguarding lead is alerted at once.
    assert await slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    stored = [r for r in (await dump(slack.core.db))["feedback_items"] if r["text"] == CONCERN]
    assert len(stored) == 1
    for lead in LEADS:
        assert [m for m in slack.seen(lead) if m.startswith("URGENT") and CONCERN in m], slack.seen(lead)
    assert "sent anonymously" in slack.seen(PRACTITIONER)[-1]


# -- 2. results with a chart ----------------------------------------------------------------


async def _two_rounds(slack: SlackDriver) -> None:
    people = await emails(slack.core)
    await seed_round(slack.core, MONDAY_10 - timedelta(days=14), everyone_answers(people, default=3))
    await seed_round(slack.core, MONDAY_10 - timedelta(days=7), everyone_answers(people, default=4))


async def test_results_with_a_chart_show_the_numbers_and_the_chart_as_a_shared_file(
        slack: SlackDriver) -> None:
    await _two_rounds(slack)
    await slack.say(CHANGE, "results Assessment Team")
    *before, card = slack.seen(CHANGE)
    assert "Pulse results: Weekly pulse" in card and "Sorry" not in card
    assert "[image: I understand the shared vision" in card  # the chart in words
    assert before and before[-1].startswith("[file:")  # the chart itself, shareable in the DM
    [chart] = list(slack.fake.files.values())
    assert chart["channel"] == slack.fake.dm_of(slack.user(CHANGE).id)
    assert chart["bytes"].startswith(b"\x89PNG")


async def test_results_when_the_chart_cannot_be_uploaded_are_shown_in_words(slack: SlackDriver) -> None:
    await _two_rounds(slack)
    slack.fake.failures["files.getUploadURLExternal"] = ["not_allowed_token_type"]
    await slack.say(CHANGE, "results Assessment Team")
    [card] = slack.seen(CHANGE)
    assert "Pulse results: Weekly pulse" in card and "Sorry" not in card
    assert "[image: I understand the shared vision" in card
