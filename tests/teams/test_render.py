"""Neutral messages become Adaptive Cards 1.5 that the official schema accepts, and user text
never turns into markup or a mention."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.teams import dialogs, render
from bot.model import (
    Choice,
    Choices,
    Context,
    Fields,
    Form,
    Image,
    LinkButton,
    Message,
    NumberInput,
    RatingScale,
    SelectInput,
    Text,
    TextInput,
    ToggleInput,
    plain_text,
)
from tests.conformance.drivers.teams import card_of, form_of, plain_of
from tests.teams.schemas import adaptive_card_schema

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = adaptive_card_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid(validator: Any, card: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(card), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


EVERY_BLOCK = Message((
    Text("Pulse: how is the new practice framework going?", heading=True),
    Text("Plain paragraph\nwith a second line"),
    Fields((("Team", "Assessment"), ("Due", "Friday 4 December"))),
    Choices("pulse:answer", tuple(Choice(f"Option {i}", f"o{i}", s) for i, s in
                                  enumerate(["default", "primary", "danger"] * 3))),
    RatingScale("pulse:rate", 0, 10, "Not at all likely", "Extremely likely", "r:"),
    RatingScale("pulse:likert", 1, 5),
    LinkButton("Roadmap", "https://northbridge.example/roadmap"),
    LinkButton("Intranet", "intranet/roadmap"),
    Image("Trend of answers", url="https://northbridge.example/chart.png", title="Trend"),
    Image("Inline chart", png=PNG),
    Image("Huge chart", png=b"\x89PNG" + b"\0" * 40_000),
    Image("Nothing to show"),
    Context("Answers are anonymous."),
    Form("feedback", "Anonymous feedback", (
        TextInput("text", "What's on your mind?", multiline=True, max_length=3000,
                  placeholder="Say it plainly", initial="draft"),
        SelectInput("theme", "Theme", (Choice("Workload", "workload"), Choice("Tools", "tools")),
                    optional=True, initial="tools"),
        SelectInput("team", "Team", tuple(Choice(f"T{i}", f"t{i}") for i in range(8))),
        ToggleInput("reply", "I'd like a reply", initial=True),
        NumberInput("hours", "Hours", min=0, max=60, initial=37),
        NumberInput("days", "Days", optional=True),
    ), intro=(Text("Not a referral route."), Context("Call the front door if a child is at risk."),
              Fields((("LADO", "01632 960000"),))), metadata="m1"),
), fallback="Pulse")


def test_every_block_renders_to_a_schema_valid_card(validator: Any) -> None:
    card = render.card(EVERY_BLOCK)
    assert card["version"] == "1.5"
    assert_valid(validator, card)
    payload = render.activity_json(EVERY_BLOCK)
    assert render.size_of(payload) < 28_000  # the big image was left out, not the message


def test_a_card_reads_back_as_the_same_plain_text() -> None:
    back = plain_of(render.activity_json(EVERY_BLOCK)).splitlines()
    want = plain_text(EVERY_BLOCK).splitlines()
    assert back == want


def test_choices_are_submit_buttons_in_rows_of_six_carrying_action_and_value() -> None:
    card = render.card(Message((Choices("a", tuple(Choice(str(i), f"v{i}") for i in range(8))),)))
    rows = card["body"][0]["items"]
    assert [len(r["actions"]) for r in rows] == [6, 2]
    first = rows[0]["actions"][0]
    assert first["type"] == "Action.Submit"
    assert first["data"] == {"sv_kind": "action", "sv_action": "a", "sv_value": "v0"}


def test_a_notice_in_a_dialog_has_nothing_to_press(validator: Any) -> None:
    """A notice (nothing to fill in) shows its words and no submit button: the dialog's own
    close shuts it (https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/
    task-modules/task-modules-bots: `continue` shows a card in the dialog)."""
    notice = Form("feedback.thanks", "Feedback sent", (), intro=(Text("Thank you."),),
                  submit_label="", close_label="Close")
    card = render.card_with(notice, {"sv_kind": "dialog"})
    assert_valid(validator, card)
    assert "Action.Submit" not in json.dumps(card) and "Thank you." in json.dumps(card)


def test_a_notice_shown_in_a_dialog_is_not_packed_for_a_button_it_does_not_have(
        validator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Packing (JSON, zlib at level 9) cost 0.3 M instructions on every feedback form's thanks.
    packed: list[str] = []
    real = dialogs.pack
    monkeypatch.setattr(dialogs, "pack", lambda f: packed.append(f.form_id) or real(f))
    notice = Form("feedback.thanks", "Feedback sent", (), intro=(Text("Thank you."),),
                  submit_label="", close_label="Close")
    shown = dialogs.show(notice)["task"]["value"]
    assert_valid(validator, shown["card"]["content"])
    assert "Thank you." in json.dumps(shown) and packed == []
    form = Form("feedback.send", "Before you send", (TextInput("text", "Your feedback"),))
    button = dialogs.show(form)["task"]["value"]["card"]["content"]["body"][0]["items"][-1]
    assert dialogs.unpack(button["actions"][0]["data"][dialogs.DIALOG]) == form
    assert packed == ["feedback.send"]


def test_a_message_in_a_dialog_is_a_valid_one_line_card_with_a_close_button(
        validator: Any) -> None:
    """`dialogs.say` answers with `continue` and a card (a task message in answer to a
    task/fetch shows an empty dialog: MicrosoftDocs/msteams-docs#6740), the words as typed."""
    shown = dialogs.say("That form is no longer available. <b>Please</b> ask for it again.")
    assert shown["task"]["type"] == "continue"
    card = shown["task"]["value"]["card"]["content"]
    assert_valid(validator, card)
    assert [el["inlines"][0]["text"] for el in card["body"]] == [
        "That form is no longer available. <b>Please</b> ask for it again."]
    assert [(a["type"], a["title"], a["data"]) for a in card["actions"]] == [
        ("Action.Submit", "Close", {render.KIND: dialogs.CLOSE})]


def test_form_inputs_carry_their_own_validation() -> None:
    card = render.form_card(EVERY_BLOCK.blocks[-1])  # type: ignore[arg-type]
    items = {i.get("id"): i for i in card["body"][0]["items"]}
    assert items["text"]["isRequired"] and items["text"]["maxLength"] == 3000
    assert items["text"]["errorMessage"] == "Please fill in: What's on your mind?"
    assert "isRequired" not in items["theme"]
    assert (items["hours"]["min"], items["hours"]["max"]) == (0, 60)
    assert items["reply"]["valueOn"] == "true" and items["reply"]["valueOff"] == "false"
    form, data = form_of(card) or (None, {})
    assert form is not None and [i.name for i in form.inputs] == [
        "text", "theme", "team", "reply", "hours", "days"]
    assert data == {"sv_kind": "form", "sv_form": "feedback", "sv_meta": "m1"}


def test_images_are_inline() -> None:
    card = render.card(Message((Image("Chart", png=PNG),)))
    img = card["body"][0]["items"][0]
    assert img["url"].startswith("data:image/png;base64,") and img["altText"] == "Chart"
    # A plain http URL is never fetched by Teams clients: alt text instead.
    card = render.card(Message((Image("Chart", url="http://example.org/x.png"),)))
    assert plain_of({"attachments": [{"contentType": render.CARD_CONTENT_TYPE, "content": card}]}) \
        == "[image: Chart]"


HOSTILE = ("**bold** _it_ [link](https://evil.example) <at>Director</at> <b>x</b> &amp; "
           "# heading\n- list `code` {{DATE(2026-01-01T00:00:00Z)}}")


def test_user_text_never_becomes_markup_or_a_mention(validator: Any) -> None:
    msg = Message((Text(HOSTILE), Fields(((HOSTILE, HOSTILE),)), Context(HOSTILE),
                   Choices("a", (Choice(HOSTILE, "v"),))))
    payload = render.activity_json(msg)
    card = card_of(payload)
    assert card is not None
    assert_valid(validator, card)
    assert "entities" not in payload and "text" not in payload  # no mention entity, no markdown
    dumped = json.dumps(card["body"])
    assert '"TextBlock"' not in dumped  # only TextRuns, which are never parsed as markdown
    assert card["body"][0]["inlines"][0]["text"] == HOSTILE  # shown exactly as written
    for field in (card["fallbackText"], payload["summary"]):
        assert "<at>" not in field and "**" not in field and "[link]" not in field
        assert "\\*\\*bold\\*\\*" in field or field.startswith("\\*\\*bold")


# -- every card the renderer can produce -------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
label = text.filter(lambda s: s.strip() != "")
choice = st.builds(Choice, label, text, st.sampled_from(["default", "primary", "danger"]))
name = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda s: not s.startswith("sv_"))
inputs = st.one_of(
    st.builds(TextInput, name, label, st.booleans(), st.integers(1, 3000), st.booleans(), text, text),
    st.builds(SelectInput, name, label, st.lists(choice, min_size=1, max_size=6).map(tuple),
              st.booleans(), text),
    st.builds(ToggleInput, name, label, st.booleans()),
    st.builds(NumberInput, name, label, st.integers(-5, 5), st.integers(6, 100), st.booleans(),
              st.one_of(st.none(), st.integers(0, 6))),
)
intro = st.one_of(st.builds(Text, text, st.booleans()), st.builds(Context, text),
                  st.builds(Fields, st.lists(st.tuples(text, text), max_size=3).map(tuple)))
form = st.builds(Form, name, text, st.lists(inputs, min_size=1, max_size=5,
                                            unique_by=lambda i: i.name).map(tuple),
                 st.lists(intro, max_size=3).map(tuple), label, text)
block = st.one_of(
    st.builds(Text, text, st.booleans()),
    st.builds(Fields, st.lists(st.tuples(text, text), max_size=4).map(tuple)),
    st.builds(Choices, name, st.lists(choice, min_size=1, max_size=13).map(tuple)),
    st.builds(RatingScale, name, st.integers(0, 1), st.integers(2, 10), text, text, text),
    st.builds(LinkButton, label, st.sampled_from(["https://northbridge.example/a", "not a url"])),
    st.builds(Image, text, st.sampled_from([None, "https://northbridge.example/c.png"]),
              st.sampled_from([None, PNG]), text),
    st.builds(Context, text),
    form,
)
messages = st.builds(Message, st.lists(block, max_size=6).map(tuple), text)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages)
def test_any_neutral_message_renders_to_a_valid_card(validator: Any, msg: Message) -> None:
    assert_valid(validator, render.card(msg))


def test_a_form_opens_as_a_dialog_whose_cards_are_valid_and_carry_the_form(validator: Any) -> None:
    from adapters.teams import dialogs
    from bot.model import Context, Fields, Form, NumberInput, SelectInput, TextInput, ToggleInput

    form = Form("feedback.submit", "Give feedback", (
        TextInput("text", "What would you like to say?", multiline=True, initial="café “quoted”"),
        SelectInput("theme", "Theme", (Choice("Workload", "w"), Choice("Other", "o", "danger")),
                    optional=True),
        ToggleInput("replies", "Allow replies", True),
        NumberInput("n", "How many", 1, 9, True, 3),
    ), (Context("Not a referral route."), Text("Routes", heading=True), Fields((("LADO", "01"),))),
        "Send", "meta-1")
    opener = dialogs.opener(form)
    assert_valid(validator, card_of(opener) or {})
    assert '"Input.' not in json.dumps(opener)  # the chat never holds the inputs
    shown = dialogs.show(form)["task"]["value"]
    assert_valid(validator, shown["card"]["content"])
    assert dialogs.unpack(dialogs.pack(form)) == form
    assert dialogs.unpack("not a form") is None and dialogs.unpack(None) is None
