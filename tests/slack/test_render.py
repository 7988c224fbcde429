"""Block Kit rendering: validated by slack_sdk's models, within Slack's limits, fallback always set."""

from __future__ import annotations

import json

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from adapters.slack import render
from adapters.slack.render import to_dicts
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
)
from tests.conformance.drivers.slack import form_of, plain_of
from tests.fakes.slack_api import FakeSlack


def test_a_message_of_every_block_reads_the_same_as_the_neutral_text() -> None:
    from bot.model import plain_text

    msg = Message((
        Text("Pulse results", heading=True), Text("How are things?\nSecond line"),
        Fields((("Answers", "12"), ("Team", "Assessment"))),
        RatingScale("pulse.a", 1, 5, "Not at all", "Very"),
        Choices("x.y", (Choice("Yes", "y", "primary"), Choice("No", "n", "danger"))),
        LinkButton("Roadmap", "https://northbridge.example/roadmap"),
        Image("Trend", url="https://northbridge.example/t.png"), Context("Updated today"),
    ))
    payload = render.message_payload(msg)
    assert plain_of(payload["blocks"]) == plain_text(msg)
    for b in payload["blocks"]:
        assert Block.parse(b) is not None  # each dict is a real Block Kit block
    ids = [e["action_id"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert len(ids) == len(set(ids))  # unique, as Slack requires
    assert render.neutral_action_id("pulse.a#3") == "pulse.a"


def test_long_text_is_split_and_too_many_blocks_are_shortened() -> None:
    long = "word " * 2000  # 10,000 characters
    payload = render.message_payload(Message((Text(long),)))
    sections = payload["blocks"]
    assert len(sections) == 4 and all(len(b["text"]["text"]) <= 3000 for b in sections)
    many = Message(tuple(Text(f"line {i}") for i in range(80)))
    blocks = render.message_payload(many)["blocks"]
    assert len(blocks) == 50 and "shortened" in blocks[-1]["elements"][0]["text"]


def test_a_message_too_big_for_one_slack_message_goes_in_parts_and_an_edit_is_shortened() -> None:
    # 120 questions with their answers: over 50 blocks and over Slack's text limit together.
    blocks: list[Text | Choices] = []
    for i in range(120):
        blocks += [Text(f"Question {i}: " + "how is the new framework working for you? " * 3),
                   Choices("q", (Choice("Yes", f"{i}.y"), Choice("No", f"{i}.n")))]
    msg = Message(tuple(blocks))
    payloads = render.message_payloads(msg)
    assert len(payloads) > 2
    for p in payloads:
        assert len(p["blocks"]) <= render.MAX_MESSAGE_BLOCKS
        assert render.blocks_text(p["blocks"]) <= render.BLOCKS_TEXT
        assert p["blocks"][0]["type"] == "section"  # a part never starts with buttons
        assert p["text"].startswith("Question ")
    assert "\n".join(plain_of(p["blocks"]) for p in payloads) == msg.plain
    # One that fits is one message, as before.
    assert render.message_payloads(Message((Text("Thanks"),))) == [render.message_payload(Message((Text("Thanks"),)))]
    # An edit cannot be split: it is cut to fit and says so.
    edit = render.message_payload(msg)["blocks"]
    assert render.blocks_text(edit) <= render.BLOCKS_TEXT and edit[-1]["block_id"] == "shortened"
    # Many long fields take sections of their own rather than one section over the limit.
    fields = render.message_payload(Message((Fields(tuple((f"k{i}", "v" * 1500) for i in range(10))),)))
    assert all(render.blocks_text(b) <= 3000 for b in fields["blocks"])


def test_limits_on_labels_values_and_headers_are_respected() -> None:
    msg = Message((
        Text("H" * 400, heading=True),
        Choices("a", tuple(Choice("L" * 200, f"v{i}") for i in range(30))),
        Fields((("k" * 300, "v" * 5000),)),
    ))
    payload = render.message_payload(msg)  # to_dict() raises if any limit is broken
    rows = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert [len(r["elements"]) for r in rows] == [25, 5]
    assert all(len(e["text"]["text"]) <= 75 for r in rows for e in r["elements"])
    assert len(json.dumps(payload)) < 40_000


def test_a_text_that_fits_one_section_is_escaped_whole_not_character_by_character(monkeypatch) -> None:
    # The feedback thanks (about 900 characters with the safeguarding routes) was escaped one
    # character at a time to find where to split it: 1.2 M instructions a form (bench/README.md).
    calls: list[str] = []
    real = render.escape
    monkeypatch.setattr(render, "escape", lambda t: calls.append(t) or real(t))
    text = "Call the duty line & ask for <safeguarding>.\n" * 20
    blocks = to_dicts(render.render_blocks([Text(text)]))
    assert [b["text"]["text"] for b in blocks] == [real(text)]
    assert len(calls) <= 2
    # At the limit, escaped: one piece; one character past it: two, each within it.
    at = "&" * 600  # 3,000 characters escaped
    assert render.chunks(at, 3000) == [at]
    assert [len(real(p)) for p in render.chunks(at + "a", 3000)] == [3000, 1]


def test_escaped_text_is_never_cut_inside_an_entity() -> None:
    assert render.clip_escaped("a" * 8 + "&", 10) == "a" * 8 + "…"


def test_a_form_becomes_a_modal_and_its_submission_reads_back() -> None:
    form = Form(
        "feedback.send", "Anonymous feedback to the change team",
        (TextInput("text", "What would you like to say?", multiline=True, max_length=5000),
         SelectInput("theme", "Theme", (Choice("Workload", "workload"), Choice("Tools", "tools")),
                     optional=True),
         ToggleInput("replies", "I would like replies"), NumberInput("score", "Score", 0, 10)),
        intro=(Text("This is not a referral route."),), submit_label="Send", metadata="m1",
    )
    view = render.modal(form)
    assert isinstance(view, View)
    d = view.to_dict()
    assert d["title"]["text"] == "Anonymous feedback to t…" and len(d["title"]["text"]) <= 24
    assert d["callback_id"] == "feedback.send" and d["private_metadata"] == "m1"
    back = form_of(d)
    assert [i.name for i in back.inputs] == ["text", "theme", "replies", "score"]
    assert back.inputs[0].max_length == 3000  # type: ignore[union-attr]
    state = {"values": {
        "text": {"value": {"type": "plain_text_input", "value": "<!here> too busy"}},
        "theme": {"value": {"type": "static_select", "selected_option": {"value": "tools"}}},
        "replies": {"value": {"type": "checkboxes", "selected_options": [{"value": "true"}]}},
        "score": {"value": {"type": "number_input", "value": "7"}},
    }}
    assert render.modal_values({"state": state}) == {
        "text": "<!here> too busy", "theme": "tools", "replies": "true", "score": "7"}
    assert render.modal_errors({"_": "Too long", "score": "0 to 10"}, d) == {
        "text": "Too long", "score": "0 to 10"}


def test_a_notice_becomes_a_modal_with_only_a_close_button() -> None:
    """Nothing to fill in: no submit ("submit is required when an input block is within the
    blocks array", https://docs.slack.dev/reference/views/modal-views), the close text set."""
    notice = Form("feedback.thanks", "Feedback sent", (), intro=(Text("Thank you."),),
                  submit_label="", close_label="Close")
    assert notice.notice
    view = render.modal(notice)
    view.validate_json()  # the SDK's own checks: title, close and submit lengths, blocks
    d = view.to_dict()
    assert "submit" not in d and d["close"]["text"] == "Close"
    assert d["title"]["text"] == "Feedback sent" and d["callback_id"] == "feedback.thanks"
    assert form_of(d).intro == (Text("Thank you."),)


def test_a_notice_is_rendered_once_for_everyone_and_a_form_with_inputs_every_time(monkeypatch) -> None:
    # The feedback thanks is the same words for every sender: its validated rendering is kept
    # (about 1 M instructions a Slack form, bench/README.md). A form with inputs may carry
    # what the person wrote, so it is never kept.
    drawn: list[str] = []
    real = render.modal
    monkeypatch.setattr(render, "modal", lambda f: drawn.append(f.form_id) or real(f))
    notice = Form("feedback.thanks", "Feedback sent", (), intro=(Text("Thank you. 7 days."),),
                  submit_label="", close_label="Close")
    first = render.modal_dict(notice)
    first["blocks"].clear()  # a caller changing its copy changes nobody else's
    again = render.modal_dict(Form("feedback.thanks", "Feedback sent", (),
                                   intro=(Text("Thank you. 7 days."),), submit_label="",
                                   close_label="Close"))
    assert again == real(notice).to_dict() and drawn == ["feedback.thanks"]
    other = render.modal_dict(Form("feedback.thanks", "Feedback sent", (),
                                   intro=(Text("Thank you. 30 days."),), submit_label="",
                                   close_label="Close"))
    assert form_of(other).intro == (Text("Thank you. 30 days."),)
    draft = Form("feedback.send", "Before you send", (TextInput("text", "Your feedback",
                                                                  initial="my words"),))
    assert render.modal_dict(draft) == render.modal_dict(draft) == real(draft).to_dict()
    assert drawn == ["feedback.thanks", "feedback.thanks", "feedback.send", "feedback.send"]


def test_home_has_one_feedback_button() -> None:
    view = render.home_view([Text("Your milestones")]).to_dict()
    buttons = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == ["feedback.open"]


def test_a_text_input_longer_than_one_slack_box_is_several_boxes_read_back_whole() -> None:
    """Slack refuses a plain_text_input whose max_length is over 3,000, and its client submits
    no more than that: a longer input (pulse questions take 5,000) is shown as several boxes,
    an initial text spread over them, and their values joined back exactly."""
    lines = [f"rating: Question {i:03d}: supervision, recording and family network meetings"
             for i in range(80)]
    texts = ["\n".join(lines), "x" * 7001, "a\n" * 2999 + "b" * 10, ("y" * 2999 + "\n\n") * 3,
             "short"]
    for text in texts:
        form = Form("pulse.define", "New pulse survey", (
            TextInput("questions", "Questions", multiline=True, max_length=5000, initial=text),),
            submit_label="Create")
        d = render.modal(form).to_dict()
        assert FakeSlack()._check_view(d, "modal") is None
        boxes = [b for b in d["blocks"] if b["type"] == "input"]
        assert len(boxes) >= 2
        assert [b["block_id"] for b in boxes] == ["questions"] + [
            f"questions~{k}" for k in range(2, len(boxes) + 1)]
        assert all(len(b["element"].get("initial_value", "")) <= 3000 for b in boxes)
        assert "next box" in boxes[0]["hint"]["text"]
        state = {b["block_id"]: {"value": {"type": "plain_text_input",
                                           "value": b["element"].get("initial_value")}}
                 for b in boxes}
        assert render.modal_values({"blocks": d["blocks"], "state": {"values": state}}) == {
            "questions": text}
        assert [i.name for i in form_of(d).inputs] == ["questions"]


def test_an_empty_text_is_left_out_since_slack_refuses_empty_text() -> None:
    """A text object's `text` is at least 1 character (.../composition-objects/text-object):
    an empty paragraph (an optional note left blank) must not cost the whole message."""
    fake = FakeSlack()
    for message in (Message((Text("Milestone notes"), Text(""), Context("Due soon")), "x"),
                    Message((Text("", heading=True), Text("")), "x")):
        payload = render.message_payload(message)
        assert fake._message_error(payload["blocks"]) is None, payload
        assert payload["text"].strip()


def test_long_choices_are_numbered_with_a_legend_so_they_never_look_the_same() -> None:
    """A button's text is at most 75 characters: two pulse choices of 90 that differ only at
    the end would show as the same button. Numbered, with the full labels beneath."""
    head = "Family network meetings held in the locality hub with the family's own network, "
    long_a, long_b = head + "weekly", head + "monthly"
    payload = render.message_payload(Message((Text("Which helps most?"), Choices(
        "pulse.answer", (Choice(long_a, "0"), Choice(long_b, "1"), Choice("Neither", "2")))), "x"))
    assert FakeSlack()._message_error(payload["blocks"]) is None
    buttons = [e for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    texts = [e["text"]["text"] for e in buttons]
    assert len(set(texts)) == 3 and all(len(t) <= 75 for t in texts)
    assert [t.split(".")[0] for t in texts] == ["1", "2", "3"]
    [legend] = [b for b in payload["blocks"] if b["block_id"].endswith(".legend")]
    shown = plain_of([legend])
    assert f"1. {long_a}" in shown and f"2. {long_b}" in shown and "3. Neither" in shown
    # Short labels stay as they are, without a legend.
    short = render.message_payload(Message((Choices("a", (Choice("Yes", "1"), Choice("No", "0"))),), "x"))
    assert [e["text"]["text"] for e in short["blocks"][0]["elements"]] == ["Yes", "No"]
    assert len(short["blocks"]) == 1
