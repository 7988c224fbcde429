"""Neutral messages and forms to Block Kit, built with slack_sdk's models so Slack's limits are checked.

Pure functions: no I/O. User text is escaped (`&`, `<`, `>`) so it never turns into a mention,
a broadcast (`<!channel>`) or a disguised link. Long text is split into sections; a message
too big for one Slack message (50 blocks, or about 12,000 characters of text in its blocks)
goes as several (`message_payloads`), and an edit, which cannot be split, is shortened.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    HeaderBlock,
    ImageBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    OptionGroup,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.model import (
    Choice,
    Choices,
    Context,
    Fields,
    Form,
    Image,
    Input,
    LinkButton,
    Message,
    RatingScale,
    SelectInput,
    Text,
    TextInput,
    ToggleInput,
    pack,
    units,
)

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTONS_PER_ROW = 25
FIELDS_PER_SECTION = 10
OPTION_TEXT = 75
MAX_OPTIONS = 100  # per select menu, and per option group; also the most option groups
VIEW_TITLE = 24
FALLBACK_TEXT = 3900  # Slack truncates `text` beyond 40k; notifications show far less
# A button's action id is `<neutral action id>#<index>`: Slack wants them unique within a block.
ACTION_SEP = "#"
# The adapter's own buttons, never routed to the core.
LINK_ACTION = "slack.link"
FORM_ACTION = "slack.form"
FEEDBACK_ACTION = "feedback.open"
FEEDBACK_LABEL = "Give anonymous feedback"
SHORTENED = "(shortened: the full text did not fit in one Slack message)"
# The text of a message's blocks together: Slack refuses past about 12,000 characters with
# `msg_blocks_too_long`, a limit its method pages do not state (bolt-js #2509, where Slack
# answered "12,000 text characters with a buffer for block containers"; #2867 saw a refusal
# at 11,341). Counted as sent (escaped), every `text` string; kept well under.
BLOCKS_TEXT = 10_000


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup in mrkdwn and `text`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_escaped(text: str, limit: int) -> str:
    """Escape then cut, never leaving half an entity such as `&am` at the end."""
    out = escape(text)
    if len(out) <= limit:
        return out
    cut = out[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def chunks(text: str, limit: int) -> list[str]:
    """Split text so each escaped piece fits `limit`, breaking at a line end where one is near."""
    if len(escape(text)) <= limit:
        # Nearly every text: one escape of the whole, not one call per character (the loop
        # below cost 1.2 M instructions for the feedback thanks).
        return [text]
    pieces: list[str] = []
    start, used, newline = 0, 0, -1
    for i, ch in enumerate(text):
        width = len(escape(ch))
        if used + width > limit:
            if newline > start + limit // 4:
                pieces.append(text[start:newline])
                start = newline + 1
            else:
                pieces.append(text[start:i])
                start = i
            used = len(escape(text[start:i]))
            newline = -1
        if ch == "\n":
            newline = i
        used += width
    pieces.append(text[start:])
    return pieces


def mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack must not auto-link URLs or channel names in user text.
    return MarkdownTextObject(text=text, verbatim=True)


def plain(text: str, limit: int) -> PlainTextObject:
    return PlainTextObject(text=clip(text, limit) or " ", emoji=True)


def action_id(base: str, index: int) -> str:
    return f"{base}{ACTION_SEP}{index}"


def neutral_action_id(slack_action_id: str) -> str:
    """Undo `action_id`: `pulse.answer#3` -> `pulse.answer`."""
    base, sep, index = slack_action_id.rpartition(ACTION_SEP)
    return base if sep and index.isdigit() else slack_action_id


# --- messages -----------------------------------------------------------------------


def _buttons(base: str, options: Sequence[Choice], block_id: str) -> list[Block]:
    """Rows of buttons. A button's text is at most 75 characters (.../block-elements/
    button-element): when a label is longer, the buttons are numbered and a legend under them
    gives each label in full, so two long choices never look the same."""
    if any(len(o.label) > BUTTON_TEXT for o in options):
        numbered = [Choice(f"{k}. {o.label}", o.value, o.style) for k, o in enumerate(options, 1)]
        legend = " · ".join(f"{k}. {o.label}" for k, o in enumerate(options, 1))
        return [*_button_rows(base, numbered, block_id),
                ContextBlock(block_id=f"{block_id}.legend",
                             elements=[mrkdwn(clip_escaped(legend, SECTION_TEXT))])]
    return _button_rows(base, options, block_id)


def _button_rows(base: str, options: Sequence[Choice], block_id: str) -> list[Block]:
    rows: list[Block] = []
    for start in range(0, len(options), BUTTONS_PER_ROW):
        row = options[start : start + BUTTONS_PER_ROW]
        rows.append(
            ActionsBlock(
                block_id=f"{block_id}.{start // BUTTONS_PER_ROW}" if start else block_id,
                elements=[
                    ButtonElement(
                        text=plain(o.label, BUTTON_TEXT),
                        action_id=action_id(base, start + i),
                        value=o.value,
                        style=None if o.style == "default" else o.style,
                    )
                    for i, o in enumerate(row)
                ],
            )
        )
    return rows


def _text(b: Text, n: int) -> list[Block]:
    if not b.text:
        return []  # Slack refuses an empty text object ("must be more than 0 characters")
    if b.heading and len(b.text) <= HEADER_TEXT and "\n" not in b.text:
        return [HeaderBlock(block_id=f"text.{n}", text=plain(b.text, HEADER_TEXT))]
    pieces = chunks(b.text, SECTION_TEXT - 2 if b.heading else SECTION_TEXT)
    return [
        SectionBlock(
            block_id=f"text.{n}" + (f".{i}" if i else ""),
            text=mrkdwn(f"*{escape(p)}*" if b.heading else escape(p)),
        )
        for i, p in enumerate(pieces)
    ]


def _field_groups(pairs: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Pairs in sections of at most 10 fields and SECTION_TEXT characters each (a long note or
    many owners take a section of their own rather than push a message past its text limit)."""
    groups: list[list[tuple[str, str]]] = [[]]
    used = 0
    for k, v in pairs:
        size = len(clip_escaped_pair(k, v))
        if groups[-1] and (len(groups[-1]) == FIELDS_PER_SECTION or used + size > SECTION_TEXT):
            groups.append([])
            used = 0
        groups[-1].append((k, v))
        used += size
    return [g for g in groups if g]


def _fields(b: Fields, n: int) -> list[Block]:
    return [
        SectionBlock(block_id=f"fields.{n}" + (f".{i}" if i else ""),
                     fields=[mrkdwn(clip_escaped_pair(k, v)) for k, v in group])
        for i, group in enumerate(_field_groups(b.pairs))
    ]


def clip_escaped_pair(label: str, value: str) -> str:
    head = f"*{clip_escaped(label, 200)}*\n"
    return head + clip_escaped(value, FIELD_TEXT - len(head))


def _rating(b: RatingScale, n: int) -> list[Block]:
    out = _buttons(b.action_id, b.options(), f"rating.{n}")
    if b.low_label or b.high_label:
        legend = f"{b.low} ({b.low_label}) .. {b.high} ({b.high_label})"
        out.append(ContextBlock(block_id=f"legend.{n}", elements=[mrkdwn(clip_escaped(legend, SECTION_TEXT))]))
    return out


def _image(b: Image, n: int, file_id: str | None) -> list[Block]:
    alt = clip(b.alt or "image", 2000)
    title = plain(b.title, 2000) if b.title else None
    if b.url and b.url.startswith("https://") and len(b.url) <= 3000:
        return [ImageBlock(block_id=f"image.{n}", image_url=b.url, alt_text=alt, title=title)]
    if file_id:
        return [ImageBlock(block_id=f"image.{n}", slack_file={"id": file_id}, alt_text=alt, title=title)]
    # Not displayable in a block (a PNG is sent as a file message after the text): say in
    # words what it shows, so the message stands alone when the picture cannot be shown.
    return [ContextBlock(block_id=f"image.{n}",
                         elements=[mrkdwn(clip_escaped(f"[image: {b.alt}]", SECTION_TEXT))])]


def render_blocks(
    blocks: Iterable[Any], *, files: Mapping[int, str] | None = None, limit: int = MAX_MESSAGE_BLOCKS
) -> list[Block]:
    """Neutral blocks to Slack blocks; `files` maps a block's index to an uploaded image's file id."""
    out: list[Block] = []
    for n, b in enumerate(blocks):
        if isinstance(b, Text):
            out += _text(b, n)
        elif isinstance(b, Fields):
            out += _fields(b, n)
        elif isinstance(b, Choices):
            out += _buttons(b.action_id, b.options, f"choices.{n}")
        elif isinstance(b, RatingScale):
            out += _rating(b, n)
        elif isinstance(b, LinkButton):
            out.append(ActionsBlock(block_id=f"link.{n}", elements=[
                ButtonElement(text=plain(b.label, BUTTON_TEXT), url=b.url[:3000],
                              action_id=action_id(LINK_ACTION, n))]))
        elif isinstance(b, Image):
            out += _image(b, n, (files or {}).get(n))
        elif isinstance(b, Context):
            out.append(ContextBlock(block_id=f"context.{n}", elements=[mrkdwn(clip_escaped(b.text, SECTION_TEXT))]))
        elif isinstance(b, Form):
            out.append(ContextBlock(block_id=f"form.{n}", elements=[mrkdwn(clip_escaped(f"[form: {b.title}]", SECTION_TEXT))]))
    if len(out) > limit:
        out = out[: limit - 1] + [ContextBlock(block_id="shortened", elements=[mrkdwn(SHORTENED)])]
    return out


def to_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """JSON for the Web API; `to_dict` validates each block against Slack's limits."""
    return [b.to_dict() for b in blocks]


def blocks_text(node: Any) -> int:
    """Characters of every `text` string in rendered blocks (what BLOCKS_TEXT limits)."""
    if isinstance(node, list):
        return sum(blocks_text(n) for n in node)
    if not isinstance(node, dict):
        return 0
    own = len(node["text"]) if isinstance(node.get("text"), str) else 0
    return own + sum(blocks_text(v) for v in node.values() if isinstance(v, dict | list))


def message_payload(message: Message, *, files: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Arguments for chat.postMessage / chat.update: blocks plus the fallback text, shortened
    to one Slack message when it is bigger (an edit; a send uses `message_payloads`).

    The same message renders the same JSON, so the last few hundred are kept: a status card
    or a survey's next question goes to many people (the caller gets its own dict; the
    blocks inside are shared and never changed)."""
    if not files and not any(isinstance(b, Image) for b in message.blocks):  # charts: large
        try:
            return dict(_rendered(message))
        except TypeError:  # a message holding something unhashable: rendered each time
            pass
    return _payload(message, files)


def message_payloads(message: Message) -> list[dict[str, Any]]:
    """Arguments for one chat.postMessage per part: the whole message when it fits in one
    Slack message, else its blocks in order over as many messages as they need."""
    first = message_payload(message)
    if not _shortened(first["blocks"]):
        return [first]
    return [message_payload(part) for part in parts(message)]


@functools.lru_cache(maxsize=512)
def _rendered(message: Message) -> dict[str, Any]:
    return _payload(message, None)


def message_json(message: Message) -> str | None:
    """The message's `text` and `blocks` as JSON object members (no braces), for a request
    body: encoded once per distinct message, as its payload is rendered once (a card goes to
    many people). None when it is not kept (charts, something unhashable) or does not fit in
    one Slack message; then `message_payloads` says what to send."""
    if any(isinstance(b, Image) for b in message.blocks):
        return None
    try:
        return _encoded(message)
    except TypeError:
        return None


@functools.lru_cache(maxsize=512)
def _encoded(message: Message) -> str | None:
    payload = _rendered(message)
    if _shortened(payload["blocks"]):
        return None
    return json.dumps({"text": payload["text"], "blocks": payload["blocks"]})[1:-1]


def _payload(message: Message, files: Mapping[int, str] | None) -> dict[str, Any]:
    return {
        "text": clip_escaped(message.plain, FALLBACK_TEXT) or " ",
        "blocks": _within_text(to_dicts(render_blocks(message.blocks, files=files))),
        # Links and names in our text stay as typed: no unfurling, no @-name linking.
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _within_text(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks cut, with a note that says so, when their text is over BLOCKS_TEXT."""
    sizes = [blocks_text(b) for b in blocks]
    if sum(sizes) <= BLOCKS_TEXT:
        return blocks
    kept: list[dict[str, Any]] = []
    used = len(SHORTENED)
    for b, size in zip(blocks, sizes, strict=True):
        if used + size > BLOCKS_TEXT or len(kept) == MAX_MESSAGE_BLOCKS - 1:
            break
        kept.append(b)
        used += size
    return [*kept, ContextBlock(block_id="shortened", elements=[mrkdwn(SHORTENED)]).to_dict()]


def _shortened(blocks: list[dict[str, Any]]) -> bool:
    """Whether rendering had to leave something out (the last block says so)."""
    return bool(blocks) and blocks[-1].get("block_id") == "shortened"


def _pieces(b: Any) -> list[Any]:
    """A neutral block as smaller blocks that each render within one section where they can."""
    if isinstance(b, Text) and len(escape(b.text)) > SECTION_TEXT - 2:
        return [Text(p, b.heading) for p in chunks(b.text, SECTION_TEXT - 2)]
    if isinstance(b, Fields) and len(b.pairs) > 1:
        return [Fields(tuple(g)) for g in _field_groups(b.pairs)]
    return [b]


def parts(message: Message) -> list[Message]:
    """`message` as consecutive messages that each fit in one Slack message (50 blocks,
    BLOCKS_TEXT characters of text), nothing left out, buttons kept with the block above them
    (bot.model.units); each part's fallback is its own text."""
    def weigh(unit: tuple[Any, ...]) -> tuple[int, int]:
        rendered = to_dicts(render_blocks(unit, limit=10**6))
        return len(rendered), blocks_text(rendered)

    pieces = [piece for b in message.blocks for piece in _pieces(b)]
    return pack(units(pieces), weigh, (MAX_MESSAGE_BLOCKS, BLOCKS_TEXT))


def png_images(message: Message) -> list[tuple[int, Image]]:
    """The images that must be uploaded first (PNG bytes without an https URL)."""
    return [
        (n, b) for n, b in enumerate(message.blocks)
        if isinstance(b, Image) and b.png and not (b.url and b.url.startswith("https://"))
    ]


# --- forms as modals ------------------------------------------------------------------

VALUE = "value"  # the one element's action id inside each input block
# A plain_text_input takes at most 3,000 characters: Slack refuses a larger `max_length`
# ("Acceptable values for this field are between 1 and 3000, inclusive",
# https://docs.slack.dev/reference/block-kit/block-elements/plain-text-input-element), and its
# client will not submit more. A longer text input is shown as several boxes, one after the
# other (block ids `name`, `name~2`, ...), joined again on submission, so nothing is cut.
INPUT_TEXT = 3000
PART_SEP = "~"
MAX_BOXES = 10
PLACEHOLDER = 150
LABEL = 2000


def _element(inp: Input) -> Any:
    if isinstance(inp, TextInput):
        return PlainTextInputElement(
            action_id=VALUE,
            multiline=inp.multiline,
            max_length=max(1, min(inp.max_length, INPUT_TEXT)),
            placeholder=plain(inp.placeholder, PLACEHOLDER) if inp.placeholder else None,
            initial_value=inp.initial or None,
        )
    if isinstance(inp, SelectInput):
        return _select(inp)
    if isinstance(inp, ToggleInput):
        option = Option(text=plain(inp.label, OPTION_TEXT), value="true")
        return CheckboxesElement(action_id=VALUE, options=[option],
                                 initial_options=[option] if inp.initial else None)
    return NumberInputElement(
        action_id=VALUE,
        is_decimal_allowed=False,
        min_value=str(inp.min),
        max_value=str(inp.max),
        initial_value=str(inp.initial) if inp.initial is not None else None,
    )


def _select(inp: SelectInput) -> StaticSelectElement:
    """A menu of every choice: up to 100 as they are, more in groups of 100 (Slack allows
    "a maximum number of 100 options", or 100 option groups of 100 each: .../block-elements/
    select-menu-element#static_select, .../composition-objects/option-group-object), each
    group labelled with its first and last choice so a long list (400 teams) stays findable."""
    options = [Option(text=plain(o.label, OPTION_TEXT), value=o.value)
               for o in inp.options[: MAX_OPTIONS * MAX_OPTIONS]]
    initial = next((o for o, c in zip(options, inp.options, strict=False) if c.value == inp.initial), None)
    if len(options) <= MAX_OPTIONS:
        return StaticSelectElement(action_id=VALUE, options=options, initial_option=initial)
    groups = []
    for start in range(0, len(options), MAX_OPTIONS):
        chunk = inp.options[start : start + MAX_OPTIONS]
        label = f"{clip(chunk[0].label, 36)} – {clip(chunk[-1].label, 36)}"
        groups.append(OptionGroup(label=plain(label, OPTION_TEXT),
                                  options=options[start : start + MAX_OPTIONS]))
    return StaticSelectElement(action_id=VALUE, option_groups=groups, initial_option=initial)


def _input(inp: Input) -> list[InputBlock]:
    """The input block of an input; a text input longer than one Slack box gets several."""
    if isinstance(inp, TextInput) and max(inp.max_length, len(inp.initial)) > INPUT_TEXT:
        return _text_boxes(inp)
    optional = True if isinstance(inp, ToggleInput) else inp.optional
    return [InputBlock(
        block_id=inp.name,
        label=plain(inp.label, LABEL),
        element=_element(inp),
        optional=optional,
    )]


def _text_boxes(inp: TextInput) -> list[InputBlock]:
    """A text input over 3,000 characters as boxes of 3,000 each (at most MAX_BOXES, more only
    if its initial text needs them), the first labelled as the input and saying that the text
    goes on; its initial text spread over them."""
    initial = split_text(inp.initial, INPUT_TEXT) if inp.initial else []
    count = max(min(-(-inp.max_length // INPUT_TEXT), MAX_BOXES), len(initial), 1)
    out: list[InputBlock] = []
    for k in range(1, count + 1):
        part = TextInput(
            inp.name if k == 1 else f"{inp.name}{PART_SEP}{k}",
            inp.label if k == 1 else f"{clip(inp.label, 60)} (continued, box {k} of {count})",
            inp.multiline, INPUT_TEXT, inp.optional if k == 1 else True,
            inp.placeholder if k == 1 else "", initial[k - 1] if k <= len(initial) else "")
        hint = None
        if k == 1:
            hint = plain(f"Slack takes {INPUT_TEXT:,} characters in a box: a longer text "
                         f"goes on in the next box.", LABEL)
        out.append(InputBlock(block_id=part.name, label=plain(part.label, LABEL),
                              element=_element(part), optional=part.optional, hint=hint))
    return out


def split_text(text: str, size: int) -> list[str]:
    """`text` in pieces of at most `size` characters, cut at the last line end that leaves a
    piece shorter than `size` (the line end is dropped: `join_parts` puts it back) or, in a
    line too long for that, at `size` exactly."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", 0, size)
        if cut <= 0:
            pieces.append(text[:size])
            text = text[size:]
        else:
            pieces.append(text[:cut])
            text = text[cut + 1:]
    return [*pieces, text]


def join_parts(parts: Sequence[tuple[str, int]]) -> str:
    """The boxes of one text input joined again: a full box (`len == size`: its text went on
    in the next one) is joined directly, any other at a line end; empty boxes are skipped."""
    out = ""
    full = True
    for text, size in parts:
        if not text:
            continue
        out += text if full or not out else "\n" + text
        full = len(text) >= size
    return out


def modal(form: Form) -> View:
    """A modal for a form: intro blocks, one input block per input (block_id = input name;
    a long text input has more, see `_text_boxes`)."""
    inputs = [block for i in form.inputs for block in _input(i)]
    blocks = render_blocks(form.intro, limit=MAX_VIEW_BLOCKS - len(inputs))
    blocks += inputs
    return View(
        type="modal",
        callback_id=form.form_id,
        title=plain(form.title, VIEW_TITLE),
        # A notice has no submit: "submit is required when an input block is within the
        # blocks array", optional otherwise (https://docs.slack.dev/reference/views/modal-views).
        submit=plain(form.submit_label, VIEW_TITLE) if form.submit_label else None,
        close=plain(form.close_label, VIEW_TITLE),
        private_metadata=form.metadata[:3000],
        blocks=blocks,
    )


def modal_dict(form: Form) -> dict[str, Any]:
    """`modal(form)` as the JSON object Slack takes. A notice (no inputs, no submit: the
    feedback thanks) is the same for everyone it is shown to, so its rendering, validated by
    slack_sdk's models (about 1 M instructions), is kept and only copied. Nothing with an
    input is kept: a form may carry what the person wrote (the "Before you send" screen)."""
    if not form.notice:
        return modal(form).to_dict()
    return json.loads(_notice_json(form))


@functools.lru_cache(maxsize=16)
def _notice_json(form: Form) -> str:
    return json.dumps(modal(form).to_dict())


def modal_values(view: Mapping[str, Any]) -> dict[str, str]:
    """The submitted values of a modal, by input name, as strings (toggles "true"/"false")."""
    out: dict[str, str] = {}
    parts: dict[str, list[tuple[int, str, int]]] = {}
    sizes = {b.get("block_id"): _dict(b.get("element")).get("max_length")
             for b in view.get("blocks") or [] if isinstance(b, Mapping)}
    state = (view.get("state") or {}).get("values") or {}
    for block_id, actions in state.items():
        element = _dict((actions or {}).get(VALUE))
        kind = element.get("type")
        if kind == "static_select":
            value = _dict(element.get("selected_option")).get("value")
        elif kind == "checkboxes":
            value = "true" if element.get("selected_options") else "false"
        else:
            value = element.get("value")
        text = value if isinstance(value, str) else ""
        base, sep, k = str(block_id).rpartition(PART_SEP)
        size = sizes.get(block_id)
        size = size if isinstance(size, int) else INPUT_TEXT
        if sep and k.isdigit():
            parts.setdefault(base, []).append((int(k), text, size))
        else:
            out[block_id] = text
            if kind == "plain_text_input":
                parts.setdefault(str(block_id), []).append((1, text, size))
    for name, pieces in parts.items():
        if len(pieces) > 1 and name in out:
            out[name] = join_parts([(t, n) for _k, t, n in sorted(pieces)])
    return out


def _dict(value: Any) -> Mapping[str, Any]:
    """A part of a payload Slack sends as an object, or {} when it is anything else."""
    return value if isinstance(value, Mapping) else {}


def modal_errors(errors: Mapping[str, str], view: Mapping[str, Any]) -> dict[str, str]:
    """Form errors keyed by input block; a general error goes on the first input, as Slack wants."""
    inputs = [b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"]
    out: dict[str, str] = {}
    for name, text in errors.items():
        key = name if name in inputs else (inputs[0] if inputs else name)
        out[key] = clip(f"{out[key]} {text}" if key in out else text, 2000)
    return out


# --- App Home -------------------------------------------------------------------------


def home_view(blocks: Iterable[Any]) -> View:
    """The App Home tab: the features' home sections, then the anonymous-feedback button."""
    flat: list[Any] = []
    for b in blocks:
        flat.extend(b.blocks if isinstance(b, Message) else [b])
    rendered = render_blocks(flat, limit=MAX_VIEW_BLOCKS - 1)
    if any(isinstance(b, Choices) and b.action_id == FEEDBACK_ACTION for b in flat):
        return View(type="home", callback_id="staffvoice.home", blocks=rendered)
    rendered.append(
        ActionsBlock(block_id="home.feedback", elements=[
            ButtonElement(text=plain(FEEDBACK_LABEL, BUTTON_TEXT), action_id=FEEDBACK_ACTION,
                          value="home", style="primary")])
    )
    return View(type="home", callback_id="staffvoice.home", blocks=rendered)


def notice_home_view(text: str) -> View:
    """An App Home tab that only says something (to someone outside the programme)."""
    return View(type="home", callback_id="staffvoice.home",
                blocks=render_blocks([Text(text or " ")], limit=MAX_VIEW_BLOCKS))
