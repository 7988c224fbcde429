"""Hostile input on /api/messages (valid JWT): never a 500, no unhandled error, no planted markup.

Real activities as Teams sends them, posted with a token signed by the fake Bot Framework
issuer, to the real adapter on a real aiohttp server; hypothesis varies text, card values,
form fields and the types of fields Teams would normally fill in.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.teams import render
from bot.milestones.tables import Milestone
from bot.pulse.tables import PulseQuestion, PulseRound
from tests.conformance.drivers.teams import TeamsDriver
from tests.hardening.checks import ErrorLog, teams_leaks
from tests.hardening.conftest import open_round
from tests.hardening.payloads import (
    command_text,
    field_value,
    fuzz_settings,
    json_value,
    nasty_text,
    wrongly_typed,
)
from tests.hardening.test_fuzz_slack import FORMS

PRACTITIONER = "practitioner1@northbridge.example"
CHANGE = "changelead@northbridge.example"


async def post(teams: TeamsDriver, body: bytes | dict[str, Any], token: str | None = None) -> int:
    assert teams.http is not None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token or teams.fake.sign()}",
               "Content-Type": "application/json"}
    if len(data) > 200_000:
        headers["Connection"] = "close"  # refused unread: do not reuse the connection
    async with teams.http.post(teams.url, data=data, headers=headers) as r:
        await r.read()
        return r.status


def check(teams: TeamsDriver, errors: ErrorLog, status: int, before: set[str], what: Any) -> None:
    assert status < 500, (status, repr(what)[:300])
    logged = errors.take()
    assert not logged, (logged, repr(what)[:300])
    leaks = teams_leaks(teams.fake, before)
    assert not leaks, leaks


async def state(teams: TeamsDriver) -> tuple[list[str], list[str]]:
    async with teams.core.db.session() as s:
        rounds = list((await s.execute(select(PulseRound.id))).scalars())
        positions = list((await s.execute(select(PulseQuestion.position))).scalars())
        milestones = list((await s.execute(select(Milestone.id))).scalars())
    actions = [f"pulse.a.{r}.{p}" for r in rounds for p in positions]
    actions += [f"pulse.n.{r}.{p}" for r in rounds for p in positions[:3]]
    actions += ["ms:checkin", "ms:show", "ms:draft", "feedback.open", "feedback.read",
                "feedback.revoke", "feedback.item", "bc-draft:x", "bc-celebrate:x", "nothing"]
    return actions, milestones


async def prepared(teams: TeamsDriver) -> tuple[list[str], list[str]]:
    if not hasattr(teams, "_fuzz_state"):
        await open_round(teams.core)
        teams._fuzz_state = await state(teams)  # type: ignore[attr-defined]
    return teams._fuzz_state  # type: ignore[attr-defined, no-any-return]


# -- 1. bodies that are not activities ----------------------------------------------------

@fuzz_settings(150)
@given(body=st.one_of(st.binary(max_size=2000), json_value.map(lambda v: json.dumps(v).encode()),
                      st.sampled_from([b"\xff\xfe{\x00}\x00", "{\"type\": \"é\"}".encode("latin-1"),
                                       b"{" * 3000, b"[" * 50_000])))
async def test_bodies_that_are_not_activities(teams: TeamsDriver, errors: ErrorLog, body: bytes) -> None:
    before = set(teams.fake.state.posted)
    status = await post(teams, body)
    check(teams, errors, status, before, body)


# -- 2. messages with hostile text and wrongly typed fields ---------------------------------

ACTIVITY_FIELDS = ["text", "textFormat", "entities", "attachments", "channelData", "locale",
                   "replyToId", "value", "id", "timestamp", "localTimestamp", "speak", "summary"]


@fuzz_settings(300)
@given(text=st.one_of(command_text, nasty_text), email=st.sampled_from([PRACTITIONER, CHANGE]),
       broken=st.dictionaries(st.sampled_from(ACTIVITY_FIELDS), field_value, max_size=2),
       mention=st.booleans(), name=st.one_of(st.none(), nasty_text))
async def test_messages_with_hostile_text(
    teams: TeamsDriver, errors: ErrorLog, text: str, email: str, broken: dict[str, Any],
    mention: bool, name: str | None,
) -> None:
    uid, cid = teams.dm_id(email)
    teams.fake.state.users[uid].installed = True
    a = teams.activity(uid, cid, "personal", text=text, textFormat="plain")
    if mention:
        at = "<at>staffvoice</at>"
        a["text"] = f"{at} {text}"
        a["entities"].append({"type": "mention", "text": at,
                              "mentioned": {"id": teams.fake.state.bot_id, "name": "staffvoice"}})
    if name is not None:
        a["from"]["name"] = name
    a.update(broken)
    before = set(teams.fake.state.posted)
    status = await post(teams, a)
    check(teams, errors, status, before, a)
    if not broken and name is None:
        assert status in (200, 201, 202, 413), status  # accepted, or over 256 KB


# -- 3. card taps: real and made-up actions, hostile values ---------------------------------

@fuzz_settings(300)
@given(data=st.data())
async def test_card_taps_with_hostile_values(teams: TeamsDriver, errors: ErrorLog, data: st.DataObject) -> None:
    actions, milestones = await prepared(teams)
    email = data.draw(st.sampled_from([PRACTITIONER, CHANGE]))
    uid, cid = teams.dm_id(email)
    action = data.draw(st.one_of(st.sampled_from(actions), nasty_text, wrongly_typed))
    value = data.draw(st.one_of(st.sampled_from(["1", "3", "5", "10", "-1", "prev", "skip", "later",
                                                 "go", "text", "edit", "cancel", "send"]),
                                st.sampled_from(milestones).map(lambda m: f"{m}|at_risk"),
                                nasty_text, wrongly_typed))
    posts = teams.fake.in_conversation(cid)
    reply_to = posts[data.draw(st.integers(0, 10**6)) % len(posts)].id if posts else None
    payload: Any = {render.KIND: "action", render.ACTION: action, render.VALUE: value}
    if data.draw(st.integers(0, 9)) == 0:
        payload = data.draw(json_value)
    a = teams.activity(uid, cid, "personal", value=payload,
                       replyToId=data.draw(st.one_of(st.just(reply_to), wrongly_typed)))
    before = set(teams.fake.state.posted)
    status = await post(teams, a)
    check(teams, errors, status, before, a)


# -- 4. every form, submitted from a card with hostile values ------------------------------

@fuzz_settings(400)
@given(data=st.data())
async def test_every_form_with_hostile_values(
    teams: TeamsDriver, errors: ErrorLog, data: st.DataObject
) -> None:
    actions, milestones = await prepared(teams)
    rounds = sorted({a.split(".")[2] for a in actions if a.startswith("pulse.a.")})
    forms = {**FORMS, **{f"pulse.f.{r}.7": ("comment",) for r in rounds}}
    form_id = data.draw(st.sampled_from(sorted(forms)))
    email = data.draw(st.sampled_from([CHANGE, CHANGE, PRACTITIONER]))
    uid, cid = teams.dm_id(email)
    value: dict[str, Any] = {render.KIND: "form", render.FORM: form_id,
                             render.META: data.draw(st.one_of(st.sampled_from(milestones or ["x"]),
                                                              nasty_text, wrongly_typed))}
    for name in forms[form_id]:
        value[name] = data.draw(st.one_of(field_value, st.booleans(), st.just("true")))
    value.update(data.draw(st.dictionaries(st.text(max_size=10), json_value, max_size=2)))
    a = teams.activity(uid, cid, "personal", value=value)
    before = set(teams.fake.state.posted)
    status = await post(teams, a)
    check(teams, errors, status, before, a)
