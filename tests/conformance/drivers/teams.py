"""Driver on the Teams adapter: real-format activities, JWT-signed, posted to /api/messages of
a real aiohttp server, with replies read back from a local fake Bot Connector service."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import select

from adapters.teams import dialogs, render
from adapters.teams.connector import ConnectorPool
from adapters.teams.mount import mount
from bot.core import Core
from bot.feedback.service import settle_notices
from bot.model import (
    Choice,
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
from tests.fakes.teams_connector import (
    TASK_FETCH,
    TASK_SUBMIT,
    FakeConnector,
    FakeTokens,
    Posted,
    invoke_problem,
)

TEAM_ID = "19:team-northbridge@thread.tacv2"
CHANNEL_ID = TEAM_ID  # the General channel shares the team's id


def dialog_button(activity: dict[str, Any]) -> dict[str, Any] | None:
    """The card's button that opens a dialog (Action.Submit with msteams task/fetch), if any."""
    card = card_of(activity)
    for el in (card or {}).get("body", []):
        for act in _actions(el):
            if ((act.get("data") or {}).get("msteams") or {}).get("type") == TASK_FETCH:
                return act
    return None


def packed_forms(activity: dict[str, Any]) -> str:
    """What a card's buttons carry of a form (dialogs.pack, deflated but not sealed), as
    lines after the card's own text; "" if nothing."""
    card = card_of(activity)
    out: list[str] = []
    for el in (card or {}).get("body", []):
        for act in _actions(el):
            form = dialogs.unpack((act.get("data") or {}).get(dialogs.DIALOG))
            if form is not None:
                out.extend([form.title, *(getattr(b, "text", "") for b in form.intro)])
    return "".join(f"\n{line}" for line in out)


def _runs(el: dict[str, Any]) -> str:
    return "".join(i.get("text", "") for i in el.get("inlines", []))


def _texts(el: dict[str, Any]) -> list[str]:
    """Every TextRun text inside an element, in order."""
    if el.get("type") == "RichTextBlock":
        return [_runs(el)]
    out: list[str] = []
    for child in el.get("items", []) + el.get("columns", []):
        out.extend(_texts(child))
    return out


def _actions(el: dict[str, Any]) -> list[dict[str, Any]]:
    if el.get("type") == "ActionSet":
        return list(el.get("actions", []))
    out: list[dict[str, Any]] = []
    for child in el.get("items", []) + el.get("columns", []):
        out.extend(_actions(child))
    return out


def card_of(activity: dict[str, Any]) -> dict[str, Any] | None:
    for att in activity.get("attachments") or []:
        if att.get("contentType") == render.CARD_CONTENT_TYPE:
            return dict(att["content"])
    return None


def plain_of(activity: dict[str, Any]) -> str:
    """The card read back block by block, the way bot.model.plain_text writes a message."""
    card = card_of(activity)
    if card is None:
        return str(activity.get("text", ""))
    out: list[str] = []
    for el in card.get("body", []):
        kind = str(el.get("id", "")).partition("-")[2]
        if kind in ("text", "heading", "context", "linktext"):
            out.append(_runs(el))
        elif kind == "fields":
            out.extend(f"{c['columns'][0]['items'][0]['inlines'][0]['text']}: "
                       f"{c['columns'][1]['items'][0]['inlines'][0]['text']}" for c in el["items"])
        elif kind == "choices":
            out.append(" | ".join(a["title"] for a in _actions(el)))
        elif kind == "rating":
            buttons = _actions(el)
            labels = _texts(el) or ["", ""]
            out.append(f"{buttons[0]['title']} ({labels[0]}) .. {buttons[-1]['title']} ({labels[1]})")
        elif kind == "link":
            a = _actions(el)[0]
            out.append(f"{a['title']}: {a['url']}")
        elif kind == "image":
            imgs = [i for i in el.get("items", []) if i.get("type") == "Image"]
            out.append(f"[image: {imgs[0]['altText']}]" if imgs else _runs(el))
        elif kind == "form":
            out.append(f"[form: {_texts(el)[0]}]")
    return "\n".join(out)


def _intros(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [el for b in card.get("body", []) if str(b.get("id", "")).endswith("-form")
            for el in b["items"] if str(el.get("id", "")).endswith("-intro")]


def said_in_dialog(body: Any) -> str | None:
    """The words a dialog answer shows instead of a form (adapters/teams/dialogs.py `say`: a
    card of one line and a Close button; or a task/submit's task message), else None."""
    task = (body or {}).get("task") or {}
    if task.get("type") == "message":
        return str(task["value"])
    if task.get("type") != "continue":
        return None
    card = task["value"]["card"]["content"]
    closes = [a for a in card.get("actions", [])
              if (a.get("data") or {}).get(render.KIND) == dialogs.CLOSE]
    if not closes or form_of(card) is not None:
        return None
    return " ".join(_runs(el) for el in card.get("body", []))


def form_of(card: dict[str, Any]) -> tuple[Form, dict[str, str]] | None:
    """A form card read back as the neutral Form it shows, and its submit data."""
    for el in card.get("body", []):
        if not str(el.get("id", "")).endswith("-form"):
            continue
        items = el["items"]
        inputs: list[Input] = []
        for i in items:
            t, req = i.get("type"), bool(i.get("isRequired"))
            if t == "Input.Text":
                inputs.append(TextInput(i["id"], i.get("label", ""), bool(i.get("isMultiline")),
                                        int(i.get("maxLength", 3000)), not req,
                                        i.get("placeholder", ""), i.get("value", "")))
            elif t == "Input.ChoiceSet":
                inputs.append(SelectInput(i["id"], i.get("label", ""), tuple(
                    Choice(c["title"], c["value"]) for c in i["choices"]), not req, i.get("value", "")))
            elif t == "Input.Toggle":
                inputs.append(ToggleInput(i["id"], i.get("title", ""), i.get("value") == "true"))
            elif t == "Input.Number":
                inputs.append(NumberInput(i["id"], i.get("label", ""), i.get("min", 0),
                                          i.get("max", 100), not req, i.get("value")))
        # A notice (nothing to answer) has no submit button: the dialog's own close shuts it.
        submit = next((a for a in _actions(el) if a.get("type") == "Action.Submit"), None)
        data = dict(submit["data"]) if submit else {}
        intro = tuple(Text(_runs(i)) for i in items[1:] if i.get("type") == "RichTextBlock")
        return Form(data.get(render.FORM, ""), _runs(items[0]), tuple(inputs), intro,
                    submit_label=submit.get("title", "") if submit else "",
                    metadata=data.get(render.META, "")), data
    return None


class TeamsDriver:
    name = "teams"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.fake = FakeConnector()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.http: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        # The dialog open for each person: its card, the form it shows and its submit data.
        self.dialogs: dict[str, tuple[dict[str, Any], Form, dict[str, str]]] = {}
        self.dialog_messages: dict[str, list[str]] = {}
        self.statuses: list[int] = []

    async def start(self) -> TeamsDriver:
        await self.fake.start()
        async with self.core.db.session() as s:
            people = (await s.execute(select(Person).where(Person.email.is_not(None))
                                      .order_by(Person.email))).scalars().all()
        for p in people:
            self.fake.add_user(str(p.email), p.display_name)
        st = self.fake.state
        st.team_members[TEAM_ID] = list(st.users)
        app = web.Application()
        env = {
            "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": st.app_id,
            "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET": "not-used-in-tests",
            "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__TENANTID": st.tenant_id,
            "STAFFVOICE_TEAMS_OPENID_METADATA": self.fake.metadata_url,
        }
        # Backoff moves the fake's clock instead of waiting (its throttling follows that clock).
        pool = ConnectorPool(FakeTokens(self.fake), sleep=self._sleep)
        status = mount(app, self.core, env, pool=pool)
        assert status and "JWT" in status
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/messages"
        self.http = aiohttp.ClientSession()
        # The change lead adds the app to the council's team: the bot learns the roster.
        st.bot_in_teams.add(TEAM_ID)
        lead = self.fake.user_by_email("changelead@northbridge.example")
        await self.post(self.activity(lead.id, CHANNEL_ID, "channel", type="installationUpdate",
                                      action="add"))
        await self.post(self.activity(lead.id, CHANNEL_ID, "channel", type="conversationUpdate",
                                      membersAdded=[{"id": st.bot_id}]))
        return self

    # -- activities as Teams sends them ----------------------------------------------------

    def activity(self, user_id: str, conversation_id: str, kind: str, **extra: Any) -> dict[str, Any]:
        st = self.fake.state
        u = st.users[user_id]
        a: dict[str, Any] = {
            "type": "message",
            "id": f"17{next(self._ids):011d}",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "localTimestamp": datetime.now(UTC).isoformat(),
            "serviceUrl": self.fake.service_url,
            "channelId": "msteams",
            "from": {"id": u.id, "name": u.name, "aadObjectId": u.aad_object_id},
            "conversation": {"conversationType": kind, "tenantId": st.tenant_id,
                             "id": conversation_id, **({"isGroup": True} if kind != "personal" else {})},
            "recipient": {"id": st.bot_id, "name": "staffvoice"},
            "entities": [{"type": "clientInfo", "locale": "en-GB", "country": "GB",
                          "platform": "Web", "timezone": "Europe/London"}],
            "channelData": {"tenant": {"id": st.tenant_id}},
            "locale": "en-GB",
        }
        if kind == "channel":
            a["channelData"]["team"] = {"id": TEAM_ID, "name": "Northbridge Children's Services"}
            a["channelData"]["channel"] = {"id": CHANNEL_ID, "name": "General"}
        a.update(extra)
        return a

    async def post(self, activity: dict[str, Any]) -> int:
        assert self.http is not None
        token = self.fake.sign()
        async with self.http.post(self.url, json=activity,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
            self.statuses.append(r.status)
            assert r.status in (200, 201, 202), f"/api/messages answered {r.status}"
            return r.status

    async def invoke(self, activity: dict[str, Any]) -> Any:
        """Post an invoke as Teams does and return the body it was answered with, checked the
        way the Teams client reads it (tests.fakes.teams_connector.invoke_problem)."""
        assert self.http is not None
        token = self.fake.sign()
        async with self.http.post(self.url, json=activity,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
            self.statuses.append(r.status)
            body = await r.json() if r.content_length else None
            problem = invoke_problem(str(activity.get("name")), r.status, body)
            assert problem is None, problem
            return body

    async def _sleep(self, seconds: float) -> None:
        self.fake.advance(seconds)

    def dm_id(self, email: str) -> tuple[str, str]:
        u = self.fake.user_by_email(email)
        return u.id, self.fake.personal_id(u.id)

    # -- the driver API --------------------------------------------------------------------

    async def say(self, email: str, text: str) -> None:
        uid, cid = self.dm_id(email)
        self.fake.state.users[uid].installed = True
        before = self._newest(email)
        await self.post(self.activity(uid, cid, "personal", text=text, textFormat="plain"))
        await self._open_dialogs(email, before)

    async def mention(self, email: str, text: str) -> None:
        """The user writes in the team channel, @mentioning the bot (a new post)."""
        u = self.fake.user_by_email(email)
        at = "<at>staffvoice</at>"
        a = self.activity(u.id, CHANNEL_ID, "channel", text=f"{at} {text}", textFormat="plain")
        a["entities"].append({"type": "mention", "text": at,
                              "mentioned": {"id": self.fake.state.bot_id, "name": "staffvoice"}})
        a["conversation"]["id"] = f"{CHANNEL_ID};messageid={a['id']}"
        before = self._newest(email)
        await self.post(a)
        await self._open_dialogs(email, before)

    def _dm_posts(self, email: str) -> list[Posted]:
        _uid, cid = self.dm_id(email)
        return self.fake.in_conversation(cid)

    def _newest(self, email: str) -> int:
        posts = self._dm_posts(email)
        return max((int(p.id) for p in posts), default=0)

    async def tap(self, email: str, label: str) -> None:
        uid, cid = self.dm_id(email)
        for p in reversed(self._dm_posts(email)):
            card = card_of(p.current)
            if card is None:
                continue
            for el in card.get("body", []):
                for act in _actions(el):
                    data = act.get("data") or {}
                    if data.get(render.KIND) == "action" and labels_match(act["title"], label):
                        if (data.get("msteams") or {}).get("type") == TASK_FETCH:
                            await self.open_dialog(email, p, act)  # Teams sends an invoke
                            return
                        before = self._newest(email)
                        await self.post(self.activity(uid, cid, "personal", value=data,
                                                      replyToId=p.id))
                        await self._open_dialogs(email, before)
                        return
        raise AssertionError(f"{email} has no choice labelled {label!r}")

    # -- dialogs: what the Teams client does with a task/fetch button -----------------------

    async def _open_dialogs(self, email: str, before: int) -> None:
        """The person taps the newest "Open the form" button the bot has just posted."""
        for p in reversed(self._dm_posts(email)):
            if int(p.id) <= before:
                return
            button = dialog_button(p.current)
            if button is not None:
                await self.open_dialog(email, p)
                return

    async def open_dialog(self, email: str, post: Posted,
                          button: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tap a card's dialog button (the first, or `button`): Teams sends task/fetch with
        the button's data, whole, and shows the answer."""
        button = button or dialog_button(post.current)
        assert button is not None, "no dialog button on that card"
        uid, cid = self.dm_id(email)
        body = await self.invoke(self.activity(
            uid, cid, "personal", type="invoke", name=TASK_FETCH, replyToId=post.id,
            value={"type": TASK_FETCH, "data": button["data"], "context": {"theme": "default"}}))
        self._show(email, body)
        return dict(body)

    def _show(self, email: str, body: Any) -> None:
        said = said_in_dialog(body)
        task = (body or {}).get("task") or {}
        if said is None and task.get("type") == "continue":
            card = task["value"]["card"]["content"]
            found = form_of(card)
            assert found is not None, "the dialog shows no form"
            self.dialogs[email] = (card, found[0], found[1])
        else:
            self.dialogs.pop(email, None)
            if said is not None:
                self.dialog_messages.setdefault(email, []).append(said)

    async def press_close(self, email: str, body: Any) -> Any:
        """Press the Close button of a dialog that shows a message (`said_in_dialog`): Teams
        sends its data in a task/submit; the answer (None: the dialog closed)."""
        card = body["task"]["value"]["card"]["content"]
        close = next(a for a in card["actions"]
                     if (a.get("data") or {}).get(render.KIND) == dialogs.CLOSE)
        uid, cid = self.dm_id(email)
        answer = await self.invoke(self.activity(
            uid, cid, "personal", type="invoke", name=TASK_SUBMIT,
            value={"type": TASK_SUBMIT, "data": close["data"], "context": {"theme": "default"}}))
        self._show(email, answer)
        return answer

    def form(self, email: str) -> Form | None:
        found = self.dialogs.get(email)
        return found[1] if found else None

    def _open_form(self, email: str) -> tuple[Posted, Form, dict[str, str]] | None:
        """The open dialog as (a holder of its card, as an activity), its form, its submit
        data): for tests that read the card itself (tests/test_design_invariants.py)."""
        found = self.dialogs.get(email)
        if found is None:
            return None
        card, form, data = found
        shown = {"type": "message",
                 "attachments": [{"contentType": render.CARD_CONTENT_TYPE, "content": card}]}
        return Posted("dialog", "", [shown]), form, data

    async def submit(self, email: str, values: dict[str, str]) -> dict[str, str] | None:
        found = self.dialogs.get(email)
        assert found is not None, f"{email} has no open dialog"
        card, form, data = found
        # What the Teams client does before sending: every input, required ones checked.
        value: dict[str, Any] = dict(data)
        errors: dict[str, str] = {}
        for inp in form.inputs:
            v = str(values.get(inp.name, ""))
            if isinstance(inp, ToggleInput):
                v = "true" if v == "true" else "false"
            required = not getattr(inp, "optional", True)
            if required and not v:
                errors[inp.name] = f"Please fill in: {inp.label}"
            # maxLength is not enforced by every Teams client (AdaptiveCards #4621): the
            # value goes as typed and the adapter checks it (dialogs.over_length).
            value[inp.name] = v
        if errors:
            return errors
        uid, cid = self.dm_id(email)
        before = self._newest(email)
        body = await self.invoke(self.activity(
            uid, cid, "personal", type="invoke", name=TASK_SUBMIT,
            value={"type": TASK_SUBMIT, "data": value, "context": {"theme": "default"}}))
        await settle_notices()  # a reply's notice to its author, sent in the background
        self._show(email, body)
        await self._open_dialogs(email, before)
        again = self.dialogs.get(email)
        if again is None or (again[1].title, again[1].metadata) != (form.title, form.metadata):
            return None  # closed, or the next step ("Before you send") in the same dialog
        # Rejected: the form is shown again with the problems under the original intro.
        labels = {i.label: i.name for i in again[1].inputs}
        out: dict[str, str] = {}
        for el in _intros(again[0])[len(_intros(card)):]:
            text = _runs(el)
            label, _, msg = text.partition(": ")
            out[labels.get(label, "_")] = msg if label in labels else text
        return out or {"_": "form refused"}

    def seen(self, email: str) -> list[str]:
        """What the chat keeps: every card, "Open the form" cards included, with the title
        and intro of any form packed into a button's data (Teams keeps a card's data with the
        chat, and a compliance export holds it: docs/invariants.md N41). Before, cards with a
        dialog button were left out as the Teams door to a dialog, and so was a thread's
        answer form packed into one (review12)."""
        return [plain_of(p.current) + packed_forms(p.current) for p in self._dm_posts(email)]

    def channel(self, ref: str) -> list[str]:
        platform, _, rest = ref.partition(":")
        if platform != "teams":
            return []
        cid = rest.rpartition("/")[2]
        return [plain_of(p.current) for p in self.fake.in_conversation(cid)]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.fake.close()


async def make(core: Core) -> TeamsDriver:
    return await TeamsDriver(core).start()
