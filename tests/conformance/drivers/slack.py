"""Driver on the Slack adapter: signed, real-format Slack payloads over HTTP to a real aiohttp
server, with the fake Slack Web API (tests/fakes/slack_api.py) as the other side.

What a user "sees" is read back from the fake: the Block Kit messages in their DM, edits
applied, and the modal open for them. A form the bot offers by button (a DM message has no
trigger to open a modal with) is opened by tapping that button, as a person would.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from sqlalchemy import select

from adapters.slack import render
from adapters.slack.app import SlackAdapter
from adapters.slack.mount import SLACK, mount
from bot.channels import parse_channel
from bot.core import Core
from bot.feedback.service import settle_notices
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
from bot.people.tables import Person
from tests.conformance.drivers.base import labels_match
from tests.fakes.slack_api import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    Ephemeral,
    FakeSlack,
    OpenView,
    Posted,
    User,
)

SIGNING_SECRET = "conformance-signing-secret"
APP_ID = "A0STAFFVOICE"
# "Your app must respond within 3 seconds" or the person sees an error and the response is not
# used; events are retried (https://docs.slack.dev/interactivity/handling-user-interaction,
# https://docs.slack.dev/apis/events-api/#responding).
ACK_DEADLINE_S = 3.0


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature headers for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


# --- reading Block Kit back as plain text ----------------------------------------------


def _mrkdwn(obj: dict[str, Any] | None) -> str:
    return render.unescape((obj or {}).get("text", ""))


def plain_of(blocks: list[dict[str, Any]], fallback: str = "") -> str:
    """What a person reads in a message, in the same shape as bot.model.plain_text."""
    out: list[str] = []
    for i, b in enumerate(blocks):
        bid = str(b.get("block_id", ""))
        kind = b.get("type")
        if kind == "header":
            out.append(b["text"]["text"])
        elif kind == "section" and b.get("fields"):
            for f in b["fields"]:
                label, _, value = f["text"].partition("\n")
                out.append(f"{render.unescape(label.strip('*'))}: {render.unescape(value)}")
        elif kind == "section":
            text = _mrkdwn(b.get("text"))
            if text.startswith("*") and text.endswith("*") and bid.startswith("text."):
                text = text[1:-1]
            out.append(text)
        elif kind == "actions" and bid.startswith("rating."):
            labels = [e["text"]["text"] for e in b["elements"]]
            nxt = blocks[i + 1] if i + 1 < len(blocks) else {}
            if not str(nxt.get("block_id", "")).startswith("legend."):
                out.append(f"{labels[0]} () .. {labels[-1]} ()")
        elif kind == "actions" and bid.startswith("link."):
            out.extend(f"{e['text']['text']}: {e['url']}" for e in b["elements"])
        elif kind == "actions":
            out.append(" | ".join(e["text"]["text"] for e in b["elements"]))
        elif kind == "image":
            out.append(f"[image: {b.get('alt_text', '')}]")
        elif kind == "context":
            out.append(" ".join(_mrkdwn(e) for e in b.get("elements", [])))
    return "\n".join(out) if blocks else render.unescape(fallback)


def form_of(view: dict[str, Any]) -> Form:
    """A modal read back as the neutral form it shows."""
    intro: list[Text | Context | Fields] = []
    inputs: list[Input] = []
    for b in view.get("blocks", []):
        if b.get("type") == "input":
            base, sep, k = b["block_id"].rpartition(render.PART_SEP)
            if sep and k.isdigit():
                continue  # a long text input's next box: the same input, read as one
            inputs.append(_input_of(b))
        elif b.get("type") == "context":
            intro.append(Context(plain_of([b])))
        elif b.get("type") in ("section", "header"):
            intro.append(Text(plain_of([b]), heading=b.get("type") == "header"))
    return Form(
        form_id=view.get("callback_id", ""),
        title=view["title"]["text"],
        inputs=tuple(inputs),
        intro=tuple(intro),
        submit_label=(view.get("submit") or {}).get("text", "Send"),
        metadata=view.get("private_metadata", ""),
    )


def _input_of(block: dict[str, Any]) -> Input:
    name, label, el = block["block_id"], block["label"]["text"], block["element"]
    optional = bool(block.get("optional"))
    if el["type"] == "static_select":
        return SelectInput(name, label, tuple(Choice(o["text"]["text"], o["value"]) for o in options_of(el)),
                           optional=optional)
    if el["type"] == "checkboxes":
        return ToggleInput(name, label, initial=bool(el.get("initial_options")))
    if el["type"] == "number_input":
        return NumberInput(name, label, int(el.get("min_value", 0)), int(el.get("max_value", 100)),
                           optional=optional)
    return TextInput(name, label, multiline=bool(el.get("multiline")),
                     max_length=int(el.get("max_length", 3000)), optional=optional)


def options_of(element: dict[str, Any]) -> list[dict[str, Any]]:
    """Every option of a select menu, whether listed or in option groups."""
    if "option_groups" in element:
        return [o for g in element["option_groups"] for o in g["options"]]
    return list(element.get("options") or [])


def typed(view: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """What a person types in each box: a text longer than its box goes on in the boxes that
    follow it (block ids `name~2`, `name~3`: adapters/slack/render.py), each filled to its
    max_length before the next."""
    out = dict(values)
    for name, value in values.items():
        boxes = [b for b in view.get("blocks", []) if b.get("type") == "input"
                 and (b["block_id"] == name or b["block_id"].startswith(name + render.PART_SEP))]
        if len(boxes) < 2:
            continue
        for b in boxes:
            size = int(b["element"].get("max_length", 3000))
            out[b["block_id"]], value = value[:size], value[size:]
    return out


def too_long(view: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """What the Slack client refuses to submit: a plain_text_input holding more than its
    max_length or less than its min_length ("If the user provides more, they will receive an
    error": .../block-elements/plain-text-input-element). Nothing reaches the app."""
    errors: dict[str, str] = {}
    for b in view.get("blocks", []):
        el, v = b.get("element") or {}, values.get(b.get("block_id", ""), "")
        if b.get("type") != "input" or el.get("type") != "plain_text_input" or not v:
            continue
        if len(v) > int(el.get("max_length", 3000)) or len(v) < int(el.get("min_length", 0)):
            errors[b["block_id"]] = (f"Slack: {len(v):,} characters; this box takes "
                                     f"{el.get('min_length', 0)} to {el.get('max_length', 3000)}")
    return errors


def state_of(view: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The `view.state.values` Slack sends for a modal filled in with `values`."""
    state: dict[str, Any] = {}
    for b in view.get("blocks", []):
        if b.get("type") != "input":
            continue
        el, v = b["element"], values.get(b["block_id"], "")
        if el["type"] == "static_select":
            opt = next((o for o in options_of(el) if o["value"] == v), None)
            entry: dict[str, Any] = {"type": "static_select", "selected_option": opt}
        elif el["type"] == "checkboxes":
            entry = {"type": "checkboxes", "selected_options": el["options"][:1] if v == "true" else []}
        else:
            entry = {"type": el["type"], "value": v or None}
        state[b["block_id"]] = {el.get("action_id", "value"): entry}
    return state


class SlackDriver:
    name = "slack"

    def __init__(self, core: Core, fake: FakeSlack, env: dict[str, str] | None = None) -> None:
        self.core = core
        self.fake = fake
        self.env = env or {}
        self._ids = itertools.count(1)
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.adapter: SlackAdapter | None = None
        # Requests answered after Slack's 3 s deadline: their answers were thrown away.
        self.late_acks: list[float] = []

    async def start(self) -> None:
        await self.fake.start()
        async with self.core.db.session() as s:
            emails = (await s.execute(select(Person.email).where(Person.email.is_not(None)))).scalars()
            for email in emails:
                self.fake.add_user(email)
        app = web.Application()
        env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN,
               "SLACK_API_URL": self.fake.url, **self.env}
        status = mount(app, self.core, env)
        assert status, "slack did not mount"
        self.adapter = app[SLACK]
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/slack/events"
        self.http = aiohttp.ClientSession()
        # The adapter's start-up checks (auth.test, channel invites) are no part of a story.
        await self.adapter.drain()
        self.fake.calls.clear()

    # -- plumbing ----------------------------------------------------------------------

    def user(self, email: str) -> User:
        return self.fake.user_by_email(email) or self.fake.add_user(email)

    async def post(self, body: str, content_type: str,
                   on_answer: Callable[[str], None] | None = None) -> tuple[int, str]:
        """Post a signed request; `on_answer` sees the answer as Slack does on receipt (an
        ack's `response_action` takes effect then), before the work it left running ends."""
        assert self.http is not None and self.adapter is not None
        headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
        started = time.monotonic()
        async with self.http.post(self.url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
            status = resp.status
        took = time.monotonic() - started
        if took > ACK_DEADLINE_S:
            self.late_acks.append(took)
            text = ""  # Slack gave up waiting: a late answer (response_action, errors) is lost
        if on_answer is not None:
            on_answer(text)
        await self.adapter.drain()
        return status, text

    async def post_event(self, event: dict[str, Any]) -> int:
        body = {
            "token": "legacy-verification-token", "team_id": self.fake.team, "api_app_id": APP_ID,
            "event": event, "type": "event_callback", "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()), "is_ext_shared_channel": False,
            "authorizations": [{"enterprise_id": self.fake.enterprise, "team_id": self.fake.team,
                                "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}],
            **({"enterprise_id": self.fake.enterprise} if self.fake.enterprise else {}),
        }
        status, _ = await self.post(json.dumps(body), "application/json")
        return status

    async def user_change(self, email: str, *, deleted: bool = True) -> int:
        """An admin deactivates (or reactivates) `email`'s account: the fake says so from now
        on, and Slack sends the signed `user_change` event."""
        u = self.user(email)
        if deleted:
            self.fake.deactivate(u.id)
        else:
            self.fake.reactivate(u.id)
        return await self.post_event(self.fake.user_change_event(u.id))

    async def post_interaction(self, payload: dict[str, Any],
                               on_answer: Callable[[str], None] | None = None) -> tuple[int, str]:
        return await self.post(urlencode({"payload": json.dumps(payload)}),
                               "application/x-www-form-urlencoded", on_answer)

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._ids):06d}"

    def _enterprise(self) -> dict[str, str] | None:
        """Interactivity payloads name the workspace's Enterprise Grid org, if it has one."""
        return {"id": self.fake.enterprise, "name": "Northbridge Council"} if self.fake.enterprise else None

    def _user_json(self, u: User) -> dict[str, Any]:
        return {"id": u.id, "username": u.name, "name": u.name, "team_id": self.fake.team}

    def dm(self, email: str) -> list[Posted]:
        u = self.user(email)
        return self.fake.in_channel(self.fake.dm_of(u.id))

    # -- the driver API --------------------------------------------------------------

    async def say(self, email: str, text: str) -> None:
        u = self.user(email)
        before = (len(self.fake.messages), len(self.fake.ephemeral))
        ts = self._ts()
        status = await self.post_event({
            "type": "message", "channel": self.fake.dm_of(u.id), "user": u.id,
            "text": render.escape(text), "ts": ts, "event_ts": ts, "channel_type": "im",
            "client_msg_id": f"c{ts}", "team": self.fake.team,
        })
        assert status == 200, status
        await self._open_offered_form(email, before)

    async def mention(self, email: str, channel: str, text: str) -> int:
        u = self.user(email)
        self.fake.add_channel(channel)
        ts = self._ts()
        return await self.post_event({
            "type": "app_mention", "channel": channel, "user": u.id, "ts": ts, "event_ts": ts,
            "text": f"<@{BOT_USER}> {render.escape(text)}", "team": self.fake.team,
        })

    async def _open_offered_form(self, email: str, since: tuple[int, int]) -> None:
        """A form offered by button in answer to this step, in the DM or in an ephemeral
        message shown to this person: open it, as the person would."""
        u = self.user(email)
        dm = self.fake.dm_of(u.id)
        shown: list[Posted | Ephemeral] = [m for m in self.fake.messages[since[0]:]
                                           if m.channel == dm and not m.deleted]
        shown += [m for m in self.fake.ephemeral[since[1]:] if m.user == u.id]
        for m in shown:
            for b in m.blocks:
                for e in b.get("elements", []) if b.get("type") == "actions" else []:
                    if render.neutral_action_id(e.get("action_id", "")) == render.FORM_ACTION:
                        await self._tap(u, m, b, e)
                        return

    async def tap(self, email: str, label: str) -> None:
        """Tap the newest button labelled `label` in the DM, or else in an ephemeral message
        still shown to the person (their session goes on)."""
        u = self.user(email)
        before = (len(self.fake.messages), len(self.fake.ephemeral))
        shown: list[Posted | Ephemeral] = [*self.fake.ephemeral_for(u.id), *self.dm(email)]
        for m in reversed(shown):
            for b in m.blocks:
                if b.get("type") != "actions":
                    continue
                for e in b["elements"]:
                    if e.get("type") == "button" and labels_match(e["text"]["text"], label):
                        await self._tap(u, m, b, e)
                        await self._open_offered_form(email, before)
                        return
        raise AssertionError(f"{email} has no choice labelled {label!r}")

    async def _tap(self, u: User, m: Posted | Ephemeral, block: dict[str, Any],
                   element: dict[str, Any]) -> None:
        ephemeral = isinstance(m, Ephemeral)
        payload = {
            "type": "block_actions", "user": self._user_json(u), "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": m.ts, "channel_id": m.channel,
                          "is_ephemeral": ephemeral},
            "trigger_id": self.fake.new_trigger(u.id),
            "team": {"id": self.fake.team, "domain": "northbridge"},
            "enterprise": self._enterprise(), "is_enterprise_install": False,
            "channel": {"id": m.channel, "name": "directmessage"},
            # A tap in an ephemeral message carries no `message`: Slack kept none to send.
            **({} if ephemeral else {"message": {
                "type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": m.ts,
                "text": m.text, "blocks": m.blocks}}),
            "state": {"values": {}},
            "response_url": self.fake.new_response_url(u.id, m.channel),
            "actions": [{
                "action_id": element["action_id"], "block_id": block.get("block_id", ""),
                "text": element["text"], "value": element.get("value", ""), "type": "button",
                "action_ts": f"{time.time():.6f}",
            }],
        }
        status, _ = await self.post_interaction(payload)
        assert status == 200, status

    def form(self, email: str) -> Form | None:
        opened = self.fake.open_view(self.user(email).id)
        return form_of(opened.view) if opened else None

    async def submit(self, email: str, values: dict[str, str]) -> dict[str, str] | None:
        u = self.user(email)
        opened = self.fake.open_view(u.id)
        assert opened is not None, f"{email} has no open form"
        values = typed(opened.view, values)
        refused = too_long(opened.view, values)
        if refused:
            return refused  # the client says so in the modal; the app hears nothing
        view = {**opened.view, "id": opened.id, "hash": opened.hash, "team_id": self.fake.team,
                "state": {"values": state_of(opened.view, values)}, "app_id": APP_ID,
                "bot_id": BOT_ID, "root_view_id": opened.id, "previous_view_id": None}
        payload = {
            "type": "view_submission", "team": {"id": self.fake.team, "domain": "northbridge"},
            "user": self._user_json(u), "api_app_id": APP_ID, "token": "legacy-verification-token",
            "trigger_id": self.fake.new_trigger(u.id, "view_submission"), "view": view,
            "response_urls": [], "is_enterprise_install": False, "enterprise": self._enterprise(),
        }
        errors: list[dict[str, str]] = []

        def apply(text: str) -> None:
            answer = json.loads(text) if text.strip() else {}
            # The ack decides what the modal does next (https://docs.slack.dev/surfaces/modals:
            # "response_action": errors | update | push | clear; an empty ack closes it).
            action = answer.get("response_action")
            if action == "errors":
                # "errors": keyed by the block_id of an input block of the view; Slack shows
                # each under its input and has nowhere to show any other
                # (docs.slack.dev/surfaces/modals, "Displaying errors in views").
                inputs = {b.get("block_id") for b in opened.view.get("blocks", [])
                          if b.get("type") == "input"}
                assert set(answer["errors"]) <= inputs, f"errors for blocks that are not inputs: {answer}"
                errors.append(dict(answer["errors"]))
            elif action == "update":
                error = self.fake._check_view(answer.get("view"), "modal")
                assert error is None, f"Slack refuses this view: {error}"
                opened.view, opened.hash = answer["view"], f"{time.time():.6f}.{opened.id}"
            elif action == "push":
                error = self.fake._check_view(answer.get("view"), "modal")
                assert error is None, f"Slack refuses this view: {error}"
                vid = f"V{next(self._ids):08d}P"
                self.fake.views[vid] = OpenView(vid, f"{time.time():.6f}.{vid}", u.id, answer["view"])
            elif action == "clear":
                for vid in [v.id for v in self.fake.views.values() if v.user == u.id]:
                    self.fake.close_view(vid)
            else:
                self.fake.close_view(opened.id)

        status, _ = await self.post_interaction(payload, apply)
        assert status == 200, status
        await settle_notices()  # a reply's notice to its author, sent in the background
        return errors[0] if errors else None

    async def shortcut(self, email: str, callback_id: str) -> None:
        u = self.user(email)
        status, _ = await self.post_interaction({
            "type": "shortcut", "callback_id": callback_id, "trigger_id": self.fake.new_trigger(u.id),
            "user": self._user_json(u), "team": {"id": self.fake.team, "domain": "northbridge"},
            "action_ts": f"{time.time():.6f}", "token": "legacy-verification-token",
            "is_enterprise_install": False, "enterprise": self._enterprise(),
        })
        assert status == 200, status

    async def command(self, email: str, text: str, command: str = "/voice") -> tuple[int, str]:
        u = self.user(email)
        body = urlencode({
            "token": "legacy-verification-token", "team_id": self.fake.team, "team_domain": "northbridge",
            "channel_id": "C0GENERAL", "channel_name": "general", "user_id": u.id, "user_name": u.name,
            "command": command, "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
            **({"enterprise_id": self.fake.enterprise} if self.fake.enterprise else {}),
            "response_url": self.fake.new_response_url(u.id, "C0GENERAL"),
            "trigger_id": self.fake.new_trigger(u.id),
        })
        return await self.post(body, "application/x-www-form-urlencoded")

    async def open_home(self, email: str) -> dict[str, Any] | None:
        u = self.user(email)
        ts = self._ts()
        await self.post_event({"type": "app_home_opened", "user": u.id, "channel": self.fake.dm_of(u.id),
                               "tab": "home", "event_ts": ts})
        return self.fake.homes.get(u.id)

    def seen(self, email: str) -> list[str]:
        """What the DM keeps (Slack's history of it, exports included)."""
        return [self._plain(m) for m in self.dm(email)]

    def shown_ephemerally(self, email: str) -> list[str]:
        """What the person was shown for a moment and Slack kept nowhere."""
        return [plain_of(m.blocks, m.text) for m in self.fake.ephemeral_for(self.user(email).id)]

    def _plain(self, m: Posted) -> str:
        if m.files:  # a file message: the person sees the file (an image shows inline)
            names = ", ".join(str(self.fake.files[f].get("title") or "file") for f in m.files)
            return "\n".join(x for x in (render.unescape(m.text), f"[file: {names}]") if x)
        return plain_of(m.blocks, m.text)

    def channel(self, ref: str) -> list[str]:
        conv = parse_channel(ref)
        return [self._plain(m) for m in self.fake.in_channel(conv.conversation_id)]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.fake.close()


async def make(core: Core) -> SlackDriver:
    # A realistic cap so a burst meets 429 + Retry-After rather than an unlimited API.
    driver = SlackDriver(core, FakeSlack(limits={"chat.postMessage": 100}))
    await driver.start()
    return driver
