"""TeamsPort: the core's port, spoken through the Bot Connector with stored references."""

from __future__ import annotations

import functools
import json
import logging
import re
from itertools import accumulate
from typing import Any

from microsoft_agents.activity import (
    Activity,
    ConversationParameters,
)
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

from adapters.teams import dialogs, render
from adapters.teams import references as refs
from adapters.teams.connector import ChatGone, ConnectorPool, send_activity
from bot.clock import Clock
from bot.model import (
    ActionEvent,
    Block,
    ConversationRef,
    Event,
    Form,
    FormSubmitEvent,
    Image,
    Message,
    MessageRef,
    Text,
    UserRef,
    pack,
    units,
)
from bot.port import PlatformError, Unreachable, parse_audience_ref
from storage.db import Database

log = logging.getLogger("staffvoice.teams.port")
PLATFORM = "teams"
MEMBERS_PAGE = 100
# "Format your bot messages" (learn.microsoft.com/microsoftteams/platform/bots/how-to/
# format-your-bot-messages): a message over the size limit is refused 413 MessageSizeTooBig.
# The documented figure has moved (28, 40, 100 KB); a 28,360-byte card was refused in a real
# tenant, so the whole activity, in bytes as sent, stays at or under this.
MAX_ACTIVITY_BYTES = 28_000
# The same page now says "40 KB ... the entire message payload encoded as UTF-16 and doesn't
# include Base64 encoded images": two bytes a character, so long plain text meets this one
# first (21,000 letters are 42 KB). A message stays within both.
MAX_ACTIVITY_UTF16 = 40_000
_BASE64_IMAGE = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


@functools.lru_cache(maxsize=512)
def _wire_size(message: Message) -> tuple[int, int]:
    payload = render.activity_json(message)
    return wire_bytes(payload), utf16_bytes(payload)


def utf16_bytes(payload: dict[str, Any]) -> int:
    """An activity's size as the 40 KB rule counts it: UTF-16, base64 images left out."""
    text = _BASE64_IMAGE.sub("", json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return len(text.encode("utf-16-le"))


def wire_bytes(payload: dict[str, Any]) -> int:
    """Bytes of an activity as sent (connector.send_activity): encoded by aiohttp's json.dumps
    (ASCII escapes, so a typographic quote costs six bytes, not one)."""
    return len(json.dumps(payload))


def _cut(text: Text) -> tuple[Text, Text] | None:
    """A paragraph in two: between lines if one ends in the first half's second half, else
    between words, else in the middle."""
    s = text.text
    if len(s) < 2:
        return None
    mid = len(s) // 2
    cut = next((c for c in (s.rfind("\n", 0, mid), s.rfind(" ", 0, mid)) if c > len(s) // 4), mid)
    return Text(s[:cut].rstrip(), text.heading), Text(s[cut:].lstrip(), text.heading)


def _halves(message: Message) -> list[Message]:
    """A message cut in two between groups (bot.model.units: buttons stay with the block
    above them), near the middle; one group alone is cut in its paragraph, the buttons going
    with the second half."""
    groups = units(message.blocks)
    if len(groups) > 1:
        ends = list(accumulate(len(g) for g in groups[:-1]))  # blocks before each cut
        k = next((i for i, n in enumerate(ends, 1) if n >= len(message.blocks) / 2), len(ends))
        return [Message(tuple(b for g in groups[:k] for b in g)),
                Message(tuple(b for g in groups[k:] for b in g))]
    first, *rest = groups[0] if groups else (None,)
    cut = _cut(first) if isinstance(first, Text) else None
    if cut is None:
        return [message]
    return [Message((cut[0],)), Message((cut[1], *rest))]


def conversation_ref(
    tenant: str, conversation_id: str, kind: str, service_url: str, bot_id: str = "",
    thread_id: str | None = None,
) -> ConversationRef:
    data = (("serviceUrl", service_url), ("kind", kind), ("botId", bot_id))
    return ConversationRef(
        PLATFORM, tenant, refs.base_conversation_id(conversation_id), thread_id,
        is_direct=kind == "personal", data=data,
    )


def _team_ref(audience: str) -> ConversationRef:
    a = parse_audience_ref(audience)
    if a.platform != PLATFORM or a.kind != "team":
        raise PlatformError(f"teams: '{audience}' is not teams:<tenant>/team:<id>")
    return ConversationRef(PLATFORM, a.workspace, refs.base_conversation_id(a.id), is_direct=False)


def wire_id(conv: ConversationRef) -> str:
    """The id to post to: a channel thread is addressed as 'channel;messageid=root'."""
    if conv.thread_id:
        return f"{conv.conversation_id};messageid={conv.thread_id}"
    return conv.conversation_id


MAX_MOVED = 10_000  # chats created anew that one process remembers (N15: never stored)


class TeamsPort:
    """Implements bot.port.Port for Microsoft Teams.

    No keyed sends (`send_keyed`/`find_sent`): the Bot Connector takes no idempotency key and
    cannot be asked what a conversation holds (reading chat history needs Microsoft Graph
    application permissions a council would rarely grant). So a broadcast DM whose outcome is
    unknown after a crash or a timeout is recorded as failed, never resent: at most once.
    """

    platform = PLATFORM

    def __init__(self, db: Database, pool: ConnectorPool, clock: Clock, app_id: str = "") -> None:
        self.db = db
        self.pool = pool
        self.clock = clock
        self.app_id = app_id
        # Personal chats Teams no longer knew, created anew here: old id -> the new chat.
        self._moved: dict[str, ConversationRef] = {}

    def app_refused(self) -> str | None:
        """bot.port.RefusalAware: why the Bot Connector refuses the bot's token now, if so."""
        return self.pool.refused()

    async def _service_url(self, conv: ConversationRef) -> str:
        url = dict(conv.data).get("serviceUrl")
        if url:
            return url
        row = await refs.conversation(self.db, conv.conversation_id)
        if row is None:
            row = await refs.any_in_tenant(self.db, conv.workspace)
        if row is None:
            raise Unreachable("no stored Teams conversation reference for this tenant")
        return row.service_url

    async def _post(self, conv: ConversationRef, payload: dict[str, Any]) -> MessageRef:
        url = await self._service_url(conv)
        target = wire_id(conv)

        async def op(c: TeamsConnectorClient) -> str:
            # Our payload as it is: the SDK's send validated it into its Activity model and
            # dumped it back to the same dict before encoding it (connector.send_activity).
            return await send_activity(c, target, payload)

        return MessageRef(conv, await self.pool.call(url, op, "send"))

    def too_big(self, message: Message, payload: dict[str, Any] | None = None) -> str | None:
        """bot.port.SizeLimited: why `message` cannot go as one Teams message, if it cannot."""
        size, utf16 = ((wire_bytes(payload), utf16_bytes(payload)) if payload is not None
                       else self._size(message))
        if size <= MAX_ACTIVITY_BYTES and utf16 <= MAX_ACTIVITY_UTF16:
            return None
        if size <= MAX_ACTIVITY_BYTES:
            return (f"As a Teams message this would be {utf16:,} bytes as Teams counts them (two "
                    f"for each character); Teams refuses messages over about "
                    f"{MAX_ACTIVITY_UTF16:,}. Shorten the text by about "
                    f"{(utf16 - MAX_ACTIVITY_UTF16) // 2 + 1:,} characters or link to the full story.")
        return (f"As a Teams message this would be {size:,} bytes; Teams refuses messages over "
                f"about {MAX_ACTIVITY_BYTES:,} bytes. Shorten the text by about "
                f"{size - MAX_ACTIVITY_BYTES:,} bytes (letters are one byte; typographic "
                "quotes, dashes and accented letters count up to six) or link to the full story.")

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        """Post a message; one too big for Teams goes as several, in order (the first's ref).

        A personal chat the service no longer knows (404 ConversationNotFound: ChatGone) is
        created again once and the message goes there; Unreachable only if that fails too.
        Nothing is written for it: the send may be a quiet one to an anonymous author (N15:
        no row naming them changes after a reply), and the port cannot tell. This process
        sends to the old id in the new chat from then on; another process, or this one after
        a restart, creates it once more the first time (the new chat is stored the next time
        the person writes to the bot, as every chat is)."""
        stored = conversation
        conversation = self._moved.get(stored.conversation_id, stored)
        try:
            return await self._send(conversation, message)
        except ChatGone:
            if not conversation.is_direct or conversation.thread_id:
                raise
            # From the stored chat, whose person is known, even when the one created anew
            # is the one gone now.
            fresh = await self._recreate(stored)
        try:
            return await self._send(fresh, message)
        except ChatGone as e:
            raise Unreachable(f"{e}, and again in a chat created anew") from e

    async def _recreate(self, gone: ConversationRef) -> ConversationRef:
        """A personal chat created anew for the person of `gone` (whose send was refused 404
        ConversationNotFound); Unreachable if it cannot be."""
        row = await refs.conversation(self.db, gone.conversation_id)
        if row is None or not row.user_id:
            raise Unreachable("send: ConversationNotFound: the chat is gone, and whose it was "
                              "is not stored")
        log.info("teams personal chat not found; creating it again")
        fresh = await self._create_personal(UserRef(PLATFORM, gone.workspace, row.user_id),
                                            remember=False)
        if fresh.conversation_id != gone.conversation_id:
            self._moved.pop(gone.conversation_id, None)
            if len(self._moved) >= MAX_MOVED:  # the oldest first; it is created again if needed
                del self._moved[next(iter(self._moved))]
            self._moved[gone.conversation_id] = fresh
        return fresh

    async def _send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        # Measured through `_size`, kept per message: a question card or a status card goes to
        # many people, and its JSON was encoded again for each send only to be counted.
        if self.too_big(message) is None:
            return await self._post(conversation, render.activity_json(message))
        parts = self.parts(message)
        first = await self._post(conversation, render.activity_json(parts[0]))
        for part in parts[1:]:
            await self._post(conversation, render.activity_json(part))
        return first

    def parts(self, message: Message) -> list[Message]:
        """`message` as consecutive messages that each fit in one Teams activity, nothing left
        out, buttons kept with the block above them (bot.model.units, as Slack's parts): as
        many groups to a part as their bytes allow, a part still too big cut in halves."""
        base = _wire_size(Message((Text("."),)))  # an activity's own bytes, counted once

        def weigh(group: tuple[Block, ...]) -> tuple[int, int]:
            size = self._size(Message(group))
            return max(0, size[0] - base[0]), max(0, size[1] - base[1])

        packed = pack(units(message.blocks), weigh,
                      (MAX_ACTIVITY_BYTES - base[0], MAX_ACTIVITY_UTF16 - base[1]))
        log.info("message split to fit Teams' size limit")
        return [p for part in packed for p in self._fitting(part)]

    def _size(self, message: Message) -> tuple[int, int]:
        """Bytes as sent, and as the UTF-16 rule counts them."""
        if not any(isinstance(b, Image) for b in message.blocks):  # charts: large, each time
            try:
                return _wire_size(message)
            except TypeError:  # something unhashable inside
                pass
        payload = render.activity_json(message)
        return wire_bytes(payload), utf16_bytes(payload)

    def _fitting(self, message: Message, depth: int = 0) -> list[Message]:
        if self.too_big(message) is None:
            return [message]
        halves = _halves(message)
        if len(halves) == 1 or depth > 12:
            raise PlatformError("message too large for Teams and cannot be split")
        return [p for h in halves for p in self._fitting(h, depth + 1)]

    async def update(self, ref: MessageRef, message: Message) -> None:
        problem = self.too_big(message)
        if problem:
            raise PlatformError("update too large for Teams")  # an edit cannot be split
        url = await self._service_url(ref.conversation)
        activity = Activity.model_validate({**render.activity_json(message), "id": ref.message_id})
        target = wire_id(ref.conversation)

        async def op(c: TeamsConnectorClient) -> Any:
            return await c.conversations.update_activity(target, ref.message_id, activity)

        await self.pool.call(url, op, "update")

    async def delete(self, ref: MessageRef) -> None:
        url = await self._service_url(ref.conversation)
        target = wire_id(ref.conversation)

        async def op(c: TeamsConnectorClient) -> Any:
            return await c.conversations.delete_activity(target, ref.message_id)

        await self.pool.call(url, op, "delete")

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        """The personal chat: stored, or created (403 if the user has not installed the app).
        A chat created is stored for later sends unless `remember` is False (the reference
        returned carries its service URL, so sending to it needs no stored row)."""
        row = await refs.personal(self.db, user.workspace, user.user_id)
        if row is not None and row.installed:
            bot = (row.reference.get("bot") or {}).get("id", "")
            return conversation_ref(row.tenant_id, row.conversation_id, "personal",
                                    row.service_url, bot)
        return await self._create_personal(user, remember=remember)

    async def _create_personal(self, user: UserRef, *, remember: bool) -> ConversationRef:
        """createConversation for a 1:1 chat with `user` ("Send proactive messages", Create
        the conversation); stored unless `remember` is False."""
        anchor = await refs.any_in_tenant(self.db, user.workspace)
        if anchor is None:
            raise Unreachable("the app is not installed anywhere in this tenant")
        bot_id = (anchor.reference.get("bot") or {}).get("id") or f"28:{self.app_id}"
        params = ConversationParameters.model_validate({
            "isGroup": False,
            "bot": {"id": bot_id},
            "members": [{"id": user.user_id}],
            "tenantId": user.workspace,
            "channelData": {"tenant": {"id": user.workspace}},
        })

        async def op(c: TeamsConnectorClient) -> Any:
            return await c.conversations.create_conversation(params)

        res = await self.pool.call(anchor.service_url, op, "create conversation")
        if not remember:
            return conversation_ref(user.workspace, str(res.id), "personal", anchor.service_url,
                                    bot_id)
        now = self.clock.now()
        await refs.remember(self.db, {
            "conversation": {"id": res.id, "conversationType": "personal",
                             "tenantId": user.workspace},
            "serviceUrl": anchor.service_url,
            "recipient": {"id": bot_id},
            "from": {"id": user.user_id},
            "channelId": "msteams",
        }, now)
        return conversation_ref(user.workspace, str(res.id), "personal", anchor.service_url, bot_id)

    async def open_form(self, event: Event, form: Form) -> None:
        """Teams has no modals: forms open in a dialog (see adapters/teams/dialogs).

        In answer to a dialog's own submission (a "Before you send" check), or to a button that
        fetches its dialog (`Choices.opens_form`), the form is shown in that dialog. Otherwise the person's chat with the bot gets a card with a
        button that opens it: never a shared conversation, since forms can carry anonymous
        feedback, and never the inputs themselves, so nothing typed stays in the chat."""
        captured = dialogs.CAPTURE.get()
        if captured is not None and (
                isinstance(event, FormSubmitEvent) and event.conversation is None
                or isinstance(event, ActionEvent)):  # a task/fetch button (agent.fetch_action)
            captured.append(form)
            return
        if form.notice:
            # Only in the dialog just submitted: a card in the chat would leave the notice's
            # time there, by name (docs/invariants.md N19). The log line names no form: it is
            # written in the second a feedback item was stored (N24).
            log.info("teams notice not shown outside its dialog")
            return
        conv = event.conversation
        if conv is None or not conv.is_direct:
            conv = await self.open_dm(event.user)
        # A button tapped as a message (a card from before its action opened dialogs): the
        # card names the action again, never the form (N41: an answer form holds the thread).
        action = (event.action_id, event.value) if isinstance(event, ActionEvent) else None
        await self._post(conv, dialogs.opener(form, action))

    async def find_user(self, email: str) -> UserRef | None:
        """A Teams account with this email, from rosters and conversations seen so far."""
        m = await refs.member_by_email(self.db, email)
        if m is None:
            return None
        return UserRef(PLATFORM, m.tenant_id, m.user_id, email=m.email, display_name=m.name)

    async def members(self, team: ConversationRef | str) -> list[UserRef]:
        """Everyone in a team (or group chat), page by page; also remembered for lookups.

        Also the optional `bot.port.MemberLister`: `team` may be a broadcast audience
        'teams:<tenant id>/team:<team id>' (a team's id is its General channel's id).
        """
        if isinstance(team, str):
            team = _team_ref(team)
        url = await self._service_url(team)
        row = await refs.conversation(self.db, team.conversation_id)
        target = (row.team_id if row is not None and row.team_id else None) or team.conversation_id
        out: list[UserRef] = []
        token: str | None = None
        now = self.clock.now()
        while True:
            async def op(c: TeamsConnectorClient, token: str | None = token) -> Any:
                return await c.conversations.get_conversation_paged_members(
                    target, MEMBERS_PAGE, token
                )

            page = await self.pool.call(url, op, "paged members")
            for m in page.members or []:
                acct = m.model_dump(by_alias=True, exclude_none=True)
                await refs.remember_member(self.db, team.workspace, acct, now, team_id=target)
                email = acct.get("email") or acct.get("userPrincipalName")
                out.append(UserRef(PLATFORM, team.workspace, str(acct["id"]),
                                   email=str(email).lower() if email else None,
                                   display_name=acct.get("name")))
            token = page.continuation_token
            if not token:
                return out

    async def member_info(self, service_url: str, conversation_id: str, user_id: str) -> dict[str, Any]:
        """One member's profile (email, name) from the conversation roster."""
        async def op(c: TeamsConnectorClient) -> Any:
            return await c.get_conversation_member(refs.base_conversation_id(conversation_id), user_id)

        acct = await self.pool.call(service_url, op, "member")
        return dict(acct.model_dump(by_alias=True, exclude_none=True))
