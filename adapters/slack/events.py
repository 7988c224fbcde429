"""Slack payloads to neutral events. Pure functions; the user is resolved by the caller.

Every event id is derived from what Slack repeats on a redelivery (HTTP retry or Socket Mode
resend), so the core's dedup drops the second copy: the envelope's event_id for events, the
user + action_ts + action_id for taps, view id + hash for submissions, trigger_id for commands.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from adapters.slack import render
from adapters.slack.port import PLATFORM
from bot.model import (
    ActionEvent,
    CommandEvent,
    ConversationRef,
    FormSubmitEvent,
    HomeOpenedEvent,
    MessageEvent,
    MessageRef,
    UserRef,
)

MAX_EVENT_ID = 255
MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s:,]*")
# Message subtypes that are a person writing; edits, joins, bot posts and the like are not.
HUMAN_SUBTYPES = frozenset({None, "", "file_share", "thread_broadcast"})


def event_id(team: str, *parts: str) -> str:
    """A stable id; hashed when Slack's pieces would not fit the column."""
    raw = ":".join(("slack", team, *parts))
    if len(raw) <= MAX_EVENT_ID:
        return raw
    return "slack:" + hashlib.sha256(raw.encode()).hexdigest()


def team_of(body: Mapping[str, Any]) -> str:
    """The workspace of any payload (events, interactivity, commands)."""
    team = body.get("team_id") or (body.get("team") or {}).get("id")
    if not team:
        team = (body.get("user") or {}).get("team_id") or (body.get("event") or {}).get("team")
    return str(team or "")


def user_of(body: Mapping[str, Any]) -> str:
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    if not user:
        user = (body.get("event") or {}).get("user")
    return str(user or "")


def unescape_user_text(text: str) -> str:
    """Slack sends `&lt;` for a typed `<`; the core wants what the person typed."""
    return render.unescape(text)


def is_person_message(event: Mapping[str, Any]) -> bool:
    """A new DM from a person (not an edit, a bot, or a channel chatter we were not asked into)."""
    return (
        event.get("channel_type") == "im"
        and (event.get("subtype") is None or isinstance(event.get("subtype"), str))
        and event.get("subtype") in HUMAN_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
    )


def message_event(body: Mapping[str, Any], user: UserRef) -> MessageEvent:
    """message.im: a person wrote to the bot in its DM."""
    ev = body["event"]
    conv = ConversationRef(PLATFORM, user.workspace, str(ev["channel"]),
                           thread_id=ev.get("thread_ts"), is_direct=True)
    return MessageEvent(event_id(user.workspace, str(body["event_id"])), user, conv,
                        text=unescape_user_text(str(ev.get("text") or "")))


def mention_event(body: Mapping[str, Any], user: UserRef) -> MessageEvent:
    """app_mention: answered in a thread under the mention."""
    ev = body["event"]
    text = MENTION.sub("", str(ev.get("text") or ""), count=1)
    conv = ConversationRef(PLATFORM, user.workspace, str(ev["channel"]),
                           thread_id=str(ev.get("thread_ts") or ev["ts"]), is_direct=False)
    return MessageEvent(event_id(user.workspace, str(body["event_id"])), user, conv,
                        text=unescape_user_text(text), mentioned=True)


def home_event(body: Mapping[str, Any], user: UserRef) -> HomeOpenedEvent:
    return HomeOpenedEvent(event_id(user.workspace, str(body["event_id"])), user, None)


def command_event(body: Mapping[str, Any], user: UserRef) -> CommandEvent:
    """A slash command. Answers go to the person's DM: a channel need not see them."""
    return CommandEvent(
        event_id(user.workspace, "command", str(body.get("trigger_id") or body.get("command_ts", ""))),
        user, None, text=unescape_user_text(str(body.get("text") or "")).strip() or "help",
        trigger=body.get("trigger_id"),
    )


def _container(body: Mapping[str, Any], team: str) -> tuple[ConversationRef | None, MessageRef | None]:
    c = body.get("container") or {}
    channel = c.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = c.get("message_ts") or (body.get("message") or {}).get("ts")
    if c.get("type") != "message" or not channel or not ts or c.get("is_ephemeral"):
        return None, None
    thread = c.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
    conv = ConversationRef(PLATFORM, team, str(channel), thread_id=thread,
                           is_direct=str(channel).startswith("D"))
    return conv, MessageRef(conv, str(ts))


def action_value(action: Mapping[str, Any]) -> str:
    if action.get("type") == "static_select":
        option = action.get("selected_option")
        return str((option if isinstance(option, dict) else {}).get("value") or "")
    return str(action.get("value") or "")


def action_event(body: Mapping[str, Any], user: UserRef) -> ActionEvent:
    """block_actions: a tap on a button in a message, the App Home or a modal."""
    action = body["actions"][0]
    slack_id = str(action["action_id"])
    conv, ref = _container(body, user.workspace)
    return ActionEvent(
        event_id(user.workspace, user.user_id, str(action.get("action_ts", "")), slack_id),
        user, conv, action_id=render.neutral_action_id(slack_id), value=action_value(action),
        message=ref, trigger=body.get("trigger_id"),
    )


def shortcut_event(body: Mapping[str, Any], user: UserRef) -> ActionEvent:
    """A global or message shortcut, routed like a button with the shortcut's callback id."""
    callback = str(body.get("callback_id") or "")
    return ActionEvent(
        event_id(user.workspace, user.user_id, str(body.get("action_ts") or body.get("trigger_id", "")),
                 callback),
        user, None, action_id=callback, value=body.get("type", "shortcut"),
        trigger=body.get("trigger_id"),
    )


def submit_event(body: Mapping[str, Any], user: UserRef) -> FormSubmitEvent:
    """view_submission: the modal's values by input name. No conversation: errors go in the modal."""
    view = body["view"]
    return FormSubmitEvent(
        event_id(user.workspace, "view", str(view.get("id", "")), str(view.get("hash", ""))),
        user, None, form_id=str(view.get("callback_id") or ""), values=render.modal_values(view),
        metadata=str(view.get("private_metadata") or ""), trigger=body.get("trigger_id"),
    )
