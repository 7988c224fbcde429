"""The fake Slack refuses what Slack refuses (each rule cites its source in tests/fakes/slack_api.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    BOT_TOKEN,
    RESPONSE_URL_POSTS,
    RESPONSE_URL_TTL_S,
    TIERS,
    TRIGGER_TTL_S,
    FakeSlack,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "Form"}, "blocks": []}


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    c = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
    yield c


async def refused(call: object) -> str:
    with pytest.raises(SlackApiError) as e:
        await call  # type: ignore[misc]
    return str(e.value.response["error"])


async def test_a_trigger_opens_one_modal_within_three_seconds(fake: FakeSlack, client: AsyncWebClient) -> None:
    u = fake.add_user("a@northbridge.example")
    trigger = fake.new_trigger(u.id)
    assert (await client.views_open(trigger_id=trigger, view=MODAL))["ok"]
    assert await refused(client.views_open(trigger_id=trigger, view=MODAL)) == "invalid_trigger_id"
    late = fake.new_trigger(u.id)
    user, expires, source = fake._triggers[late]
    fake._triggers[late] = (user, time.monotonic() - 0.01, source)
    assert await refused(client.views_open(trigger_id=late, view=MODAL)) == "expired_trigger_id"
    assert TRIGGER_TTL_S == 3.0


async def test_ephemeral_messages_are_not_in_the_history(fake: FakeSlack,
                                                         client: AsyncWebClient) -> None:
    """chat.postEphemeral: shown to one person, kept nowhere (conversations.history)."""
    u = fake.add_user("a@northbridge.example")
    dm = fake.dm_of(u.id)
    assert (await client.chat_postEphemeral(channel=dm, user=u.id, text="only you"))["ok"]
    assert [e.text for e in fake.ephemeral_for(u.id)] == ["only you"]
    assert (await client.conversations_history(channel=dm))["messages"] == []
    other = fake.add_user("b@northbridge.example")
    assert await refused(client.chat_postEphemeral(channel=dm, user=other.id, text="x")) \
        == "user_not_in_channel"


async def test_a_response_url_takes_five_posts_within_thirty_minutes(fake: FakeSlack) -> None:
    u = fake.add_user("a@northbridge.example")
    dm = fake.dm_of(u.id)
    url = fake.new_response_url(u.id, dm)
    async with aiohttp.ClientSession() as http:
        for n in range(RESPONSE_URL_POSTS + 1):
            async with http.post(url, json={"text": f"n{n}", "response_type": "ephemeral"}) as r:
                answers = (r.status, await r.text())
        assert answers == (404, "used_url")
        async with http.post(url := fake.new_response_url(u.id, dm), json={"text": "in"}) as r:
            assert r.status == 200
        fake.expire_response_urls()
        async with http.post(url, json={"text": "late"}) as r:
            assert (r.status, await r.text()) == (404, "expired_url")
    assert [e.text for e in fake.ephemeral_for(u.id)] == ["n0", "n1", "n2", "n3", "n4", "in"]
    assert fake.in_channel(dm) == [] and RESPONSE_URL_TTL_S == 1800


async def test_a_submission_trigger_opens_nothing_the_person_sees(fake: FakeSlack, client: AsyncWebClient) -> None:
    u = fake.add_user("a@northbridge.example")
    assert (await client.views_open(trigger_id=fake.new_trigger(u.id, "view_submission"), view=MODAL))["ok"]
    assert fake.open_view(u.id) is None and len(fake.hidden_views) == 1


async def test_a_private_file_cannot_be_shown_in_an_image_block(fake: FakeSlack, client: AsyncWebClient) -> None:
    u = fake.add_user("a@northbridge.example")
    dm = fake.dm_of(u.id)
    private = await client.files_upload_v2(content=PNG, filename="c.png", request_file_info=False)
    fid = private["files"][0]["id"]
    image = [{"type": "image", "slack_file": {"id": fid}, "alt_text": "chart"}]
    assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=image)) == "invalid_blocks"
    shared = await client.files_upload_v2(content=PNG, filename="c.png", channel=dm,
                                          request_file_info=False)
    image[0]["slack_file"] = {"id": shared["files"][0]["id"]}
    assert (await client.chat_postMessage(channel=dm, text="x", blocks=image))["ok"]


async def test_text_blocks_and_button_values_have_limits(fake: FakeSlack, client: AsyncWebClient) -> None:
    dm = fake.dm_of(fake.add_user("a@northbridge.example").id)
    assert await refused(client.chat_postMessage(channel=dm, text="x" * 40_001)) == "msg_too_long"
    many = [{"type": "divider"}] * 51
    assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=many)) == "invalid_blocks"
    section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=section)) == "invalid_blocks"
    button = [{"type": "actions", "elements": [{"type": "button", "action_id": "a", "value": "v" * 2001,
                                                "text": {"type": "plain_text", "text": "Go"}}]}]
    assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=button)) == "invalid_blocks"


async def test_a_channel_the_bot_was_not_invited_to_is_not_in_channel(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel("C0OUTSIDE", member=False)
    assert await refused(client.chat_postMessage(channel="C0OUTSIDE", text="x")) == "not_in_channel"
    assert await refused(client.chat_postMessage(channel="C0NOWHERE", text="x")) == "channel_not_found"


async def test_each_method_has_its_rate_tier_with_retry_after(fake: FakeSlack) -> None:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url, retry_handlers=[])
    u = fake.add_user("a@northbridge.example")
    for _ in range(TIERS["conversations.open"]):
        await client.conversations_open(users=u.id)
    with pytest.raises(SlackApiError) as e:
        await client.conversations_open(users=u.id)
    assert e.value.response.status_code == 429 and int(e.value.response.headers["Retry-After"]) >= 1
    # chat.postMessage: about one a second per channel after a short burst.
    dm = fake.dm_of(u.id)
    for _ in range(fake.post_burst):
        await client.chat_postMessage(channel=dm, text="x")
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel=dm, text="x")
    assert e.value.response.status_code == 429
    assert fake.refused == {"conversations.open": 1, "chat.postMessage": 1}


async def test_the_text_of_a_message_blocks_together_has_a_limit(fake: FakeSlack, client: AsyncWebClient) -> None:
    dm = fake.dm_of(fake.add_user("a@northbridge.example").id)
    # Four sections of 2,900 characters: each within the 3,000 of a section, 11,600 together.
    four = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2900}} for _ in range(4)]
    assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=four)) == "msg_blocks_too_long"
    posted = await client.chat_postMessage(channel=dm, text="x", blocks=four[:3])
    assert await refused(client.chat_update(channel=dm, ts=posted["ts"], text="x", blocks=four)) \
        == "msg_blocks_too_long"


async def test_headers_fields_rows_ids_and_menus_have_limits(fake: FakeSlack, client: AsyncWebClient) -> None:
    dm = fake.dm_of(fake.add_user("a@northbridge.example").id)

    def mrkdwn(text: str) -> dict[str, str]:
        return {"type": "mrkdwn", "text": text}

    def option(i: int) -> dict[str, object]:
        return {"text": {"type": "plain_text", "text": f"Team {i}"}, "value": f"t{i}"}

    def menu(**kw: object) -> list[dict[str, object]]:
        return [{"type": "actions", "elements": [{"type": "static_select", "action_id": "a", **kw}]}]

    too_much = [
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        [{"type": "section", "fields": [mrkdwn("f")] * 11}],
        [{"type": "section", "fields": [mrkdwn("f" * 2001)]}],
        [{"type": "context", "elements": [mrkdwn("c")] * 11}],
        [{"type": "section", "block_id": "same", "text": mrkdwn("a")},
         {"type": "section", "block_id": "same", "text": mrkdwn("b")}],
        [{"type": "section", "block_id": "b" * 256, "text": mrkdwn("a")}],
        menu(options=[option(i) for i in range(101)]),
        menu(option_groups=[{"label": {"type": "plain_text", "text": "g"},
                             "options": [option(i) for i in range(101)]}]),
        menu(options=[{"text": {"type": "plain_text", "text": "t"}, "value": "v" * 151}]),
    ]
    for blocks in too_much:
        assert await refused(client.chat_postMessage(channel=dm, text="x", blocks=blocks)) == "invalid_blocks"
    grouped = menu(option_groups=[{"label": {"type": "plain_text", "text": f"g{g}"},
                                   "options": [option(g * 100 + i) for i in range(100)]}
                                  for g in range(3)])
    assert (await client.chat_postMessage(channel=dm, text="x", blocks=grouped))["ok"]
    # A modal is held to the same block rules, and to 24 characters on its buttons.
    trigger = fake.new_trigger(fake.user_by_email("a@northbridge.example").id)  # type: ignore[union-attr]
    assert await refused(client.views_open(trigger_id=trigger, view={**MODAL, "blocks": too_much[6]})) \
        == "invalid_arguments"
    trigger = fake.new_trigger(fake.user_by_email("a@northbridge.example").id)  # type: ignore[union-attr]
    submit = {"type": "plain_text", "text": "s" * 25}
    assert await refused(client.views_open(trigger_id=trigger, view={**MODAL, "submit": submit})) \
        == "invalid_arguments"


def _input(element: dict[str, object], label: str = "Your feedback", **block: object) -> dict[str, object]:
    return {"type": "input", "block_id": "text", "label": {"type": "plain_text", "text": label},
            "element": {"action_id": "value", **element}, **block}


async def refusal_of(call: object) -> tuple[str, list[str]]:
    """The error code and Slack's `response_metadata.messages` of a refused call."""
    with pytest.raises(SlackApiError) as e:
        await call  # type: ignore[misc]
    meta = e.value.response.get("response_metadata") or {}
    return str(e.value.response["error"]), list(meta.get("messages") or [])


async def test_input_elements_have_slacks_limits_and_refusals_say_where(
    fake: FakeSlack, client: AsyncWebClient,
) -> None:
    """plain_text_input max_length 1..3000, min_length 0..3000, placeholder 150; an input's
    label and hint 2000; checkboxes 10 options; a modal with an input needs a submit button."""
    u = fake.add_user("a@northbridge.example")
    submit = {"type": "plain_text", "text": "Send"}
    text = {"type": "plain_text_input", "multiline": True}
    placeholder = {"type": "plain_text", "text": "p" * 151}
    box = {"type": "plain_text", "text": "x"}
    too_much = {
        "/view/blocks/0/element/max_length": _input({**text, "max_length": 3001}),
        "/view/blocks/0/element/min_length": _input({**text, "min_length": 3001}),
        "/view/blocks/0/element/placeholder/text": _input({**text, "placeholder": placeholder}),
        "/view/blocks/0/label/text": _input(text, label="l" * 2001),
        "/view/blocks/0/hint/text": _input(text, hint={"type": "plain_text", "text": "h" * 2001}),
        "/view/blocks/0/element/options": _input({"type": "checkboxes", "options": [
            {"text": box, "value": f"v{i}"} for i in range(11)]}),
    }
    for pointer, block in too_much.items():
        view = {**MODAL, "submit": submit, "blocks": [block]}
        error, messages = await refusal_of(client.views_open(trigger_id=fake.new_trigger(u.id), view=view))
        assert error == "invalid_arguments" and len(messages) == 1, (pointer, messages)
        assert messages[0].startswith("[ERROR] ") and messages[0].endswith(f"[json-pointer:{pointer}]")
    assert fake.open_view(u.id) is None
    at_limit = _input({**text, "max_length": 3000, "min_length": 0,
                       "placeholder": {"type": "plain_text", "text": "p" * 150}}, label="l" * 2000)
    error, messages = await refusal_of(client.views_open(
        trigger_id=fake.new_trigger(u.id), view={**MODAL, "blocks": [at_limit]}))
    assert error == "invalid_arguments" and messages[0].endswith("[json-pointer:/view/submit]")
    opened = await client.views_open(trigger_id=fake.new_trigger(u.id),
                                     view={**MODAL, "submit": submit, "blocks": [at_limit]})
    assert opened["ok"] and fake.open_view(u.id) is not None
    # views.update is held to the same rules, and to the view's current hash.
    view_id, view_hash = opened["view"]["id"], opened["view"]["hash"]
    error, messages = await refusal_of(client.views_update(
        view_id=view_id, hash=view_hash, view={**MODAL, "submit": submit, "blocks": [too_much[
            "/view/blocks/0/element/max_length"]]}))
    assert error == "invalid_arguments" and "max_length" in messages[0]
    assert (await client.views_update(view_id=view_id, hash=view_hash,
                                      view={**MODAL, "submit": submit, "blocks": [at_limit]}))["ok"]
    assert await refused(client.views_update(view_id=view_id, hash=view_hash, view=MODAL)) == "hash_conflict"
    # The App Home and messages answer in the same shape.
    error, messages = await refusal_of(client.views_publish(
        user_id=u.id, view={"type": "home", "blocks": [too_much["/view/blocks/0/element/max_length"]]}))
    assert error == "invalid_arguments" and messages[0].endswith(
        "[json-pointer:/view/blocks/0/element/max_length]")
    section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    error, messages = await refusal_of(client.chat_postMessage(channel=fake.dm_of(u.id), text="x",
                                                               blocks=section))
    assert error == "invalid_blocks"
    assert messages == ["[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]


async def test_empty_texts_and_long_image_and_link_addresses_are_refused(
    fake: FakeSlack, client: AsyncWebClient,
) -> None:
    """A text object holds 1 to 3000 characters; an image's address 3000, its alt text 2000;
    a link button's address 3000."""
    dm = fake.dm_of(fake.add_user("a@northbridge.example").id)
    long_url = "https://example.org/" + "a" * 3000
    refused_blocks = {
        "/blocks/0/text/text": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
        "/blocks/0/elements/0/text": [{"type": "context", "elements": [{"type": "mrkdwn", "text": ""}]}],
        "/blocks/0/image_url": [{"type": "image", "image_url": long_url, "alt_text": "chart"}],
        "/blocks/0/alt_text": [{"type": "image", "image_url": "https://example.org/c.png",
                                "alt_text": "a" * 2001}],
        "/blocks/0/elements/0/url": [{"type": "actions", "elements": [{
            "type": "button", "action_id": "l", "url": long_url,
            "text": {"type": "plain_text", "text": "Read"}}]}],
    }
    for pointer, blocks in refused_blocks.items():
        error, messages = await refusal_of(client.chat_postMessage(channel=dm, text="x", blocks=blocks))
        assert error == "invalid_blocks" and messages[0].endswith(f"[json-pointer:{pointer}]"), messages
    assert fake.in_channel(dm) == []


async def test_each_method_needs_its_scope_and_the_token_has_the_manifests(
    fake: FakeSlack, client: AsyncWebClient,
) -> None:
    """The token carries the manifest's scopes; a method needing another is `missing_scope`
    with `needed`, as Slack answers (each method's "Required scopes")."""
    u = fake.add_user("a@northbridge.example")
    dm = fake.dm_of(u.id)
    fake.add_channel("C0GENERAL")
    assert (await client.conversations_info(channel="C0GENERAL"))["ok"]  # channels:read
    with pytest.raises(SlackApiError) as e:
        await client.conversations_info(channel=dm)  # a DM's info needs im:read: not asked for
    assert e.value.response["error"] == "missing_scope" and e.value.response["needed"] == "im:read"
    assert "im:write" in e.value.response["provided"]
    fake.scopes.discard("im:write")
    with pytest.raises(SlackApiError) as e:
        await client.conversations_open(users=u.id)
    assert e.value.response["needed"] == "im:write"


async def test_a_token_in_the_query_string_or_a_json_body_is_not_a_token(fake: FakeSlack) -> None:
    """Header or form-encoded body only (changelog: no more tokens in query strings for apps
    created after 24 Feb 2021; JSON bodies need the Authorization header)."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(fake.url + f"auth.test?token={BOT_TOKEN}") as r:
            assert (await r.json())["error"] == "not_authed"
        async with http.post(fake.url + "auth.test", json={"token": BOT_TOKEN}) as r:
            assert (await r.json())["error"] == "not_authed"
        async with http.post(fake.url + "auth.test", data={"token": BOT_TOKEN}) as r:
            assert (await r.json())["ok"]
        async with http.post(fake.url + "auth.test", headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as r:
            assert (await r.json())["ok"]


async def test_a_home_view_published_with_a_stale_hash_is_refused(
        fake: FakeSlack, client: AsyncWebClient) -> None:
    """views.publish's `hash`: hash_conflict when it is not the Home view's current one
    (https://api.slack.com/methods/views.publish); no hash, no check."""
    u = fake.add_user("a@northbridge.example")
    home = {"type": "home", "blocks": []}
    first = (await client.views_publish(user_id=u.id, view=home))["view"]["hash"]
    second = (await client.views_publish(user_id=u.id, view=home, hash=first))["view"]["hash"]
    assert second != first
    assert await refused(client.views_publish(user_id=u.id, view=home, hash=first)) == "hash_conflict"
    assert fake.home_hashes[u.id] == second
    assert (await client.views_publish(user_id=u.id, view=home))["ok"]
