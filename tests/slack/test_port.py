"""The Slack port against the fake Web API: retries on 429, error mapping, users, uploads."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from adapters.slack import render
from adapters.slack.config import SlackConfig
from adapters.slack.port import Directory, SlackPort, Workspaces
from bot.model import (
    Choice,
    Choices,
    ConversationRef,
    Image,
    Message,
    Text,
    UserRef,
    text_message,
)
from bot.port import AppNotAuthorised, PlatformError, RateLimited, TransientError, Unreachable
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def port_for(fake: FakeSlack, token: str = BOT_TOKEN, max_wait: float = 5.0) -> SlackPort:
    cfg = SlackConfig(signing_secret="s", bot_token=token, api_url=fake.url, max_inline_wait_s=max_wait)
    ws = Workspaces(cfg)
    await ws.start()
    return SlackPort(ws, Directory(ws))


def dm(fake: FakeSlack, email: str) -> ConversationRef:
    u = fake.user_by_email(email) or fake.add_user(email)
    return ConversationRef("slack", fake.team, fake.dm_of(u.id))


async def test_a_short_retry_after_is_waited_for_and_the_message_goes(fake: FakeSlack) -> None:
    port = await port_for(fake)
    fake.throttle["chat.postMessage"] = 2
    ref = await port.send(dm(fake, "a@northbridge.example"), text_message("hello"))
    assert ref.message_id and len(fake.in_channel(ref.conversation.conversation_id)) == 1
    assert len(fake.called("chat.postMessage")) == 3
    await port.workspaces.close()


async def test_a_long_retry_after_comes_back_as_rate_limited(fake: FakeSlack) -> None:
    fake.retry_after = 30
    port = await port_for(fake, max_wait=5)
    fake.throttle["chat.postMessage"] = 1
    started = time.monotonic()
    with pytest.raises(RateLimited) as e:
        await port.send(dm(fake, "a@northbridge.example"), text_message("hello"))
    assert e.value.retry_after == 30 and time.monotonic() - started < 2
    await port.workspaces.close()


async def test_the_fake_enforces_a_rate_limit_per_window(fake: FakeSlack) -> None:
    fake.limits["chat.postMessage"] = 3
    fake.retry_after = 30
    port = await port_for(fake, max_wait=1)
    conv = dm(fake, "a@northbridge.example")
    for i in range(3):
        await port.send(conv, text_message(f"m{i}"))
    with pytest.raises(RateLimited):
        await port.send(conv, text_message("one too many"))
    await port.workspaces.close()


@pytest.mark.parametrize("code, error", [
    ("channel_not_found", Unreachable), ("user_disabled", Unreachable),
    ("account_inactive", AppNotAuthorised), ("token_revoked", AppNotAuthorised),
    ("is_archived", Unreachable), ("internal_error", TransientError),
    ("invalid_blocks", PlatformError),
])
async def test_slack_errors_map_to_the_port_errors(fake: FakeSlack, code: str, error: type) -> None:
    port = await port_for(fake)
    fake.failures["chat.postMessage"] = [code]
    with pytest.raises(error):
        await port.send(dm(fake, "a@northbridge.example"), text_message("hello"))
    await port.workspaces.close()


async def test_an_unknown_channel_is_unreachable(fake: FakeSlack) -> None:
    port = await port_for(fake)
    with pytest.raises(Unreachable):
        await port.send(ConversationRef("slack", fake.team, "C0MISSING", is_direct=False), text_message("x"))
    await port.workspaces.close()


async def test_a_wrong_token_is_refused_by_the_fake(fake: FakeSlack) -> None:
    port = await port_for(fake, token="xoxb-stolen")
    with pytest.raises(AppNotAuthorised, match="invalid_auth"):
        await port.send(dm(fake, "a@northbridge.example"), text_message("hello"))
    await port.workspaces.close()


async def test_people_are_found_by_email_with_their_time_zone(fake: FakeSlack) -> None:
    fake.add_user("nightduty@northbridge.example", tz="Europe/Dublin")
    port = await port_for(fake)
    found = await port.find_user("nightduty@northbridge.example")
    assert found is not None and found.tz == "Europe/Dublin" and found.workspace == fake.team
    assert await port.find_user("nobody@northbridge.example") is None
    # The lookup filled the cache: users.info is not needed afterwards.
    again = await port.directory.user(fake.team, found.user_id)
    assert again == found and fake.called("users.info") == []
    await port.workspaces.close()


async def test_open_dm_edit_and_delete(fake: FakeSlack) -> None:
    u = fake.add_user("b@northbridge.example")
    port = await port_for(fake)
    conv = await port.open_dm(UserRef("slack", fake.team, u.id))
    ref = await port.send(conv, text_message("first"))
    await port.update(ref, text_message("second"))
    [posted] = fake.in_channel(conv.conversation_id)
    assert posted.text == "second" and posted.edits == 1
    await port.delete(ref)
    assert fake.in_channel(conv.conversation_id) == []
    with pytest.raises(Unreachable):
        await port.open_dm(UserRef("slack", fake.team, "U0GONE"))
    await port.workspaces.close()


async def test_a_png_chart_is_shared_in_the_conversation_never_as_a_private_block(fake: FakeSlack) -> None:
    """An upload without a channel is private and Slack refuses it in an image block
    (invalid_blocks); the chart goes into the DM as a file message, the text describes it."""
    port = await port_for(fake)
    msg = Message((Text("Results"), Image("Trend of answers, rising", png=PNG, title="Trend"),
                   Image("Logo", url="https://northbridge.example/logo.png")))
    ref = await port.send(dm(fake, "c@northbridge.example"), msg)
    shared, posted = fake.in_channel(ref.conversation.conversation_id)
    [fid] = list(fake.files)
    assert shared.files == [fid] and fake.files[fid]["bytes"] == PNG
    assert fake.files[fid]["channel"] == ref.conversation.conversation_id  # shared, not private
    assert not any(b.get("slack_file") for b in posted.blocks)
    assert "[image: Trend of answers, rising]" in str(posted.blocks)
    images = [b for b in posted.blocks if b["type"] == "image"]
    assert images[0]["image_url"] == "https://northbridge.example/logo.png"
    assert posted.text  # the fallback text is always set
    await port.workspaces.close()


async def test_a_chart_that_cannot_be_uploaded_leaves_the_text_only_message(fake: FakeSlack) -> None:
    port = await port_for(fake)
    fake.failures["files.getUploadURLExternal"] = ["not_allowed"]
    ref = await port.send(dm(fake, "c@northbridge.example"),
                          Message((Text("Results"), Image("Trend of answers, rising", png=PNG))))
    [posted] = fake.in_channel(ref.conversation.conversation_id)
    assert "[image: Trend of answers, rising]" in str(posted.blocks) and fake.files == {}
    await port.workspaces.close()


async def test_senders_of_a_workspace_wait_out_retry_after_together(fake: FakeSlack) -> None:
    """Eight senders share a 20-per-second limit: after the first 429 they all wait, then go one
    at a time, so refused calls stay a small fraction of delivered messages (issue 17: about 7
    refused calls per delivered DM when each sender retried on its own)."""
    fake.limits["chat.postMessage"] = 20
    fake.retry_after = 1
    port = await port_for(fake)
    convs = [dm(fake, f"p{i}@northbridge.example") for i in range(80)]
    gate = asyncio.Semaphore(8)

    async def one(conv: ConversationRef) -> None:
        async with gate:
            await port.send(conv, text_message("An early win"))

    await asyncio.gather(*(one(c) for c in convs))
    delivered = sum(len(fake.in_channel(c.conversation_id)) for c in convs)
    refused = fake.refused.get("chat.postMessage", 0)
    assert delivered == 80
    assert refused / delivered <= 0.2, (refused, delivered)
    await port.workspaces.close()


async def test_a_paused_workspace_refuses_at_once_without_asking_slack(fake: FakeSlack) -> None:
    fake.retry_after = 30
    port = await port_for(fake, max_wait=5)
    fake.throttle["chat.postMessage"] = 1
    conv = dm(fake, "a@northbridge.example")
    with pytest.raises(RateLimited):
        await port.send(conv, text_message("first"))
    calls = len(fake.called("chat.postMessage"))
    with pytest.raises(RateLimited) as e:
        await port.send(conv, text_message("second"))
    assert len(fake.called("chat.postMessage")) == calls and e.value.retry_after > 25
    await port.workspaces.close()


async def test_what_is_sent_to_slack_never_reaches_a_log_line_even_at_debug(
        fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    # slack_sdk formats each request and response for a debug line unless its client's
    # logger has a level of its own above DEBUG: feedback thanks and answers would be logged
    # (DESIGN.md: raw payloads are not logged), and formatting them costs CPU on every send.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="slack_sdk")
    port = await port_for(fake)
    ref = await port.send(dm(fake, "a@northbridge.example"),
                          Message((Text("Thank you. Your feedback was sent anonymously."),),
                                  fallback="Thank you."))
    await port.update(ref, text_message("Saved: Agree for question 1."))
    assert len(fake.called("chat.postMessage")) == 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "anonymously" not in logged and "Saved: Agree" not in logged
    await port.workspaces.close()


async def test_the_same_card_sent_to_many_is_encoded_once_and_each_gets_all_of_it(
        fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A survey's question card goes to many people: its blocks are rendered and JSON-encoded
    once, not once a recipient (bench/README.md, eleventh session); each person still gets the
    whole card, unfurling off, in their own DM and thread, and the card is edited the same way."""
    encoded: list[int] = []
    real = json.JSONEncoder.encode
    monkeypatch.setattr(json.JSONEncoder, "encode", lambda self, o: (
        encoded.append(1) if isinstance(o, dict) and "blocks" in o else None) or real(self, o))
    card = Message((Text("Question 1 of 3: *How supported do you feel?* <not a link> & more"),
                    Choices("pulse.a.r1.0", tuple(Choice(str(i), str(i)) for i in range(1, 6)))),
                   fallback="How supported do you feel?")
    port = await port_for(fake)
    convs = [dm(fake, f"p{i}@northbridge.example") for i in range(3)]
    convs[2] = ConversationRef("slack", fake.team, convs[2].conversation_id, thread_id="1.000200")
    refs = [await port.send(c, card) for c in convs]
    await port.update(refs[0], card)
    assert len(encoded) == 1  # before: once a send and once an edit (four)
    want = render.message_payload(card)
    calls = fake.called("chat.postMessage")
    assert [c.args["channel"] for c in calls] == [c.conversation_id for c in convs]
    assert [c.args.get("thread_ts") for c in calls] == [None, None, "1.000200"]
    for c in calls:
        assert (c.args["text"], c.args["blocks"]) == (want["text"], want["blocks"])
        assert c.args["unfurl_links"] is False and c.args["unfurl_media"] is False
    [edit] = fake.called("chat.update")
    assert (edit.args["ts"], edit.args["blocks"]) == (refs[0].message_id, want["blocks"])
    assert fake.in_channel(convs[0].conversation_id)[0].edits == 1
    await port.workspaces.close()
