"""Neutral messages to plain numbered text."""

from __future__ import annotations

from dataclasses import dataclass

from bot.model import (
    Choices,
    Context,
    Fields,
    Form,
    Image,
    LinkButton,
    Message,
    RatingScale,
    Text,
)


@dataclass(frozen=True)
class Tap:
    """What typing a number means: this action with this value."""

    label: str
    action_id: str
    value: str


def render(message: Message) -> tuple[str, list[Tap]]:
    """The text to print and the numbered choices in it."""
    lines: list[str] = []
    taps: list[Tap] = []
    for b in message.blocks:
        if isinstance(b, Text):
            lines.append(b.text.upper() if b.heading else b.text)
        elif isinstance(b, Fields):
            lines.extend(f"  {k}: {v}" for k, v in b.pairs)
        elif isinstance(b, Choices | RatingScale):
            opts = b.options if isinstance(b, Choices) else b.options()
            parts = []
            for o in opts:
                taps.append(Tap(o.label, b.action_id, o.value))
                parts.append(f"[{len(taps)}] {o.label}")
            line = "  " + "  ".join(parts)
            if isinstance(b, RatingScale) and (b.low_label or b.high_label):
                line += f"   ({b.low} = {b.low_label}, {b.high} = {b.high_label})"
            lines.append(line)
        elif isinstance(b, LinkButton):
            lines.append(f"  {b.label}: {b.url}")
        elif isinstance(b, Image):
            lines.append(f"  [image: {b.alt}]" + (f" {b.url}" if b.url else ""))
        elif isinstance(b, Context):
            lines.append(f"  ({b.text})")
        elif isinstance(b, Form):
            lines.append(f"  [form: {b.title}]")
    if not lines:
        lines.append(message.plain)
    return "\n".join(lines), taps
