"""The SDK agent: each inbound Teams activity becomes one neutral event for the core."""

from __future__ import annotations

import html
import logging
import re
from contextvars import ContextVar
from typing import Any

from microsoft_agents.activity import Activity, DeliveryModes
from microsoft_agents.hosting.core import TurnContext

from adapters.teams import dialogs, render
from adapters.teams import references as refs
from adapters.teams.port import PLATFORM, TeamsPort, conversation_ref
from bot.core import SORRY, Core, HandleResult
from bot.model import (
    ActionEvent,
    ConversationRef,
    Event,
    Form,
    FormSubmitEvent,
    InstallEvent,
    MessageEvent,
    MessageRef,
    UserRef,
    text_message,
)
from bot.port import PlatformError

log = logging.getLogger("staffvoice.teams.agent")
# What the endpoint read of this request's activity before the turn (refs.seen), if it did.
SEEN: ContextVar[refs.Seen | None] = ContextVar("staffvoice_teams_seen", default=None)
# The activity as the endpoint parsed it from the request body (the SDK parsed the same body).
INBOUND: ContextVar[dict[str, Any] | None] = ContextVar("staffvoice_teams_inbound", default=None)
# The Activity model's fields as sent (camelCase), and their Python names where they differ.
_WIRE_NAMES = frozenset(f.alias or n for n, f in Activity.model_fields.items())
_PY_NAMES = frozenset(n for n, f in Activity.model_fields.items() if f.alias and f.alias != n)
# Fields the model holds as accounts (or lists of them, or of entities): None inside is dropped.
_ACCOUNTS = ("from", "recipient", "conversation")
_ACCOUNT_LISTS = ("membersAdded", "membersRemoved", "entities")
# A dialog button whose action opened no form (refused, or answered in words): where to look.
IN_THE_CHAT = "Nothing to fill in here: the answer is in your chat with staffvoice."
# The same task/fetch again (Teams resends an invoke it got no answer to within 15 s:
# MicrosoftDocs/msteams-docs#6084, microsoft/botbuilder-dotnet#5005): the first run's answer
# went to the request Teams gave up on, and nothing was said in the chat.
TAP_AGAIN = "That took too long to open. Please tap the button again."
AT_TAG = re.compile(r"<at>.*?</at>", re.S)
TAG = re.compile(r"<[^>]+>")


def user_timezone(activity: dict[str, Any]) -> str | None:
    """Teams clients send their IANA time zone in a clientInfo entity."""
    for e in activity.get("entities") or []:
        if isinstance(e, dict) and e.get("type") == "clientInfo" and e.get("timezone"):
            return str(e["timezone"])
    return None


def strip_mentions(activity: dict[str, Any]) -> tuple[str, bool]:
    """Message text without the bot's @mention (and whether the bot was mentioned)."""
    text = str(activity.get("text") or "")
    bot_id = (activity.get("recipient") or {}).get("id")
    mentioned = False
    for e in activity.get("entities") or []:
        if isinstance(e, dict) and e.get("type") == "mention":
            if (e.get("mentioned") or {}).get("id") == bot_id and e.get("text"):
                mentioned = True
                text = text.replace(str(e["text"]), " ")
    # Other mentions and any markup become plain words.
    text = AT_TAG.sub(lambda m: TAG.sub("", m.group(0)), text)
    text = html.unescape(TAG.sub(" ", text))
    return " ".join(text.split()), mentioned


def _no_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def inbound(context: TurnContext) -> dict[str, Any]:
    """The turn's activity as a dict, as the SDK's model dumps it (by alias, None left out).

    From the body the endpoint parsed (INBOUND) when that is this turn's activity: the dump
    walked the whole parsed model again, about as long as parsing it. The model keeps only its
    own fields at the top and drops None in them and in their accounts; so is this. It differs
    only in how a timestamp is written (as received, not re-formatted), which nothing here
    reads but its date and hour. Anything unusual (a field by its Python name) is dumped."""
    raw = INBOUND.get()
    act = context.activity
    if (raw is None or raw.get("id") != act.id or raw.get("type") != act.type
            or not _PY_NAMES.isdisjoint(raw)):
        return context.activity.model_dump(by_alias=True, exclude_none=True, mode="json")
    a = {k: v for k, v in raw.items() if v is not None and k in _WIRE_NAMES}
    for k in _ACCOUNTS:
        v = a.get(k)
        if isinstance(v, dict) and None in v.values():
            a[k] = _no_none(v)
    for k in _ACCOUNT_LISTS:
        v = a.get(k)
        if isinstance(v, list) and any(isinstance(i, dict) and None in i.values() for i in v):
            a[k] = [_no_none(i) if isinstance(i, dict) else i for i in v]
    return a


class TeamsAgent:
    """Implements the SDK's Agent protocol over the staffvoice core."""

    def __init__(self, core: Core, port: TeamsPort) -> None:
        self.core = core
        self.port = port

    async def on_turn(self, context: TurnContext) -> None:
        a = inbound(context)
        if a.get("type") == "invoke":
            body = await self.invoke(a)
            answer = Activity(type="invokeResponse",
                              value={"status": 200, **({"body": body} if body is not None else {})})
            if context.activity.delivery_mode == DeliveryModes.expect_replies:
                await context.send_activity(answer)  # buffered with the replies (not Teams)
            else:
                # Where the adapter's send_activities puts an invoke response, and reads it
                # back after the turn for the HTTP answer. Through TurnContext.send_activity
                # each invoke left a reference cycle (its handler chain's closures holding the
                # TurnContext, both activities and the claims, ~77 objects) for the garbage
                # collector (tests/teams/test_send_path.py).
                context.turn_state[context.adapter.INVOKE_RESPONSE_KEY] = answer
            return
        await self.handle(a)

    async def handle(self, a: dict[str, Any]) -> None:
        now = self.core.clock.now()
        kind = a.get("type")
        if kind not in ("message", "installationUpdate", "conversationUpdate"):
            return  # typing, reactions, invokes: nothing for the core
        seen = SEEN.get()
        await refs.remember(self.core.db, a, now, seen)
        if kind == "installationUpdate":
            await self._installation(a)
        elif kind == "conversationUpdate":
            await self._conversation_update(a)
        else:
            await self._message(a, seen)

    # -- who and where -------------------------------------------------------------------

    def conversation(self, a: dict[str, Any]) -> ConversationRef:
        conv = a.get("conversation") or {}
        cid = str(conv.get("id", ""))
        kind = refs.kind_of(a)
        thread = None
        if kind == "channel":
            # A mention in a channel is answered in its thread: the root post's id.
            thread = refs.thread_of(cid) or a.get("replyToId") or a.get("id")
        return conversation_ref(refs.tenant_of(a), cid, kind, str(a.get("serviceUrl", "")),
                                str((a.get("recipient") or {}).get("id", "")), thread)

    async def user(self, a: dict[str, Any], seen: refs.Seen | None = None) -> UserRef:
        sender = a.get("from") or {}
        tenant = refs.tenant_of(a)
        uid = str(sender.get("id", ""))
        if seen is not None:
            known = seen.member
        else:
            m = await refs.member(self.core.db, tenant, uid)
            known = (m.email, m.name) if m is not None else None
        email = known[0] if known is not None else None
        name = sender.get("name") or (known[1] if known is not None else None)
        if known is None and uid:
            # Activities carry no email: ask the roster once, then remember.
            try:
                info = await self.port.member_info(str(a.get("serviceUrl", "")),
                                                   str((a.get("conversation") or {}).get("id")), uid)
                refs.hold_member(self.core.db, tenant, info)
                email = (info.get("email") or info.get("userPrincipalName") or None)
                name = name or info.get("name")
            except PlatformError:
                log.warning("member lookup failed")
        return UserRef(PLATFORM, tenant, uid, email=email.lower() if email else None,
                       display_name=name, tz=user_timezone(a))

    def event_id(self, a: dict[str, Any], suffix: str = "") -> str:
        from bot.core import new_event_id

        return f"teams:{a['id']}{suffix}" if a.get("id") else new_event_id("teams")

    # -- activities ------------------------------------------------------------------------

    async def _message(self, a: dict[str, Any], seen: refs.Seen | None = None) -> None:
        user = await self.user(a, seen)
        conv = self.conversation(a)
        value = a.get("value")
        if isinstance(value, dict) and value.get(render.KIND) in ("action", "form"):
            await self._submit(a, user, conv, value)
            return
        text, mentioned = strip_mentions(a)
        if not text:
            return
        event = MessageEvent(self.event_id(a), user, conv, text=text,
                             mentioned=mentioned or not conv.is_direct)
        await self.core.handle(event, self.port)

    async def _submit(
        self, a: dict[str, Any], user: UserRef, conv: ConversationRef, value: dict[str, Any]
    ) -> None:
        # The card lives in the conversation itself, not in a channel thread's root.
        card_conv = conv if conv.is_direct else conv.in_thread(refs.thread_of(
            str((a.get("conversation") or {}).get("id", ""))))
        card = MessageRef(card_conv, str(a.get("replyToId"))) if a.get("replyToId") else None
        if value.get(render.KIND) == "action":
            event: Event = ActionEvent(
                self.event_id(a), user, conv, action_id=str(value.get(render.ACTION, "")),
                value=str(value.get(render.VALUE, "")), message=card,
            )
            await self.core.handle(event, self.port)
            return
        # A form card from before forms moved into dialogs: its inputs would stay in the
        # chat, so it is not taken; the person opens the form again.
        try:
            await self.port.send(conv, text_message(
                "That form is no longer used. Please ask for it again: it now opens in a "
                "dialog, so what you type is not left in this chat."))
        except PlatformError:
            log.warning("could not answer an old form card")

    # -- dialogs ---------------------------------------------------------------------------

    async def invoke(self, a: dict[str, Any]) -> dict[str, Any] | None:
        """The body answering an invoke: a dialog to show, a message, or None (close / done)."""
        name = a.get("name")
        if name not in (dialogs.TASK_FETCH, dialogs.TASK_SUBMIT):
            return None
        raw = a.get("value")
        value: dict[str, Any] = raw if isinstance(raw, dict) else {}
        data: dict[str, Any] = value["data"] if isinstance(value.get("data"), dict) else {}
        if name == dialogs.TASK_SUBMIT and data.get(render.KIND) == dialogs.CLOSE:
            return None  # a message's Close button (`dialogs.say`): no body closes the dialog
        if name == dialogs.TASK_FETCH and data.get(render.KIND) == "action":
            return await self.fetch_action(a, data)
        form = dialogs.unpack(data.get(dialogs.DIALOG))
        if form is None:
            return dialogs.say("That form is no longer available. Please ask for it again.")
        if name == dialogs.TASK_FETCH:
            return dialogs.show(form)
        seen = SEEN.get()
        await refs.remember(self.core.db, a, self.core.clock.now(), seen)
        user = await self.user(a, seen)
        values = dialogs.submitted_values(data)
        too_long = dialogs.over_length(form, values)
        if too_long:
            return dialogs.show(with_errors(form, values, too_long))
        # No conversation, as for a Slack modal: problems come back into the dialog, and
        # the core's replies go to the person's chat with the bot.
        event = FormSubmitEvent(self.event_id(a), user, None, form_id=form.form_id,
                                values=values, metadata=form.metadata)
        result, opened = await self._handle_capturing(event)
        if result.form_errors:
            return dialogs.show(with_errors(form, values, result.form_errors))
        if opened:
            return dialogs.show(opened[-1])  # the next step ("Before you send", the thanks)
        if result.error == "internal":
            return dialogs.say(SORRY)
        return None  # done: the dialog closes; the core's reply is in the chat

    async def _handle_capturing(self, event: ActionEvent | FormSubmitEvent) -> tuple[HandleResult, list[Form]]:
        """The core handles `event`; the forms it opens meanwhile are caught for the dialog
        being answered (adapters/teams/port.py `open_form`), not posted in the chat."""
        opened: list[Form] = []
        token = dialogs.CAPTURE.set(opened)
        try:
            return await self.core.handle(event, self.port), opened
        finally:
            dialogs.CAPTURE.reset(token)

    async def fetch_action(self, a: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """A button that opens its form in a dialog (`Choices.opens_form`, or an "Open the
        form" card standing for a button tapped as a message): its action runs as a tap
        would, and the form it opens is shown in the dialog, made now from what the server
        holds. Nothing of it is posted in the chat; what the action says instead (a route
        stopped) goes to the chat as a tap's answer would, and the dialog says where."""
        seen = SEEN.get()
        await refs.remember(self.core.db, a, self.core.clock.now(), seen)
        user = await self.user(a, seen)
        conv = self.conversation(a)
        reply_to = a.get("replyToId")
        card = MessageRef(conv, str(reply_to)) if reply_to and conv.is_direct else None
        event = ActionEvent(self.event_id(a), user, conv, action_id=str(data.get(render.ACTION, "")),
                            value=str(data.get(render.VALUE, "")), message=card)
        result, opened = await self._handle_capturing(event)
        if opened:
            return dialogs.show(opened[-1])
        if result.duplicate:
            return dialogs.say(TAP_AGAIN)
        if result.error == "internal":
            return dialogs.say(SORRY)
        return dialogs.say(IN_THE_CHAT)

    async def _installation(self, a: dict[str, Any]) -> None:
        action = str(a.get("action") or "")
        if action.startswith("remove"):  # remove, remove-upgrade
            await refs.forget(self.core.db, str((a.get("conversation") or {}).get("id", "")))
            return
        if action == "add-upgrade":
            # A new version of the app package, not a new install (microsoft/botframework-sdk
            # #6139): the reference is already refreshed (handle) and a team's roster may have
            # moved on, but nobody is greeted again.
            if not self.conversation(a).is_direct:
                await self._roster(a)
            return
        await self._installed(a)

    async def _conversation_update(self, a: dict[str, Any]) -> None:
        bot_id = (a.get("recipient") or {}).get("id")
        added = [m for m in a.get("membersAdded") or [] if isinstance(m, dict)]
        removed = [m for m in a.get("membersRemoved") or [] if isinstance(m, dict)]
        if any(m.get("id") == bot_id for m in removed):
            await refs.forget(self.core.db, str((a.get("conversation") or {}).get("id", "")))
            return
        if any(m.get("id") == bot_id for m in added):
            await self._installed(a)
        elif added and refs.kind_of(a) == "channel":
            await self._roster(a)  # new people in a team: refresh who can be reached

    async def _installed(self, a: dict[str, Any]) -> None:
        conv = self.conversation(a)
        if not conv.is_direct:
            await self._roster(a)
            conv = ConversationRef(conv.platform, conv.workspace, conv.conversation_id,
                                   None, False, conv.data)
        user = await self.user(a)
        # installationUpdate and conversationUpdate both announce one install: one welcome.
        eid = f"teams:install:{conv.conversation_id}:{a.get('timestamp', '')[:13]}"
        await self.core.handle(InstallEvent(eid, user, conv), self.port)

    async def _roster(self, a: dict[str, Any]) -> None:
        conv = self.conversation(a)
        try:
            await self.port.members(conv)
        except PlatformError:
            log.warning("team roster could not be fetched")


def with_errors(form: Form, values: dict[str, str], errors: dict[str, str]) -> Form:
    """The same form with the user's answers kept and the problems said above the inputs."""
    from dataclasses import replace

    from bot.model import Context, NumberInput, SelectInput, TextInput, ToggleInput

    inputs = []
    for inp in form.inputs:
        v = values.get(inp.name)
        if v is None:
            inputs.append(inp)
        elif isinstance(inp, TextInput | SelectInput):
            inputs.append(replace(inp, initial=v))
        elif isinstance(inp, ToggleInput):
            inputs.append(replace(inp, initial=v == "true"))
        elif isinstance(inp, NumberInput):
            inputs.append(replace(inp, initial=int(v) if v.lstrip("-").isdigit() else inp.initial))
    labels = {i.name: i.label for i in form.inputs}
    notes = tuple(
        Context(f"{labels.get(k, '')}: {v}" if k in labels else v) for k, v in errors.items()
    )
    return replace(form, intro=(*form.intro, *notes), inputs=tuple(inputs))
