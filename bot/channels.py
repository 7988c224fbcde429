"""Channel references in the programme file: `platform:workspace/channel`."""

from __future__ import annotations

from bot.errors import UserError
from bot.model import ConversationRef


def parse_channel(ref: str) -> ConversationRef:
    """'slack:T0123/C0456' -> a channel conversation on that platform."""
    platform, sep, rest = ref.partition(":")
    workspace, sep2, channel = rest.rpartition("/")
    if not sep or not sep2 or not platform or not channel:
        raise UserError(f"'{ref}' is not a channel reference like slack:T0123/C0456")
    return ConversationRef(platform, workspace, channel, is_direct=False)


def format_channel(conv: ConversationRef) -> str:
    return f"{conv.platform}:{conv.workspace}/{conv.conversation_id}"
