"""A motivated intruder with the platform's copy of every chat, against feedback authors.

As in test_chat_history.py: a council's Slack or Teams keeps every message the bot leaves in
a person's DM, by name and time (Microsoft Purview retention and eDiscovery for Teams chats;
Slack's exports and Discovery API), and a compliance administrator reads them. The change team
knows what it reads in its listings: which items a release brought, which thread got an
answer. Whatever the bot says in one author's chat and not in another's is a fact about
feedback, by name.

Three things the bot still said in the author's DM (found 2026-12-07, N39, N41 and N43):

- the daily limit, when someone who had sent that day's allowance opened the form again
  ("You have sent 5 pieces of feedback today, which is the daily limit."): the five items of
  that day's listing had one author, named;
- "Your answer was sent anonymously to the change team.", at the second the author answered
  in a thread (and only when they answered, not when they just read the answer): the answer
  the change team reads at the next release (N22) was dated to the second, and its thread,
  the one that got an answer in that release, named its author;
- how many pieces of their feedback allowed replies, when they typed "feedback stop replies"
  ("Done: replies to 2 pieces of your feedback are stopped", against "You have no feedback
  that allows replies."), beside the items the change team sees "replies possible" on (N43).
"""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from adapters.teams import dialogs
from bot.core import Core
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem, FeedbackMessage
from bot.model import ActionEvent, Message, plain_text
from tests.conformance.drivers.fake import FakeDriver
from tests.conformance.drivers.teams import (
    TeamsDriver,
    _actions,
    card_of,
    dialog_button,
    said_in_dialog,
)
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, REF, give, ref_for, release

FIRST = "Before we start"
LIMIT = "You have sent 5 pieces of feedback today, which is the daily limit."


def every_version(d: FakeDriver, email: str) -> list[str]:
    """Every version of every message in the person's DM, oldest first, as the platform
    keeps them (edits included), but the privacy notice everyone gets first."""
    out: list[Message] = []
    for posted in d.port.messages(d.conv(email).conversation_id):
        out.extend([*posted.history, posted.message])
    return [plain_text(m) for m in out if not plain_text(m).startswith(FIRST)]


def form_text(d: FakeDriver, email: str) -> str:
    """The title and intro of the form shown to the person."""
    form = d.form(email)
    assert form is not None
    return "\n".join([form.title, *(getattr(b, "text", "") for b in form.intro)])


async def _open_by_button(d: FakeDriver, email: str) -> None:
    """The Home tab's button (or a shortcut): the `feedback.open` action."""
    d.port.forms.pop(f"U-{email}", None)
    await d.core.handle(ActionEvent(d._id(), d.user(email), d.conv(email),
                                    action_id="feedback.open", value="open", trigger="t"), d.port)


async def test_the_daily_limit_is_not_said_in_the_senders_chat(loaded: Core) -> None:
    """Attack: one practitioner sends five ideas on Monday (the example programme's daily
    limit), another sends one; both open the form again, by typing "feedback" and by the
    Home tab's button. The change team's 17:00 listing holds six items; the intruder compares
    the two DMs.

    Before: the first DM held "You have sent 5 pieces of feedback today, which is the daily
    limit." at each try, by name: five of the day's six items were theirs. Now both DMs are
    the same (empty), both open the same form, and the first is told the limit in the form
    when they send it, which stores nothing."""
    d = FakeDriver(loaded)
    busy, once = PRACTITIONER, OTHER
    for i in range(5):
        assert await give(d, busy, f"Idea number {'abcde'[i]} about the case tools.") is None
    assert await give(d, once, "The new duty rota works well for the front door.") is None
    for who in (busy, once):
        d.port.forms.pop(f"U-{who}", None)
        await d.say(who, "feedback")
        assert d.form(who) is not None and d.form(who).form_id == "feedback.submit"  # type: ignore[union-attr]
        await _open_by_button(d, who)
        assert d.form(who) is not None
    assert every_version(d, busy) == every_version(d, once) == []
    # The same form for both (a Slack button in the DM, and the form sealed under it, alike).
    assert d.form(busy) == d.form(once)
    # The person is still told, where the platform keeps nothing: in the form.
    errors = await d.submit(busy, {"text": "A sixth idea.", "theme": "", "replies": "false"})
    assert errors is not None and LIMIT in errors["text"]
    async with loaded.db.session() as s:
        assert len(list((await s.execute(select(FeedbackItem.id))).scalars())) == 6
    assert every_version(d, busy) == every_version(d, once) == []


async def test_an_authors_answer_leaves_nothing_in_their_chat(loaded: Core) -> None:
    """Attack: two authors allow replies; the change team answers both at 12:10 (their reply
    notices reach both DMs in the same minute, so neither notice says whose item was whose).
    At 13:15 one author answers back; the other opens the answer, reads it and closes it. At
    17:00 the change team reads which thread got an answer; the intruder compares the DMs.

    Before: the first DM held "Your answer was sent anonymously to the change team." at
    13:15, by name: the answered thread's item was theirs, and their answer, which the change
    team read only from the 17:00 release, was dated to the second. Now both DMs are the same;
    the confirmation is shown in the form just sent."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    texts = {PRACTITIONER: "Supervision keeps being cancelled in my team.",
             OTHER: "The new case recording form takes twice as long."}
    for who, text in texts.items():
        assert await give(d, who, text, replies=True) is None
    clock.set(day.replace(hour=12, minute=10))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    listing = d.seen(CHANGE)[-1]
    for text in texts.values():
        await d.say(CHANGE, f"feedback reply #{ref_for(listing, text)}")
        assert await d.submit(CHANGE, {"text": "Which days are worst?"}) is None
    await fb.settle_notices()
    clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
    answered, read = PRACTITIONER, OTHER
    for who in (answered, read):
        await d.tap(who, "Read the answer")
    assert await d.submit(answered, {"text": "The first week of each month."}) is None
    assert await d.submit(read, {"text": ""}) is None
    assert every_version(d, answered) == every_version(d, read)
    # The author is still told, where the platform keeps nothing: in the form just sent.
    shown = d.form(answered)
    assert shown is not None and shown.notice
    assert "Your answer was sent anonymously to the change team." in form_text(d, answered)
    assert any("The change team answered your feedback" in v for v in every_version(d, read))
    async with loaded.db.session() as s:
        authors = list((await s.execute(select(FeedbackMessage.text).where(
            FeedbackMessage.sender == "author"))).scalars())
    assert authors == ["The first week of each month."]  # the answer is kept, as before


async def test_stopping_replies_says_the_same_whatever_the_person_sent(loaded: Core) -> None:
    """Attack: in the route window only two items allow replies (the change team's listing
    says "replies possible" on them); one practitioner sent both, another sent an item without
    replies. Both type "feedback stop replies"; the intruder compares the DMs.

    Before: "Done: replies to 2 pieces of your feedback are stopped" against "You have no
    feedback that allows replies. Nothing was changed.": both items were the first's. Now both
    read the same words."""
    d = FakeDriver(loaded)
    two, none = PRACTITIONER, OTHER
    for text in ("Supervision keeps being cancelled.", "The case form takes twice as long."):
        assert await give(d, two, text, replies=True) is None
    assert await give(d, none, "The duty rota works well.", replies=False) is None
    for who in (two, none):
        await d.say(who, "feedback stop replies")
    assert every_version(d, two) == every_version(d, none)
    assert "replies to any feedback of yours are stopped" in every_version(d, two)[-1]
    # Stopped as before (tests/anonymity/test_stopping_replies.py): asked again, the same.
    await d.say(two, "feedback stop replies")
    assert every_version(d, two)[-1] == every_version(d, none)[-1]


def kept_by_teams(d: TeamsDriver, email: str) -> str:
    """Everything Teams keeps of the person's chat with the bot: every activity as posted and
    as edited, with each card's button data (Purview's eDiscovery exports a chat's cards), and
    any form packed into a button (adapters/teams/dialogs.py `pack`: deflated JSON, no key)."""
    raw = json.dumps([p.versions for p in d._dm_posts(email)])
    forms = [dialogs.unpack(m) for m in re.findall(rf'"{dialogs.DIALOG}": "([^"]+)"', raw)]
    return "\n".join([raw, *(json.dumps([f.title, *map(str, f.intro)]) for f in forms if f)])


async def test_reading_an_answer_on_teams_leaves_no_words_of_the_thread_in_the_chat(
        loaded: Core) -> None:
    """Attack: Teams keeps the author's chat with the bot by name, cards and their button data
    included. An author sends an idea allowing replies; the change team answers; the author
    reads the answer, answers back; the change team answers again and the author reads it.

    Before (review12): a tap on "Read the answer" was a message activity, which cannot open a
    dialog, so the Teams port posted an "Open the form" card whose button carried the whole
    form, deflated and base64'd but not sealed: "You wrote (30 Nov): <the item>", the change
    team's reply, the author's earlier answers ("You (30 Nov): ...") and the route's token.
    The item and the author's answer (N41) were in the author's chat, by name. Now the
    notice's button is a task/fetch button: Teams asks the bot for the dialog, which is made
    then from the route, and nothing is posted in the chat."""
    d = await TeamsDriver(loaded).start()
    idea = "Family network meetings clash with court deadlines every week."
    answer = "The first week of each month is the worst for it."
    try:
        await d.say(PRACTITIONER, "feedback")
        assert await d.submit(PRACTITIONER, {"text": idea, "theme": "", "replies": "true"}) is None
        await release(loaded)
        for reply in ("Which weeks are worst?", "Thanks: we are moving them to Thursdays."):
            await d.say(CHANGE, "feedback list all")
            ref = REF.search(d.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
            await d.say(CHANGE, f"feedback reply #{ref}")
            assert await d.submit(CHANGE, {"text": reply}) is None
            await fb.settle_notices()
            await d.tap(PRACTITIONER, "Read the answer")
            assert d.form(PRACTITIONER) is not None  # the author reads it, in a dialog
            if reply.startswith("Which"):
                assert await d.submit(PRACTITIONER, {"text": answer}) is None
            await release(loaded)
        kept = kept_by_teams(d, PRACTITIONER)
        assert "The change team answered your feedback" in kept  # the notice, as on Slack
        for words in (answer, idea, "Which weeks are worst?"):
            assert words not in kept, words
    finally:
        await d.close()


async def test_an_old_notice_tapped_as_a_message_leaves_no_words_of_the_thread_in_the_chat(
        loaded: Core) -> None:
    """Attack: a reply notice posted before its button opened a dialog is still in an author's
    chat, its "Read the answer" a plain Action.Submit, which Teams sends as a message. The
    author taps it; the card the bot posts to open the form must hold nothing of the thread.

    Before: that card's button packed the whole answer form (review12, as above). Now it
    carries the action tapped and its value, which the old notice's own button carried, and
    the form is made when the dialog is fetched."""
    d = TeamsDriver(loaded)
    await d.start()
    idea = "Family network meetings clash with court deadlines every week."
    reply = "Which weeks are worst?"
    try:
        await d.say(PRACTITIONER, "feedback")
        assert await d.submit(PRACTITIONER, {"text": idea, "theme": "", "replies": "true"}) is None
        await release(loaded)
        await d.say(CHANGE, "feedback list all")
        ref = REF.search(d.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": reply}) is None
        await fb.settle_notices()
        notice = next(p for p in reversed(d._dm_posts(PRACTITIONER))
                      if "Read the answer" in json.dumps(p.current))
        data = next(a["data"] for el in card_of(notice.current)["body"]  # type: ignore[index]
                    for a in _actions(el) if a["title"] == "Read the answer")
        old = {k: v for k, v in data.items() if k != "msteams"}  # the button as it was
        uid, cid = d.dm_id(PRACTITIONER)
        before = d._newest(PRACTITIONER)
        await d.post(d.activity(uid, cid, "personal", value=old, replyToId=notice.id))
        opener = d._dm_posts(PRACTITIONER)[-1]
        assert int(opener.id) > before and dialog_button(opener.current) is not None
        await d.open_dialog(PRACTITIONER, opener)
        form = d.form(PRACTITIONER)
        assert form is not None and form.form_id == "feedback.answer"  # read in the dialog
        assert any(reply in getattr(b, "text", "") for b in form.intro)
        kept = kept_by_teams(d, PRACTITIONER)
        assert dialogs.DIALOG not in json.dumps(opener.versions)  # no form packed into it
        for words in (idea, reply):
            assert words not in kept, words
    finally:
        await d.close()


async def test_a_resent_task_fetch_does_not_point_to_the_chat_where_nothing_was_said(
        loaded: Core) -> None:
    """Teams resends an invoke it had no answer to within 15 s, with the same id
    (MicrosoftDocs/msteams-docs#6084, microsoft/botbuilder-dotnet#5005), and shows the
    answer to the resent one. The core drops it as a duplicate, so no form opens: the dialog
    must not say "the answer is in your chat" (review15: it did, and the chat held nothing),
    and nothing is posted in the chat."""
    d = TeamsDriver(loaded)
    await d.start()
    try:
        await d.say(PRACTITIONER, "feedback")
        assert await d.submit(PRACTITIONER, {"text": "Rotas change too late.", "theme": "",
                                             "replies": "true"}) is None
        await release(loaded)
        await d.say(CHANGE, "feedback list all")
        ref = REF.search(d.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": "How late?"}) is None
        await fb.settle_notices()
        notice = next(p for p in reversed(d._dm_posts(PRACTITIONER))
                      if "Read the answer" in json.dumps(p.current))
        data = next(a["data"] for el in card_of(notice.current)["body"]  # type: ignore[index]
                    for a in _actions(el) if a["title"] == "Read the answer")
        uid, cid = d.dm_id(PRACTITIONER)
        fetch = d.activity(uid, cid, "personal", type="invoke", name=dialogs.TASK_FETCH,
                           replyToId=notice.id,
                           value={"type": dialogs.TASK_FETCH, "data": data,
                                  "context": {"theme": "default"}})
        first = await d.invoke(fetch)
        assert first["task"]["type"] == "continue"
        shown = d.seen(PRACTITIONER)
        again = await d.invoke(fetch)  # the same activity, id and all
        said = said_in_dialog(again) or ""
        assert "chat" not in said and "tap the button again" in said, again
        assert d.seen(PRACTITIONER) == shown
    finally:
        await d.close()
