"""Forms in Teams dialogs: task/fetch opens a form, task/submit sends it, and nothing the person
types is left in the chat; no card says "sent" unless something was sent (issue 17, items 10
and 14), and the thanks for feedback stays in the dialog."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.broadcasts.tables import Broadcast
from bot.feedback.tables import FeedbackItem
from tests.conformance.drivers.teams import TeamsDriver, dialog_button, said_in_dialog
from tests.conformance.test_broadcasts import GOOD
from tests.conformance.test_feedback import CONCERN
from tests.fakes.teams_connector import TASK_FETCH

WHO = "practitioner2@northbridge.example"
CHANGE = "changelead@northbridge.example"


def everything_posted(teams: TeamsDriver, email: str) -> str:
    """Every version of every activity the bot posted in a person's chat, as sent."""
    return "\n".join(json.dumps(v) for p in teams._dm_posts(email) for v in p.versions)


def inputs_in_chat(teams: TeamsDriver) -> list[str]:
    return [p.id for p in teams.fake.state.posted.values() for v in p.versions
            if '"Input.' in json.dumps(v)]


async def test_feedback_is_written_in_a_dialog_and_its_text_never_enters_the_chat(
    teams: TeamsDriver,
) -> None:
    """The feedback form opens in a dialog; a safeguarding check ("Before you send") is the
    dialog's next step; nothing says "sent" until it is, and the text is in no chat message."""
    await teams.say(WHO, "feedback")
    posts = teams._dm_posts(WHO)
    assert dialog_button(posts[-1].current) is not None  # the chat holds a button, no inputs
    assert inputs_in_chat(teams) == []
    form = teams.form(WHO)
    assert form is not None and form.form_id == "feedback.submit"
    shown = teams.seen(WHO)  # the card that opens the form, and the blank form it carries

    assert await teams.submit(WHO, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    check = teams.form(WHO)
    assert check is not None and check.title == "Before you send"  # same dialog, next step
    async with teams.core.db.session() as s:
        assert (await s.execute(select(FeedbackItem))).first() is None  # nothing sent yet
    assert teams.seen(WHO) == shown  # nothing new in the chat, nothing says "sent"

    posted = everything_posted(teams, WHO)
    assert await teams.submit(WHO, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    # The thanks is the dialog's last step (task/submit answered with `continue` and a card
    # with nothing to fill in and no submit: the dialog's own close shuts it); the chat, which
    # Purview keeps by name and time, gets nothing (docs/invariants.md N19, N20).
    thanks = teams.form(WHO)
    assert thanks is not None and thanks.title == "Feedback sent" and not thanks.inputs
    card = json.dumps(teams.dialogs[WHO][0])
    assert "Action.Submit" not in card and '"Input.' not in card
    assert "Thank you. Your feedback was sent anonymously." in card
    assert "went to the safeguarding leads straight away" in card and "LADO" in card
    assert everything_posted(teams, WHO) == posted
    async with teams.core.db.session() as s:
        assert (await s.execute(select(FeedbackItem.text))).scalars().all() == [CONCERN]
    assert CONCERN not in everything_posted(teams, WHO)  # (the leads get it, by design)
    assert inputs_in_chat(teams) == []


async def test_a_preview_does_not_say_the_broadcast_was_sent(teams: TeamsDriver) -> None:
    """Issue 17 item 10: after Preview the chat said "New broadcast: sent." while nothing was."""
    await teams.say(CHANGE, "broadcast")
    assert teams.form(CHANGE) is not None
    assert await teams.submit(CHANGE, GOOD) is None
    assert teams.form(CHANGE) is None
    shown = teams.seen(CHANGE)
    assert "Preview: only you can see this" in shown[-1]
    assert not any(": sent." in t or t.endswith("sent.") for t in shown), shown
    async with teams.core.db.session() as s:
        assert (await s.execute(select(Broadcast.state))).scalars().all() == ["draft"]


async def test_a_rejected_form_comes_back_in_the_dialog_with_its_problems(
    teams: TeamsDriver,
) -> None:
    await teams.say(CHANGE, "broadcast")
    errors = await teams.submit(CHANGE, {**GOOD, "image_url": "http://not-secure.example/x.png"})
    assert errors is not None and "https" in errors.get("image_url", "")
    form = teams.form(CHANGE)
    assert form is not None and form.title == "New broadcast"
    kept = {i.name: getattr(i, "initial", None) for i in form.inputs}
    assert kept["title"] == GOOD["title"]  # what was typed is kept
    assert inputs_in_chat(teams) == []


async def test_a_dialog_button_whose_data_was_altered_gets_a_message_not_an_error(
    teams: TeamsDriver,
) -> None:
    await teams.say(WHO, "feedback")
    uid, cid = teams.dm_id(WHO)
    for data in ({"msteams": {"type": TASK_FETCH}, "sv_kind": "dialog", "sv_dialog": "garbage"},
                 {"msteams": {"type": TASK_FETCH}}):
        body = await teams.invoke(teams.activity(
            uid, cid, "personal", type="invoke", name=TASK_FETCH,
            value={"type": TASK_FETCH, "data": data}))
        assert "no longer available" in (said_in_dialog(body) or ""), body
        assert await teams.press_close(WHO, body) is None  # Close: the dialog closes


async def test_a_dialog_button_naming_an_action_that_opens_no_form_gets_a_message(
    teams: TeamsDriver,
) -> None:
    """A task/fetch button that names an action (the reply notice's "Read the answer"), its
    data altered or its route gone: the dialog says where the answer is (invoke_problem: a
    task message is what Teams shows), the chat gets the refusal as a tap's, no error."""
    await teams.say(WHO, "help")
    uid, cid = teams.dm_id(WHO)
    for action, value in (("feedback.read", "not-a-token"), ("no.such.action", "x"), ("", "")):
        shown = len(teams.seen(WHO))
        body = await teams.invoke(teams.activity(
            uid, cid, "personal", type="invoke", name=TASK_FETCH,
            value={"type": TASK_FETCH, "data": {"msteams": {"type": TASK_FETCH},
                                                 "sv_kind": "action", "sv_action": action,
                                                 "sv_value": value}}))
        assert "your chat with staffvoice" in (said_in_dialog(body) or ""), body
        said = teams.seen(WHO)[shown:]
        assert len(said) == 1 and ("stopped" in said[0] or "no longer active" in said[0]), said
    assert teams.form(WHO) is None


async def test_an_old_form_card_in_the_chat_is_not_taken(teams: TeamsDriver) -> None:
    """A form card from before dialogs: its submission is answered with a pointer, not stored."""
    uid, cid = teams.dm_id(WHO)
    await teams.say(WHO, "help")
    await teams.post(teams.activity(uid, cid, "personal", replyToId="1999",
                                    value={"sv_kind": "form", "sv_form": "feedback.submit",
                                           "text": IDEA_TEXT, "replies": "false"}))
    assert "opens in a dialog" in teams.seen(WHO)[-1]
    async with teams.core.db.session() as s:
        assert (await s.execute(select(FeedbackItem))).first() is None


IDEA_TEXT = "Family network meetings clash with court deadlines every week."


async def test_a_pulse_comment_longer_than_its_box_is_sent_back_whole_not_cut(
    teams: TeamsDriver,
) -> None:
    """Not every Teams client holds an Input.Text to its maxLength (AdaptiveCards #4621: the
    host let more through and sent it all), and the pulse keeps at most 2,000 characters of a
    comment. A longer one comes back in the dialog, every word kept, saying by how much."""
    from tests.test_pulse import held

    staff = "practitioner1@northbridge.example"
    await teams.core.tick()  # Monday 10:00: the weekly pulse opens
    for label in ("4", "4", "4", "4", "4", "8", "Write a comment"):
        await teams.tap(staff, label)
    comment = "Group supervision is helping; the new recording templates are not. " * 37
    assert len(comment.strip()) > 2000
    errors = await teams.submit(staff, {"comment": comment})
    assert errors is not None and "2,000" in errors.get("comment", ""), errors
    form = teams.form(staff)
    assert form is not None and form.inputs[0].initial == comment  # type: ignore[union-attr]
    assert [t for _v, _c, t in await held(teams.core) if t] == []
    assert await teams.submit(staff, {"comment": comment[:1900]}) is None
    assert [t for _v, _c, t in await held(teams.core) if t] == [comment[:1900].strip()]
