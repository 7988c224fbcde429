"""Neutral messages to Adaptive Cards 1.5: pure functions, no I/O.

Every neutral block becomes one top-level card element whose `id` names the block kind
("b0-text", "b1-choices", ...), so a card can be read back block by block. Text always goes
into RichTextBlock/TextRun, which Adaptive Cards never parse as markdown, and the activity
carries no mention entities: user text can neither format nor @mention anyone.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from bot.model import (
    Block,
    Choice,
    Choices,
    Context,
    Fields,
    Form,
    Image,
    Input,
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

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Teams rejects message payloads above about 28 KB; keep inline images well below that.
MAX_CARD_BYTES = 26_000
MAX_ACTIONS_PER_ROW = 6
# Keys the adapter puts into Action.Submit data; form inputs may not use them.
KIND, ACTION, VALUE, FORM, META = "sv_kind", "sv_action", "sv_value", "sv_form", "sv_meta"
MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|>~"
STYLES = {"primary": "positive", "danger": "destructive"}


def escape_text(text: str) -> str:
    """Plain text made inert for Teams' markdown and HTML (used for fallbacks and summaries)."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in out)


def run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def rich(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [run(text, **style)]}


def submit(title: str, data: dict[str, Any], style: str = "default") -> dict[str, Any]:
    action: dict[str, Any] = {"type": "Action.Submit", "title": title, "data": data}
    if style in STYLES:
        action["style"] = STYLES[style]
    return action


def choice_rows(action_id: str, options: tuple[Choice, ...],
                opens_form: bool = False) -> list[dict[str, Any]]:
    """Buttons in rows of at most six (Teams hides the rest behind a menu). Buttons of an
    action that opens a form open it in a dialog: {"msteams": {"type": "task/fetch"}} in an
    Action.Submit's data makes Teams send a task/fetch invoke, not a message, and show the
    dialog answered ("Use dialogs with bots", learn.microsoft.com/microsoftteams/platform/
    task-modules-and-cards/task-modules/task-modules-bots). The data is what any button
    carries (the action and its value): the form is made when it is fetched, never packed
    into the card (adapters/teams/agent.py `TeamsAgent.fetch_action`)."""
    fetch = {"msteams": {"type": "task/fetch"}} if opens_form else {}
    actions = [
        submit(o.label, {**fetch, KIND: "action", ACTION: action_id, VALUE: o.value}, o.style)
        for o in options
    ]
    return [
        {"type": "ActionSet", "actions": actions[i : i + MAX_ACTIONS_PER_ROW]}
        for i in range(0, len(actions), MAX_ACTIONS_PER_ROW)
    ]


def container(bid: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "Container", "id": bid, "items": items}


def render_block(block: Block, i: int) -> dict[str, Any]:
    """One neutral block as one card element."""
    if isinstance(block, Text):
        style = {"weight": "bolder", "size": "medium"} if block.heading else {}
        return {**rich(block.text, **style), "id": f"b{i}-{'heading' if block.heading else 'text'}"}
    if isinstance(block, Context):
        return {**rich(block.text, isSubtle=True, size="small"), "id": f"b{i}-context"}
    if isinstance(block, Fields):
        rows = [
            {
                "type": "ColumnSet",
                "columns": [
                    {"type": "Column", "width": "auto", "items": [rich(k, weight="bolder")]},
                    {"type": "Column", "width": "stretch", "items": [rich(v)]},
                ],
            }
            for k, v in block.pairs
        ]
        return container(f"b{i}-fields", rows)
    if isinstance(block, Choices):
        return container(f"b{i}-choices",
                         choice_rows(block.action_id, block.options, block.opens_form))
    if isinstance(block, RatingScale):
        items: list[dict[str, Any]] = []
        if block.low_label or block.high_label:
            items.append({
                "type": "ColumnSet",
                "columns": [
                    {"type": "Column", "width": "stretch",
                     "items": [rich(block.low_label, isSubtle=True, size="small")]},
                    {"type": "Column", "width": "stretch",
                     "items": [{**rich(block.high_label, isSubtle=True, size="small"),
                                "horizontalAlignment": "right"}]},
                ],
            })
        items.extend(choice_rows(block.action_id, block.options()))
        return container(f"b{i}-rating", items)
    if isinstance(block, LinkButton):
        if block.url.startswith(("https://", "http://")):
            link = {"type": "Action.OpenUrl", "title": block.label, "url": block.url}
            return container(f"b{i}-link", [{"type": "ActionSet", "actions": [link]}])
        return {**rich(f"{block.label}: {block.url}"), "id": f"b{i}-linktext"}
    if isinstance(block, Image):
        return render_image(block, i)
    if isinstance(block, Form):
        return container(f"b{i}-form", form_items(block))
    raise TypeError(f"cannot render {type(block).__name__}")


def render_image(block: Image, i: int) -> dict[str, Any]:
    url = block.url if block.url and block.url.startswith("https://") else None
    if url is None and block.png is not None:
        url = "data:image/png;base64," + base64.b64encode(block.png).decode()
    if url is None or len(url) > MAX_CARD_BYTES // 2:
        # Too big to inline (or nothing to show): say what it is instead.
        return {**rich(f"[image: {block.alt}]", isSubtle=True), "id": f"b{i}-image"}
    img: dict[str, Any] = {"type": "Image", "url": url, "altText": block.alt, "size": "stretch"}
    items: list[dict[str, Any]] = [img]
    if block.title:
        items.insert(0, rich(block.title, weight="bolder"))
    return container(f"b{i}-image", items)


def render_input(inp: Input) -> dict[str, Any]:
    """One form input with Adaptive Cards' own validation (required, lengths, ranges)."""
    if isinstance(inp, TextInput):
        el: dict[str, Any] = {
            "type": "Input.Text", "id": inp.name, "label": inp.label,
            "isMultiline": inp.multiline, "maxLength": inp.max_length,
        }
        if inp.placeholder:
            el["placeholder"] = inp.placeholder
        if inp.initial:
            el["value"] = inp.initial
    elif isinstance(inp, SelectInput):
        el = {
            "type": "Input.ChoiceSet", "id": inp.name, "label": inp.label,
            "style": "expanded" if len(inp.options) <= 4 else "compact",
            "choices": [{"title": o.label, "value": o.value} for o in inp.options],
        }
        if inp.initial:
            el["value"] = inp.initial
    elif isinstance(inp, ToggleInput):
        return {
            "type": "Input.Toggle", "id": inp.name, "title": inp.label,
            "valueOn": "true", "valueOff": "false", "value": "true" if inp.initial else "false",
        }
    elif isinstance(inp, NumberInput):
        el = {"type": "Input.Number", "id": inp.name, "label": inp.label,
              "min": inp.min, "max": inp.max}
        if inp.initial is not None:
            el["value"] = inp.initial
    else:
        raise TypeError(f"cannot render {type(inp).__name__}")
    if not inp.optional:
        el["isRequired"] = True
        el["errorMessage"] = f"Please fill in: {inp.label}"
    return el


def form_items(form: Form, data: dict[str, str] | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [rich(form.title, weight="bolder", size="medium")]
    items.extend(render_block(b, j) | {"id": f"f{j}-intro"} for j, b in enumerate(form.intro))
    items.extend(render_input(inp) for inp in form.inputs)
    data = data or {KIND: "form", FORM: form.form_id, META: form.metadata}
    if form.submit_label:  # a notice has none: the dialog's own close button closes it
        items.append({"type": "ActionSet", "actions": [submit(form.submit_label, data, "primary")]})
    return items


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card for a message."""
    body = [render_block(b, i) for i, b in enumerate(message.blocks)]
    if not body:
        body = [{**rich(message.fallback), "id": "b0-text"}]
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "fallbackText": escape_text(message.plain),
    }


def form_card(form: Form) -> dict[str, Any]:
    """The card that stands in for a modal: title, intro, inputs, submit."""
    return card(Message((form,), fallback=f"[form: {form.title}]"))


def card_with(form: Form, data: dict[str, str]) -> dict[str, Any]:
    """A form's card whose submit button sends `data` (a dialog's: see adapters/teams/dialogs)."""
    out = form_card(form)
    out["body"] = [container("b0-form", form_items(form, data))]
    return out


def activity_json(message: Message) -> dict[str, Any]:
    """The message activity that carries the card, with an inert text summary.

    The same message renders the same JSON, so the last few hundred are kept (a status card
    or a survey's next question goes to many people); the caller gets its own dict, and the
    card inside is shared and never changed. Messages with images are rendered each time."""
    if not any(isinstance(b, Image) for b in message.blocks):
        try:
            return dict(_rendered(message))
        except TypeError:  # something unhashable inside: rendered each time
            pass
    return _activity(message)


@functools.lru_cache(maxsize=512)
def _rendered(message: Message) -> dict[str, Any]:
    return _activity(message)


def _activity(message: Message) -> dict[str, Any]:
    summary = plain_text(message) or message.fallback
    return {
        "type": "message",
        "summary": escape_text(summary.splitlines()[0][:200]) if summary else "",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card(message)}],
    }


def size_of(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())
