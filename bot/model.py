"""The neutral model: who is talking, what came in, and what goes out.

Adapters translate platform payloads to these frozen dataclasses and render outbound
messages natively. Nothing here knows about Slack or Teams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

# --- identity -----------------------------------------------------------------------


@dataclass(frozen=True)
class UserRef:
    """A user on one platform: (platform, workspace or tenant, user id)."""

    platform: str
    workspace: str
    user_id: str
    email: str | None = None
    display_name: str | None = None
    tz: str | None = None
    # A guest account of the workspace (Slack single/multi-channel guest, Teams guest): never
    # enrolled on its own, only linked when the programme lists its email.
    guest: bool = False


@dataclass(frozen=True)
class ConversationRef:
    """Where a message lives: a DM, a channel, a thread.

    `data` carries what the adapter needs to reach it again (a Teams conversation
    reference, for example) as an opaque JSON-able mapping.
    """

    platform: str
    workspace: str
    conversation_id: str
    thread_id: str | None = None
    is_direct: bool = True
    data: tuple[tuple[str, str], ...] = ()

    def in_thread(self, thread_id: str | None) -> ConversationRef:
        return ConversationRef(
            self.platform, self.workspace, self.conversation_id, thread_id, self.is_direct, self.data
        )


@dataclass(frozen=True)
class MessageRef:
    """A message already sent, so it can be edited in place or deleted."""

    conversation: ConversationRef
    message_id: str


# --- inbound events -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of every inbound event; `event_id` is stable across platform redeliveries."""

    event_id: str
    user: UserRef
    conversation: ConversationRef | None
    # Opaque token an adapter needs to open a form in reply (Slack trigger_id).
    trigger: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class MessageEvent(Event):
    """Someone wrote to the bot (DM, or a channel mention)."""

    text: str
    mentioned: bool = False


@dataclass(frozen=True)
class CommandEvent(Event):
    """A slash command (`/voice results`) or similar explicit command."""

    text: str


@dataclass(frozen=True)
class ActionEvent(Event):
    """A tap on a button or choice; `message` is the message that carried it."""

    action_id: str
    value: str
    message: MessageRef | None = None


@dataclass(frozen=True)
class FormSubmitEvent(Event):
    """A submitted form (Slack modal, Teams card inputs, console prompts)."""

    form_id: str
    values: dict[str, str]
    metadata: str = ""
    message: MessageRef | None = None


@dataclass(frozen=True)
class InstallEvent(Event):
    """The app was installed for a user or conversation; remember how to reach them."""


@dataclass(frozen=True)
class HomeOpenedEvent(Event):
    """A user opened the app's home surface (Slack App Home)."""


# --- outbound messages ----------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A paragraph. `text` is plain; adapters escape it so it never becomes markup."""

    text: str
    heading: bool = False


@dataclass(frozen=True)
class Fields:
    """Label/value pairs shown as a compact grid."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Choice:
    label: str
    value: str
    style: Literal["default", "primary", "danger"] = "default"


@dataclass(frozen=True)
class Choices:
    """One-tap buttons. A tap arrives as ActionEvent(action_id, value).

    `opens_form`: the action's handler opens a form and does nothing before it that a second
    tap could not do again: an adapter that can open the form from the button itself does so
    (Teams: a dialog fetched at the tap), so nothing is posted in the chat to open it."""

    action_id: str
    options: tuple[Choice, ...]
    opens_form: bool = False


@dataclass(frozen=True)
class RatingScale:
    """A row of numbered buttons from `low` to `high` with end labels."""

    action_id: str
    low: int
    high: int
    low_label: str = ""
    high_label: str = ""
    value_prefix: str = ""

    def options(self) -> tuple[Choice, ...]:
        return tuple(
            Choice(str(i), f"{self.value_prefix}{i}") for i in range(self.low, self.high + 1)
        )


@dataclass(frozen=True)
class LinkButton:
    label: str
    url: str


@dataclass(frozen=True)
class Image:
    """An image by https URL, or PNG bytes the adapter uploads."""

    alt: str
    url: str | None = None
    png: bytes | None = field(default=None, repr=False)
    title: str = ""


@dataclass(frozen=True)
class Context:
    """Small print under a message."""

    text: str


# --- forms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TextInput:
    name: str
    label: str
    multiline: bool = False
    max_length: int = 3000
    optional: bool = False
    placeholder: str = ""
    initial: str = ""


@dataclass(frozen=True)
class SelectInput:
    name: str
    label: str
    options: tuple[Choice, ...]
    optional: bool = False
    initial: str = ""


@dataclass(frozen=True)
class ToggleInput:
    """A yes/no checkbox; submitted as "true" or "false"."""

    name: str
    label: str
    initial: bool = False


@dataclass(frozen=True)
class NumberInput:
    name: str
    label: str
    min: int = 0
    max: int = 100
    optional: bool = False
    initial: int | None = None


Input = TextInput | SelectInput | ToggleInput | NumberInput


@dataclass(frozen=True)
class Form:
    """A form: intro blocks (plain text, context) then inputs, then a submit button.

    With no inputs and no submit label it is a notice: a screen that only says something,
    shown in the form in answer to its submission (see `notice`)."""

    form_id: str
    title: str
    inputs: tuple[Input, ...]
    intro: tuple[Text | Context | Fields, ...] = ()
    submit_label: str = "Send"
    metadata: str = ""
    close_label: str = "Cancel"

    @property
    def notice(self) -> bool:
        """Only says something: shown in the form that was just submitted, never offered in
        the chat, where the platform would keep it by name and time (docs/invariants.md N19)."""
        return not self.inputs and not self.submit_label


Block = Text | Fields | Choices | RatingScale | LinkButton | Image | Context | Form


@dataclass(frozen=True)
class Message:
    """What the bot says: blocks for rich clients and a plain-text fallback."""

    blocks: tuple[Block, ...]
    fallback: str = ""

    @property
    def plain(self) -> str:
        """Fallback, or the text of the blocks when none was given."""
        return self.fallback or plain_text(self)


def text_message(text: str, *more: Block) -> Message:
    """A message of one paragraph (plus optional blocks), fallback set."""
    return Message((Text(text), *more), fallback=text)


def plain_text(msg: Message) -> str:
    """A plain rendering of every block, used for fallbacks, console and tests."""
    out: list[str] = []
    for b in msg.blocks:
        if isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Fields):
            out.extend(f"{k}: {v}" for k, v in b.pairs)
        elif isinstance(b, Choices):
            out.append(" | ".join(o.label for o in b.options))
        elif isinstance(b, RatingScale):
            out.append(f"{b.low} ({b.low_label}) .. {b.high} ({b.high_label})")
        elif isinstance(b, LinkButton):
            out.append(f"{b.label}: {b.url}")
        elif isinstance(b, Image):
            out.append(f"[image: {b.alt}]")
        elif isinstance(b, Context):
            out.append(b.text)
        elif isinstance(b, Form):
            out.append(f"[form: {b.title}]")
    return "\n".join(out)


# --- a message too big for one platform message ------------------------------------------

# Buttons belong with the block above them (a feedback item and its Reply/Read/Done, a
# question and its answers): a message sent in parts never starts a part with them when that
# block can come along.
ATTACHED = (Choices, RatingScale, LinkButton)


def units(blocks: Iterable[Block]) -> list[tuple[Block, ...]]:
    """`blocks` in order, in the groups a message may be split between: each row of buttons
    (ATTACHED) with the block above it."""
    out: list[list[Block]] = []
    for b in blocks:
        if isinstance(b, ATTACHED) and out:
            out[-1].append(b)
        else:
            out.append([b])
    return [tuple(u) for u in out]


def pack(groups: Sequence[tuple[Block, ...]], weigh: Callable[[tuple[Block, ...]], Sequence[int]],
         budget: Sequence[int]) -> list[Message]:
    """Consecutive `groups` (from `units`) as few messages as fit, in order: a part takes
    the next group while the sum of each measure `weigh` gives (blocks, characters, bytes:
    the platform's) stays within `budget`. A group over budget on its own goes alone, for the
    adapter to cut further. Each part's fallback is its own text."""
    out: list[list[Block]] = [[]]
    used = [0] * len(budget)
    for group in groups:
        sizes = weigh(group)
        if out[-1] and any(u + s > b for u, s, b in zip(used, sizes, budget, strict=True)):
            out.append([])
            used = [0] * len(budget)
        out[-1].extend(group)
        used = [u + s for u, s in zip(used, sizes, strict=True)]
    return [Message(tuple(p)) for p in out if p]
