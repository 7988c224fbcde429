"""The fake Bot Connector refuses what the service refuses (each rule cites its source in
tests/fakes/teams_connector.py): here, calls made straight to it, as the SDK would make them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.teams_connector import TENANT_RPS, FakeConnector, FakeTeams


@pytest.fixture
async def connector() -> AsyncIterator[FakeConnector]:
    c = await FakeConnector(FakeTeams(manual_clock=True)).start()
    c.add_user("a@northbridge.example").installed = True  # 29:user-1
    yield c
    await c.close()


async def _post(c: FakeConnector, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {c.outbound_token()}"}
    async with aiohttp.ClientSession() as http, http.post(c.url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_chat_is_created_only_with_the_tenant_and_the_bot(connector: FakeConnector) -> None:
    c = connector
    base = {"isGroup": False, "bot": {"id": c.state.bot_id}, "members": [{"id": "29:user-1"}]}
    status, body = await _post(c, "/v3/conversations", base)
    assert (status, body["error"]["code"]) == (400, "BadSyntax")
    status, body = await _post(c, "/v3/conversations",
                               {**base, "channelData": {"tenant": {"id": "tenant-elsewhere"}}})
    assert status == 403
    status, body = await _post(c, "/v3/conversations", {**base, "bot": {},
                                                        "tenantId": c.state.tenant_id})
    assert status == 400
    status, body = await _post(c, "/v3/conversations",
                               {**base, "channelData": {"tenant": {"id": c.state.tenant_id}}})
    assert status == 201 and body["id"]


async def test_an_app_gets_50_calls_a_second_in_a_tenant_of_any_kind(connector: FakeConnector) -> None:
    c = connector
    cid = c.personal_id("29:user-1")
    headers = {"Authorization": f"Bearer {c.outbound_token()}"}
    member = f"{c.url}/v3/conversations/{cid}/members/29:user-1"
    async with aiohttp.ClientSession() as http:
        # A send and 49 member lookups in the same second: every kind of call counts.
        async with http.post(f"{c.url}/v3/conversations/{cid}/activities",
                             json={"type": "message", "text": "hello"}, headers=headers) as r:
            assert r.status == 201
        for _ in range(TENANT_RPS - 1):
            async with http.get(member, headers=headers) as r:
                assert r.status == 200
        async with http.get(member, headers=headers) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "TooManyRequests"
        c.advance(1.0)  # a second later the tenant has room again
        async with http.get(member, headers=headers) as r:
            assert r.status == 200
    assert c.state.tenant_throttled == [("GET", f"/v3/conversations/{cid}/members/29:user-1")]


async def test_a_message_over_40_kb_in_utf16_is_too_big_though_under_28000_bytes(
    connector: FakeConnector,
) -> None:
    c = connector
    cid = c.personal_id("29:user-1")
    status, body = await _post(c, f"/v3/conversations/{cid}/activities",
                               {"type": "message", "text": "a" * 21_000})
    assert (status, body["error"]["code"]) == (413, "MessageSizeTooBig")
    status, _ = await _post(c, f"/v3/conversations/{cid}/activities",
                            {"type": "message", "text": "a" * 19_000})
    assert status == 201
