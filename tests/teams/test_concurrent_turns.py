"""Many Teams turns at once, from different people and in the same chats: nothing is lost, no
lock or stale snapshot is met, nothing answers 500, and no transaction stays open while the bot
waits on the Bot Connector (the endpoint's pre-turn read is handed on to the event's admission:
storage.db.Opened)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, event, func, select

from adapters.teams.dialogs import pack
from adapters.teams.tables import TeamsMember
from bot.dispatch_tables import ProcessedEvent
from bot.feedback.tables import FeedbackItem
from bot.model import Choice, Context, Form, SelectInput, TextInput, ToggleInput
from bot.people import held
from tests.conformance.drivers.teams import CHANNEL_ID, TeamsDriver
from tests.fakes.teams_connector import TASK_SUBMIT

PEOPLE = [f"practitioner{i}@northbridge.example" for i in range(1, 9)]
LOOKED_UP = PEOPLE[:4]  # no member row stored: their first activity asks the roster first
FEEDBACK = Form(
    "feedback.submit", "Anonymous feedback",
    (TextInput("text", "Your feedback", multiline=True, max_length=2000),
     SelectInput("theme", "Theme", (Choice("Supervision", "supervision"),), optional=True),
     ToggleInput("replies", "Let the change team reply")),
    (Context("Your name is not stored with your feedback."),))


class Watch:
    """Which task holds which pooled connection of the bot's database, and every outbound
    HTTP call made while its task held one."""

    def __init__(self) -> None:
        self.holders: dict[int, asyncio.Task[Any] | None] = {}
        self.calls = 0
        self.held_across: list[str] = []

    def checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        self.holders[id(record)] = asyncio.current_task()

    def checkin(self, _dbapi: Any, record: Any) -> None:
        self.holders.pop(id(record), None)

    def calling(self, what: str) -> None:
        self.calls += 1
        task = asyncio.current_task()
        if task is not None and task in self.holders.values():
            self.held_across.append(what)


@pytest.fixture
def watch(teams: TeamsDriver, monkeypatch: pytest.MonkeyPatch) -> Any:
    w = Watch()
    pool = teams.core.db.engine.sync_engine.pool
    event.listen(pool, "checkout", w.checkout)
    event.listen(pool, "checkin", w.checkin)
    real = aiohttp.ClientSession._request

    async def request(session: aiohttp.ClientSession, method: str, url: Any, **kw: Any) -> Any:
        if session is not teams.http:  # the bot's own calls (the test's posts are Teams')
            w.calling(f"{method} {url}")
        return await real(session, method, url, **kw)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", request)
    yield w
    event.remove(pool, "checkout", w.checkout)
    event.remove(pool, "checkin", w.checkin)


async def _post(teams: TeamsDriver, activity: dict[str, Any]) -> int:
    assert teams.http is not None
    async with teams.http.post(teams.url, json=activity,
                               headers={"Authorization": f"Bearer {teams.fake.sign()}"}) as r:
        await r.read()
        return r.status


async def _count(teams: TeamsDriver, what: Any) -> int:
    async with teams.core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(what))).scalar_one())


async def test_many_turns_at_once_lose_nothing_and_hold_no_transaction_across_a_call(
    teams: TeamsDriver, watch: Watch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Eight practitioners at once, each with three messages in their own chat (the first
    delivered twice, as the Bot Connector redelivers), a feedback dialog sent, and a mention
    in the team's channel; four of them the bot has never looked up on the roster."""
    st = teams.fake.state
    async with teams.core.db.session() as s:
        await s.execute(delete(TeamsMember).where(TeamsMember.user_id.in_(
            [teams.fake.user_by_email(e).id for e in LOOKED_UP])))
    events_before = await _count(teams, ProcessedEvent)
    activities: list[dict[str, Any]] = []
    for n, email in enumerate(PEOPLE):
        uid, cid = teams.dm_id(email)
        st.users[uid].installed = True
        said = [teams.activity(uid, cid, "personal", text="help", textFormat="plain")
                for _ in range(3)]
        activities += [*said, said[0]]  # the first one delivered twice
        activities.append(teams.activity(uid, cid, "personal", type="invoke", name=TASK_SUBMIT,
                                         value={"type": TASK_SUBMIT, "data": {
                                             "sv_kind": "dialog", "sv_form": "feedback.submit",
                                             "sv_meta": "", "sv_dialog": pack(FEEDBACK),
                                             "text": f"More time for network meetings ({n}).",
                                             "theme": "", "replies": "false"}}))
        at = "<at>staffvoice</at>"
        mention = teams.activity(uid, CHANNEL_ID, "channel", text=f"{at} help", textFormat="plain")
        mention["entities"].append({"type": "mention", "text": at,
                                    "mentioned": {"id": st.bot_id, "name": "staffvoice"}})
        mention["conversation"]["id"] = f"{CHANNEL_ID};messageid={mention['id']}"
        activities.append(mention)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        statuses = await asyncio.gather(*(_post(teams, a) for a in activities))

    assert set(statuses) <= {200, 202}, statuses  # no 500, no 503
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                or any(w in r.getMessage().lower() for w in ("locked", "busy", "snapshot"))]
    assert problems == []
    assert watch.held_across == [] and watch.calls >= len(PEOPLE) * 5
    assert teams.core.db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    # Every distinct activity admitted once (the redeliveries dropped), every feedback kept.
    distinct = len({a["id"] for a in activities})
    assert await _count(teams, ProcessedEvent) - events_before == distinct == len(PEOPLE) * 5
    async with teams.core.db.session() as s:
        texts = set((await s.execute(select(FeedbackItem.text))).scalars())
    assert texts == {f"More time for network meetings ({n})." for n in range(len(PEOPLE))}
    for email in PEOPLE:  # three answers to three messages, each in the person's own chat
        answers = [t for t in teams.seen(email) if "whoami" in t]
        assert len(answers) == 3, (email, teams.seen(email))
    # The roster lookups, held for the flusher, are written: none lost to the crowd.
    await held.flush(teams.core)
    async with teams.core.db.session() as s:
        emails = set((await s.execute(select(TeamsMember.email))).scalars())
    assert set(LOOKED_UP) <= emails
