"""Forms as Teams dialogs (`task/fetch`, `task/submit` invokes), as Slack uses modals.

A form never sits in the chat history as a card with inputs: the chat gets a small card with
one button, and the form opens in a dialog when it is tapped. Whatever the person types goes
to the bot in the `task/submit` invoke and never appears in the conversation, so anonymous
feedback text is not left behind. A rejected submission and a follow-up step ("Before you
send") are answered in the same dialog (`continue`); a finished one closes it.

A form opened by typing travels with the button, compressed (no server state), so a tap
works on any replica and after a restart. A form opened by a button is never packed into a
card in the chat: the button opens the dialog itself (`Choices.opens_form`, a task/fetch
button) or the card carries only the action tapped, and the form is made at the fetch. The client can alter it, as it could alter any card's data:
the core checks every form it handles (roles, the objects named in its metadata).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from contextvars import ContextVar
from typing import Any

from adapters.teams import render
from bot.model import (
    Choice,
    Context,
    Fields,
    Form,
    Input,
    NumberInput,
    SelectInput,
    Text,
    TextInput,
    ToggleInput,
)

TASK_FETCH, TASK_SUBMIT = "task/fetch", "task/submit"
DIALOG = "sv_dialog"  # key of the packed form in a button's or a dialog's submit data
CLOSE = "close"  # the kind of a message dialog's Close button (`say`): its submit closes it
# Forms the core opened while handling a task/submit: shown in that dialog, not posted.
CAPTURE: ContextVar[list[Form] | None] = ContextVar("staffvoice_teams_dialog", default=None)

_INTRO = {"T": Text, "C": Context, "F": Fields}
_INPUTS: dict[str, type[Any]] = {"t": TextInput, "s": SelectInput, "b": ToggleInput,
                                 "n": NumberInput}


def _intro(b: Text | Context | Fields) -> list[Any]:
    if isinstance(b, Text):
        return ["T", b.text, b.heading]
    if isinstance(b, Context):
        return ["C", b.text]
    return ["F", [list(p) for p in b.pairs]]


def _input(i: Input) -> list[Any]:
    if isinstance(i, TextInput):
        return ["t", i.name, i.label, i.multiline, i.max_length, i.optional, i.placeholder,
                i.initial]
    if isinstance(i, SelectInput):
        return ["s", i.name, i.label, [[o.label, o.value, o.style] for o in i.options],
                i.optional, i.initial]
    if isinstance(i, ToggleInput):
        return ["b", i.name, i.label, i.initial]
    return ["n", i.name, i.label, i.min, i.max, i.optional, i.initial]


def pack(form: Form) -> str:
    """The form as a short opaque string (JSON, deflated, base64url)."""
    raw = [form.form_id, form.title, form.submit_label, form.metadata,
           [_intro(b) for b in form.intro], [_input(i) for i in form.inputs]]
    data = zlib.compress(json.dumps(raw, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(data).decode()


def unpack(packed: object) -> Form | None:
    """The form `pack` wrote; None for anything else (tampered, truncated, not ours)."""
    if not isinstance(packed, str) or len(packed) > 200_000:
        return None
    try:
        raw = json.loads(zlib.decompress(base64.urlsafe_b64decode(packed.encode()),
                                         bufsize=1 << 16))
        form_id, title, submit_label, metadata, intro, inputs = raw
        blocks: list[Text | Context | Fields] = []
        for b in intro:
            if b[0] == "F":
                blocks.append(Fields(tuple((str(k), str(v)) for k, v in b[1])))
            else:
                blocks.append(_INTRO[b[0]](*b[1:]))
        fields: list[Input] = []
        for i in inputs:
            if i[0] == "s":
                options = tuple(Choice(str(a), str(v), s) for a, v, s in i[3])
                fields.append(SelectInput(i[1], i[2], options, *i[4:]))
            else:
                fields.append(_INPUTS[i[0]](*i[1:]))
        return Form(str(form_id), str(title), tuple(fields), tuple(blocks), str(submit_label),
                    str(metadata))
    except (ValueError, TypeError, KeyError, IndexError, zlib.error, binascii.Error):
        return None


def opener(form: Form, action: tuple[str, str] | None = None) -> dict[str, Any]:
    """The message activity left in the chat: what the form is for, and a button to open it.

    A form opened by a tapped button (`action`: its action id and value) is not packed into
    the card: the button carries that action again, and the form is made when the dialog is
    fetched (adapters/teams/agent.py `TeamsAgent.fetch_action`), so the card holds nothing
    the tapped button did not. A form an answer to a thread (the item, the change team's
    replies, the author's answers: N41) must never sit in the chat, even packed."""
    data: dict[str, Any] = {"msteams": {"type": TASK_FETCH}}
    if action is None:
        data |= {render.KIND: "dialog", DIALOG: pack(form)}
        title = form.title
    else:
        data |= {render.KIND: "action", render.ACTION: action[0], render.VALUE: action[1]}
        title = "A form to fill in"
    button = {"type": "Action.Submit", "title": "Open the form", "style": "positive",
              "data": data}
    body = [
        {**render.rich(title, weight="bolder"), "id": "b0-heading"},
        {**render.rich("Tap the button to fill it in. What you type stays in the form "
                       "and is not shown in this chat.", isSubtle=True, size="small"),
         "id": "b1-context"},
        render.container("b2-dialog", [{"type": "ActionSet", "actions": [button]}]),
    ]
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": render.CARD_VERSION, "body": body,
            "fallbackText": render.escape_text(f"{title}: open the form")}
    return {"type": "message", "summary": render.escape_text(title[:200]),
            "attachments": [{"contentType": render.CARD_CONTENT_TYPE, "content": card}]}


def show(form: Form) -> dict[str, Any]:
    """The invoke answer that shows `form` in the dialog (task/fetch, or a next step). A
    notice (the feedback thanks) has no submit button to carry the packed form, so it is
    not packed (zlib at level 9: 0.3 M instructions a feedback form)."""
    data = {render.KIND: "dialog", render.FORM: form.form_id, render.META: form.metadata}
    if not form.notice:
        data[DIALOG] = pack(form)
    card = render.card_with(form, data)
    return {"task": {"type": "continue", "value": {
        "title": form.title[:100], "width": "medium", "height": "large",
        "card": {"contentType": render.CARD_CONTENT_TYPE, "content": card}}}}


def say(text: str) -> dict[str, Any]:
    """The invoke answer that puts a short message in the dialog: a card of one line and a
    Close button, shown as any dialog step is (`continue`). Not `{"task": {"type":
    "message"}}`: Microsoft documents that for a task/submit only ("Use dialogs with bots",
    learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/task-modules/
    task-modules-bots: task/fetch is answered with a TaskInfo), and answering a task/fetch
    with it shows an empty dialog (MicrosoftDocs/msteams-docs#6740, #1732); this answer
    goes to both, a resent task/fetch included."""
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": render.CARD_VERSION,
            "body": [{**render.rich(text), "id": "b0-message"}],
            "actions": [render.submit("Close", {render.KIND: CLOSE})],
            "fallbackText": render.escape_text(text)}
    return {"task": {"type": "continue", "value": {
        "title": "staffvoice", "width": "medium", "height": "small",
        "card": {"contentType": render.CARD_CONTENT_TYPE, "content": card}}}}


def submitted_values(data: dict[str, Any]) -> dict[str, str]:
    """The inputs of a task/submit, as the core's FormSubmitEvent wants them."""
    return {
        str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in data.items() if not str(k).startswith("sv_") and k != "msteams"
    }


def over_length(form: Form, values: dict[str, str]) -> dict[str, str]:
    """Text inputs holding more than their max_length, with what to say. The card asks for at
    most that (Input.Text maxLength), but not every Teams client holds to it (AdaptiveCards
    #4621: a host let more through and sent it all), and the core may keep only that much:
    the text goes back into the dialog whole, with how much to cut, instead of being cut."""
    out: dict[str, str] = {}
    for inp in form.inputs:
        n = len(values.get(inp.name, "").strip())
        if isinstance(inp, TextInput) and n > inp.max_length:
            out[inp.name] = (f"This is {n:,} characters; it takes at most {inp.max_length:,}. "
                             f"Shorten it by {n - inp.max_length:,}: nothing was sent.")
    return out
