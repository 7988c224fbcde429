"""Journeys that broke on real Slack (issue 17), on the strict fake: each would fail without its fix."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.slack.forms import PendingForms
from adapters.slack.installations import Sealer
from adapters.slack.port import SlackPort
from adapters.slack.tables import SlackPendingForm
from bot.core import Core
from bot.feedback.tables import FeedbackItem
from bot.model import ConversationRef, text_message
from bot.people.tables import Identity, Person
from bot.port import PlatformError, Unreachable
from bot.programme import loader
from bot.pulse.tables import PulsePending
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.slack import SlackDriver
from tests.conftest import EXAMPLE, MONDAY_10
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_feedback_helpers import LEADS, dump
from tests.test_reports_seed import emails, everyone_answers, seed_round

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"
STRANGER = "stranger@elsewhere.example"
GUEST = "visiting.consultant@elsewhere.example"
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
    dm = slack.fake.dm_of(slack.user(PRACTITIONER).id)
    seen, calls = slack.seen(PRACTITIONER), len(slack.fake.calls)
    assert await slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    stored = [r for r in (await dump(slack.core.db))["feedback_items"] if r["text"] == CONCERN]
    assert len(stored) == 1
    for lead in LEADS:
        assert [m for m in slack.seen(lead) if m.startswith("URGENT") and CONCERN in m], slack.seen(lead)

    # The thanks replaces the check screen in the same modal, through the ack (response_action
    # "update"): nothing to send, so no submit button (https://docs.slack.dev/reference/views/
    # modal-views: submit is required only with input blocks). The DM, which Slack keeps by
    # name and time, gets nothing (docs/invariants.md N19, N20).
    thanks = slack.fake.open_view(slack.user(PRACTITIONER).id)
    assert thanks is not None and thanks.id == first.id
    assert thanks.view["title"]["text"] == "Feedback sent"
    assert "submit" not in thanks.view and thanks.view["close"]["text"] == "Close"
    assert not [b for b in thanks.view["blocks"] if b["type"] == "input"]
    words = json.dumps(thanks.view)
    assert "Thank you. Your feedback was sent anonymously." in words
    assert "went to the safeguarding leads straight away" in words and "LADO" in words
    assert slack.seen(PRACTITIONER) == seen
    assert not [c for c in slack.fake.calls[calls:] if c.args.get("channel") == dm]
    assert slack.fake.hidden_views == [] and len(slack.fake.called("views.open")) == 1


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
    [card] = replies(slack.seen(CHANGE))
    assert "Pulse results: Weekly pulse" in card and "Sorry" not in card
    assert "[image: I understand the shared vision" in card


# -- 3. "Open the form" buttons work from any process, more than once ------------------------


@pytest.mark.parametrize("email, command", [
    (PRACTITIONER, "feedback"), (CHANGE, "broadcast"), (CHANGE, "pulse new"),
    (CHANGE, "milestone new"),
])
async def test_an_offered_form_opens_again_after_cancelling_and_after_a_restart(
        slack: SlackDriver, email: str, command: str) -> None:
    await slack.say(email, command)  # the driver taps "Open the form", as the person would
    first = slack.fake.open_view(slack.user(email).id)
    assert first is not None, slack.seen(email)
    slack.fake.close_view(first.id)  # the person cancels the modal

    await slack.tap(email, "Open the form")
    again = slack.fake.open_view(slack.user(email).id)
    assert again is not None and again.view["callback_id"] == first.view["callback_id"]
    slack.fake.close_view(again.id)

    # A restart (or another replica): a new port with nothing in memory.
    assert slack.adapter is not None
    old = slack.adapter.port
    slack.adapter.port = SlackPort(old.workspaces, old.directory,
                                   PendingForms(slack.core.db, Sealer(slack.adapter._secret)))
    await slack.tap(email, "Open the form")
    third = slack.fake.open_view(slack.user(email).id)
    assert third is not None and third.view["callback_id"] == first.view["callback_id"]
    assert not any("expired" in m for m in slack.seen(email))


async def test_the_stored_form_is_sealed_and_names_nobody(slack: SlackDriver) -> None:
    await slack.say(PRACTITIONER, "feedback")
    async with slack.core.db.session() as s:
        [row] = (await s.execute(select(SlackPendingForm))).scalars().all()
    assert "feedback" not in row.view_sealed and slack.user(PRACTITIONER).id not in row.view_sealed


# -- 4. someone outside the programme is not enrolled -----------------------------------------


async def _people_and_accounts(slack: SlackDriver) -> tuple[int, int]:
    async with slack.core.db.session() as s:
        return (await s.scalar(select(func.count()).select_from(Person)) or 0,
                await s.scalar(select(func.count()).select_from(Identity)) or 0)


async def test_a_workspace_member_outside_the_programme_is_told_who_to_ask_and_stored_nowhere(
        slack: SlackDriver) -> None:
    before = await _people_and_accounts(slack)
    for text in ("help", "whoami", "feedback"):
        await slack.say(STRANGER, text)
    status, _ = await slack.command(STRANGER, "status")
    assert status == 200
    await slack.shortcut(STRANGER, "feedback.open")
    seen = slack.seen(STRANGER)
    assert len(seen) == 5 and all(m.startswith("Sorry, you are not part of this programme yet")
                                  for m in seen), seen
    assert "changelead@northbridge.example" in seen[0]  # the change team, to ask
    assert slack.fake.open_view(slack.user(STRANGER).id) is None  # no form opened
    home = await slack.open_home(STRANGER)
    assert home is not None and "not part of this programme" in json.dumps(home)
    assert await _people_and_accounts(slack) == before  # never a person, so never in "everyone"


async def test_a_guest_never_becomes_a_person_even_with_self_enrolment(slack: SlackDriver) -> None:
    await _self_enrol(slack)
    before = await _people_and_accounts(slack)
    slack.fake.add_user(GUEST).guest = True
    await slack.say(GUEST, "help")
    assert slack.seen(GUEST)[-1].startswith("Sorry, you are not part of this programme yet")
    assert await _people_and_accounts(slack) == before


async def test_with_self_enrolment_a_member_joins_as_a_practitioner(slack: SlackDriver) -> None:
    await _self_enrol(slack)
    await slack.say(STRANGER, "whoami")
    assert "practitioner" in slack.seen(STRANGER)[-1]
    async with slack.core.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Person).where(
            Person.email == STRANGER)) == 1


async def _self_enrol(slack: SlackDriver) -> None:
    text = EXAMPLE.read_text().replace("organisation:\n", "organisation:\n  self_enrol: true\n", 1)
    await loader.load(slack.core.db, text, slack.core.router)


# -- 6. channels: invites, not_in_channel, no history of channels ------------------------------


async def test_a_digest_channel_the_bot_was_not_invited_to_is_named_with_how_to_fix_it(
        slack: SlackDriver) -> None:
    assert slack.adapter is not None
    slack.fake.add_channel("C0DIGEST", member=False)
    slack.fake.add_channel("C0WINS")
    text = EXAMPLE.read_text().replace(
        "roadmap_digest: console:local/change-updates",
        f"roadmap_digest: slack:{slack.fake.team}/C0DIGEST\n    announcements: slack:{slack.fake.team}/C0WINS")
    await loader.load(slack.core.db, text, slack.core.router)
    [problem] = await slack.adapter.channel_problems()
    assert "programme.channels.roadmap_digest" in problem and "/invite @staffvoice" in problem

    # Posting there anyway: the error says what to do, not just Slack's code.
    with pytest.raises(Unreachable) as e:
        await slack.core.post_channel(f"slack:{slack.fake.team}/C0DIGEST", text_message("Digest"))
    assert "not a member of the Slack channel C0DIGEST" in str(e.value)
    assert "/invite @staffvoice" in str(e.value)


async def test_the_crash_recovery_lookup_never_reads_a_channel(slack: SlackDriver) -> None:
    """conversations.history in a channel needs channels:history, which the manifest does not
    grant: the port says so without asking Slack, and still checks its own DMs."""
    assert slack.adapter is not None
    port = slack.adapter.port
    slack.fake.add_channel("C0WINS")
    channel = ConversationRef("slack", slack.fake.team, "C0WINS", is_direct=False)
    ref = await port.send_keyed(channel, text_message("An early win"), "key-1")
    with pytest.raises(PlatformError, match="no channel history scope"):
        await port.find_sent(channel, "key-1")
    assert slack.fake.called("conversations.history") == []
    u = slack.user(PRACTITIONER)
    direct = ConversationRef("slack", slack.fake.team, slack.fake.dm_of(u.id), is_direct=True)
    sent = await port.send_keyed(direct, text_message("An early win"), "key-2")
    assert await port.find_sent(direct, "key-2") == sent and ref.message_id


# -- 7. a slash command of another name, Bolt's start-up warning ------------------------------


async def test_a_slash_command_of_another_name_is_answered_and_the_admin_told_once(
        slack: SlackDriver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "staffvoice.slack")
    for _ in range(2):
        status, _ = await slack.command(PRACTITIONER, "whoami", command="/staffvoice")
        assert status == 200
    assert [PRACTITIONER in m for m in replies(slack.seen(PRACTITIONER))] == [True, True]
    told = [r.getMessage() for r in caplog.records if "SLACK_COMMAND" in r.getMessage()]
    assert len(told) == 1 and "/staffvoice" in told[0] and "/voice" in told[0]


async def test_bolt_does_not_warn_at_start_that_the_token_is_unused(
        loaded: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)  # as under `staffvoice serve`
    caplog.set_level(logging.WARNING)
    driver = SlackDriver(loaded, FakeSlack())
    await driver.start()
    await driver.close()
    assert not [r for r in caplog.records if "unused" in r.getMessage()], caplog.text


async def test_a_pulse_comment_with_identifying_details_is_checked_before_it_is_saved(
        slack: SlackDriver) -> None:
    await slack.core.tick()  # Monday 10:00: the weekly pulse opens
    for label in ("4", "4", "4", "4", "4", "8", "Write a comment"):
        await slack.tap(PRACTITIONER, label)
    assert slack.form(PRACTITIONER) is not None
    before = await _answers(slack)
    comment = "Ring Mrs Okafor on 07700 900123 about the visits."
    assert await slack.submit(PRACTITIONER, {"comment": comment}) is None

    form = slack.form(PRACTITIONER)  # the same modal, now asking to check, text kept
    opened = slack.fake.open_view(slack.user(PRACTITIONER).id)
    assert form is not None and opened is not None and comment in json.dumps(opened.view)
    shown = " ".join(getattr(b, "text", "") for b in form.intro)
    assert "Before you save" in shown and "a phone number" in shown and "a person's name" in shown
    assert await _answers(slack) == before and slack.fake.hidden_views == []

    assert await slack.submit(PRACTITIONER, {"comment": comment}) is None  # kept as it is
    assert await _answers(slack) == before + 1
    assert "Thank you!" in slack.seen(PRACTITIONER)[-1]


async def _answers(slack: SlackDriver) -> int:
    async with slack.core.db.session() as s:
        return await s.scalar(select(func.count()).select_from(PulsePending)) or 0


async def test_a_refused_bot_token_is_one_clear_line_at_start(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "staffvoice.slack")
    driver = SlackDriver(loaded, FakeSlack(tokens=set()))  # Slack knows no token: a revoked one
    await driver.start()
    assert driver.adapter is not None
    await driver.adapter.drain()
    await driver.close()
    [line] = [r.getMessage() for r in caplog.records if "credentials" in r.getMessage()]
    assert "Slack refused SLACK_BOT_TOKEN (slack: invalid_auth)" in line
    assert "OAuth & Permissions" in line and "xoxb-" not in line.replace("(xoxb-...)", "")


async def test_when_the_core_misses_the_ack_the_modal_waits_and_shows_each_screen_in_turn(
        slack: SlackDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ack says "one moment" in the modal; the core's next screen replaces it there by
    views.update (by the external_id the ack gave it), never by a button in the DM."""
    from adapters.slack import app as slack_app

    monkeypatch.setattr(slack_app, "SUBMIT_BUDGET_S", 0.05)

    async def slow(event, port, call_next):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        return await call_next()

    await slack.shortcut(PRACTITIONER, "feedback.open")
    slack.core.use(slow)
    seen = slack.seen(PRACTITIONER)
    assert await slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    [update] = slack.fake.called("views.update")
    assert update.args["external_id"].startswith("sv-late-")
    assert slack.fake.hidden_views == []
    form = slack.form(PRACTITIONER)
    assert form is not None and form.title == "Before you send"
    assert await slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    assert [r for r in (await dump(slack.core.db))["feedback_items"] if r["text"] == CONCERN]
    form = slack.form(PRACTITIONER)
    assert form is not None and form.title == "Feedback sent"  # the thanks, late but shown
    assert slack.seen(PRACTITIONER) == seen  # nothing in the DM (docs/invariants.md N20)


async def test_a_late_answer_to_a_modal_the_person_closed_goes_nowhere(
        slack: SlackDriver, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Closed while it said "one moment": the late screen is tried a few times, then dropped;
    nothing goes to the DM and nothing is kept under a button. The log lines it leaves, in the
    second the item was stored, do not say the form was feedback (docs/invariants.md N24;
    before: "slack modal not updated" with `form: feedback.thanks`, three times)."""
    from adapters.slack import app as slack_app

    monkeypatch.setattr(slack_app, "SUBMIT_BUDGET_S", 0.05)
    monkeypatch.setattr(slack_app, "LATE_RETRIES_S", (0.01, 0.01))
    gate = asyncio.Event()

    async def slow(event, port, call_next):  # type: ignore[no-untyped-def]
        await gate.wait()
        return await call_next()

    await slack.shortcut(PRACTITIONER, "feedback.open")
    slack.core.use(slow)
    seen = slack.seen(PRACTITIONER)
    submitting = asyncio.create_task(
        slack.submit(PRACTITIONER, {"text": CONCERN, "theme": "", "replies": "false"}))
    def waiting() -> Any:
        opened = slack.fake.open_view(slack.user(PRACTITIONER).id)
        return opened if opened is not None and "external_id" in opened.view else None

    while waiting() is None:  # the ack's "one moment" is shown
        await asyncio.sleep(0.01)
    assert "One moment" in json.dumps(waiting().view)
    slack.fake.close_view(waiting().id)  # the person closes it
    caplog.set_level(logging.DEBUG)
    gate.set()
    assert await submitting is None
    assert len(slack.fake.called("views.update")) == 3
    assert slack.seen(PRACTITIONER) == seen
    assert (await dump(slack.core.db))["slack_pending_forms"] == []
    late = [r for r in caplog.records if r.name.startswith(("adapters", "bot", "staffvoice"))]
    assert [r.getMessage() for r in late].count("slack modal not updated") == 3
    assert not [r for r in late if "feedback" in repr(vars(r))]


@pytest.mark.parametrize("late", [False, True], ids=["in-time", "late"])
async def test_a_submission_that_failed_says_nothing_was_saved_in_its_modal(
        slack: SlackDriver, monkeypatch: pytest.MonkeyPatch, late: bool) -> None:
    """The core could not save the form (the database gave up): the modal says so, in time
    or late, and never "Done"; a modal has no conversation for the core to say it in."""
    from adapters.slack import app as slack_app
    from bot.core import SORRY, HandleResult

    monkeypatch.setattr(slack_app, "SUBMIT_BUDGET_S", 0.05)

    async def failing(event, port, call_next):  # type: ignore[no-untyped-def]
        if late:
            await asyncio.sleep(0.3)
        return HandleResult(handled=False, error="internal")

    await slack.shortcut(PRACTITIONER, "feedback.open")
    slack.core.use(failing)
    seen = slack.seen(PRACTITIONER)
    assert await slack.submit(PRACTITIONER, {"text": "Supervision is rushed.", "theme": "",
                                             "replies": "false"}) is None
    opened = slack.fake.open_view(slack.user(PRACTITIONER).id)
    assert opened is not None, "the modal closed without a word"
    shown = json.dumps(opened.view)
    assert SORRY in shown and "Done" not in shown
    assert len(slack.fake.called("views.update")) == (1 if late else 0)
    assert slack.seen(PRACTITIONER) == seen
    assert (await dump(slack.core.db))["feedback_items"] == []
