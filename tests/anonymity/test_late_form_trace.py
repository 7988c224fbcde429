"""A motivated intruder with Slack's copy of people's DMs, against a form the core was too slow
to open.

A slash command, a shortcut or a button that opens a modal carries a trigger_id that lives 3
seconds. When the core missed it, the Slack adapter posted "Feedback: tap the button to open the
form." with an "Open the form" button in the person's DM, at that second. The intruder (a
compliance administrator, docs/invariants.md N19/N20) reads every message of every DM with its
time: "this person opened the feedback form at 10:43", beside the change team's listing and the
leads' urgent alert, can name an author. The offer now goes in an ephemeral message, which Slack
keeps nowhere (not in conversations.history, not in exports), and its button's own fresh
trigger_id opens the form.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update

from adapters.slack.tables import SlackPendingForm
from bot.core import Core
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_feedback_helpers import OTHER, PRACTITIONER

CONCERN = "My colleague hits the children in the contact centre when nobody is looking."
IDEA = "The new rota works well for the duty team."


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[SlackDriver]:
    driver = SlackDriver(loaded, FakeSlack(retry_after=0))
    await driver.start()
    yield driver
    await driver.close()


async def history(d: SlackDriver, email: str) -> list[str]:
    """The DM as the Web API returns it (conversations.history), which is what exports hold."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=d.fake.url)
    resp = await client.conversations_history(channel=d.fake.dm_of(d.user(email).id))
    return [str(m.get("text") or "") for m in resp["messages"]]


async def send(d: SlackDriver, email: str, text: str) -> None:
    values = {"text": text, "theme": "", "replies": "false"}
    assert await d.submit(email, values) is None
    form = d.form(email)
    if form is not None and form.form_id == "feedback.submit":  # "Before you send": send anyway
        assert await d.submit(email, values) is None
    form = d.form(email)
    assert form is not None and form.title == "Feedback sent", form


async def test_a_slash_command_the_core_was_too_slow_for_leaves_nothing_in_the_dm(
        slack: SlackDriver) -> None:
    """One person runs `/voice feedback` while the core is slow (its trigger has expired when
    views.open is called), opens the form from what they are shown and sends a disclosure; a
    colleague runs it while the core is quick and sends an idea. Both DMs, as Slack keeps them,
    read the same (nothing); the slow one still got to the form, from an ephemeral button."""
    d = slack
    assert d.adapter is not None
    # The first person's `/voice feedback` meets a core slower than Slack's 3 s trigger.
    d.fake.trigger_ttl = 0.0
    status, _ = await d.command(PRACTITIONER, "feedback")
    assert status == 200
    await d.adapter.drain()
    assert d.fake.called("views.open"), "the modal was tried first"
    assert d.form(PRACTITIONER) is None  # the trigger had expired
    assert d.seen(PRACTITIONER) == [], d.seen(PRACTITIONER)
    shown = d.shown_ephemerally(PRACTITIONER)
    assert len(shown) == 1 and "Open the form" in shown[0], shown
    # The person taps it: the tap's own trigger is fresh.
    d.fake.trigger_ttl = 3.0
    await d.tap(PRACTITIONER, "Open the form")
    assert d.form(PRACTITIONER) is not None, "they still got to the form"
    await send(d, PRACTITIONER, CONCERN)
    # The colleague: a quick core, the modal at once.
    status, _ = await d.command(OTHER, "feedback")
    assert status == 200
    await d.adapter.drain()
    assert d.form(OTHER) is not None
    await send(d, OTHER, IDEA)

    assert d.seen(PRACTITIONER) == d.seen(OTHER) == [], d.seen(PRACTITIONER)
    assert await history(d, PRACTITIONER) == await history(d, OTHER) == []
    # Nor the channel the command was typed in (the leads' DMs hold the urgent alert: N20).
    theirs = {d.fake.dm_of(d.user(e).id) for e in (PRACTITIONER, OTHER)} | {"C0GENERAL"}
    assert [m for m in d.fake.messages if m.channel in theirs] == []
    assert not [c for c in d.fake.called("chat.postMessage") if c.args["channel"] in theirs]
    # The offer went through the command's response_url, ephemerally, and nothing else.
    offers = [c for c in d.fake.calls if c.method == "response_url"]
    assert [o.args.get("response_type") for o in offers] == ["ephemeral"], offers
    assert [o.token for o in offers] == [None]  # the URL is the credential: no bot token


async def test_a_shortcut_the_core_was_too_slow_for_leaves_nothing_in_the_dm(
        slack: SlackDriver) -> None:
    """A global shortcut carries no response_url: the button is shown by chat.postEphemeral in
    the person's DM with the app, which conversations.history never returns."""
    d = slack
    assert d.adapter is not None
    d.fake.trigger_ttl = 0.0
    await d.shortcut(PRACTITIONER, "feedback.open")
    await d.adapter.drain()
    assert d.form(PRACTITIONER) is None
    assert [c.args["user"] for c in d.fake.called("chat.postEphemeral")] == [
        d.user(PRACTITIONER).id]
    d.fake.trigger_ttl = 3.0
    await d.tap(PRACTITIONER, "Open the form")
    assert d.form(PRACTITIONER) is not None
    await send(d, PRACTITIONER, IDEA)
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)


async def test_a_used_up_response_url_falls_back_to_another_ephemeral_message(
        slack: SlackDriver) -> None:
    """Past its 5 posts (or 30 minutes) a response_url is refused: the offer goes by
    chat.postEphemeral instead, never by a message in the DM."""
    d = slack
    assert d.adapter is not None
    d.fake.trigger_ttl = 0.0
    d.fake.expire_response_urls()  # handed out so far: none; the next is expired below
    original = d.fake.new_response_url

    def expired(user_id: str, channel: str) -> str:
        url = original(user_id, channel)
        d.fake.expire_response_urls()
        return url

    d.fake.new_response_url = expired  # type: ignore[method-assign]
    await d.command(PRACTITIONER, "feedback")
    await d.adapter.drain()
    d.fake.new_response_url = original  # type: ignore[method-assign]
    assert [c.method for c in d.fake.calls if c.method in ("response_url", "chat.postEphemeral")] \
        == ["response_url", "chat.postEphemeral"]
    d.fake.trigger_ttl = 3.0
    await d.tap(PRACTITIONER, "Open the form")
    assert d.form(PRACTITIONER) is not None
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)


async def tap_home(d: SlackDriver, email: str, label: str) -> None:
    """Tap a button in the person's Home tab, as Slack sends it: the view, its blocks, no
    response_url."""
    u = d.user(email)
    home = d.fake.homes[u.id]
    block, button = next((b, e) for b in home["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["text"]["text"] == label)
    status, _ = await d.post_interaction({
        "type": "block_actions", "user": d._user_json(u), "team": {"id": d.fake.team},
        "container": {"type": "view", "view_id": f"VH{u.id}"},
        "trigger_id": d.fake.new_trigger(u.id),
        "view": {"id": f"VH{u.id}", "type": "home", "blocks": home["blocks"],
                 "hash": d.fake.home_hashes[u.id]},
        "actions": [{"action_id": button["action_id"], "block_id": block["block_id"],
                     "value": button.get("value", ""), "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    })
    assert status == 200


async def test_a_home_tab_button_the_core_was_too_slow_for_leaves_nothing_in_the_dm(
        slack: SlackDriver) -> None:
    """A tap in the Home tab carries no response_url: the button goes at the top of the Home
    tab the person is looking at (a view, not a message), and opens the form from there."""
    d = slack
    assert d.adapter is not None
    await d.open_home(PRACTITIONER)
    d.fake.trigger_ttl = 0.0
    await tap_home(d, PRACTITIONER, "Give anonymous feedback")
    await d.adapter.drain()
    assert d.form(PRACTITIONER) is None
    home = d.fake.homes[d.user(PRACTITIONER).id]
    assert "Open the form" in str(home["blocks"][:2]), home["blocks"][:3]
    assert "Give anonymous feedback" in str(home["blocks"])  # the Home tab is still there
    d.fake.trigger_ttl = 3.0
    await tap_home(d, PRACTITIONER, "Open the form")
    assert d.form(PRACTITIONER) is not None
    await send(d, PRACTITIONER, IDEA)
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)
    assert not d.fake.called("chat.postEphemeral") and not d.fake.called("chat.postMessage")


async def test_a_home_tab_offer_does_not_overwrite_a_home_tab_drawn_since_the_tap(
        slack: SlackDriver) -> None:
    """The person taps "Give anonymous feedback" in a Home tab that was drawn again since
    (opened on their phone meanwhile); the core misses the trigger. The offer's views.publish
    carries the hash of the view tapped, Slack answers hash_conflict, and the offer goes
    ephemerally instead (still nothing in the DM). Before: published with no hash, the tapped
    (older) blocks overwrote the Home tab drawn since."""
    d = slack
    assert d.adapter is not None
    uid = d.user(PRACTITIONER).id
    await d.open_home(PRACTITIONER)
    tapped = dict(d.fake.homes[uid]), d.fake.home_hashes[uid]
    await d.open_home(PRACTITIONER)  # drawn again: a new hash
    drawn = d.fake.home_hashes[uid]
    assert drawn != tapped[1]
    d.fake.trigger_ttl = 0.0
    block, button = next((b, e) for b in tapped[0]["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["text"]["text"] == "Give anonymous feedback")
    status, _ = await d.post_interaction({
        "type": "block_actions", "user": d._user_json(d.user(PRACTITIONER)),
        "team": {"id": d.fake.team}, "container": {"type": "view", "view_id": f"VH{uid}"},
        "trigger_id": d.fake.new_trigger(uid),
        "view": {"id": f"VH{uid}", "type": "home", "blocks": tapped[0]["blocks"],
                 "hash": tapped[1]},
        "actions": [{"action_id": button["action_id"], "block_id": block["block_id"],
                     "value": button.get("value", ""), "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    })
    assert status == 200
    await d.adapter.drain()
    assert [c.args.get("hash") for c in d.fake.called("views.publish")][-1] == tapped[1]
    assert d.fake.home_hashes[uid] == drawn  # the Home tab drawn since is kept
    assert "Open the form" not in str(d.fake.homes[uid]["blocks"])
    assert [t for t in d.shown_ephemerally(PRACTITIONER) if "Open the form" in t]
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)


async def test_an_expired_offer_says_so_ephemerally(slack: SlackDriver) -> None:
    """The button's form is kept a day; tapped after that, "That form has expired" is shown
    to the person alone too (before: posted in their DM, dating the tap)."""
    d = slack
    assert d.adapter is not None
    d.fake.trigger_ttl = 0.0
    await d.command(PRACTITIONER, "feedback")
    await d.adapter.drain()
    async with d.core.db.session() as s:
        await s.execute(update(SlackPendingForm).values(
            expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    d.fake.trigger_ttl = 3.0
    await d.tap(PRACTITIONER, "Open the form")
    await d.adapter.drain()
    assert d.form(PRACTITIONER) is None
    assert any("expired" in t for t in d.shown_ephemerally(PRACTITIONER))
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)


async def test_a_response_url_that_is_not_slacks_is_never_contacted(slack: SlackDriver) -> None:
    """A (signature-checked) slash command whose response_url names another host: an internal
    address, a cloud metadata service, anyone's server. A leaked signing secret must not make
    staffvoice post there (with the offer's token, or anything else): the offer goes by
    chat.postEphemeral instead, and still opens the form."""
    d = slack
    assert d.adapter is not None
    hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    original = d.fake.new_response_url
    try:
        for url in (f"http://127.0.0.1:{port}/respond/x",  # same host as the fake, not its port
                    f"http://hooks.slack.com@127.0.0.1:{port}/commands/x",
                    f"http://localhost:{port}/commands/x"):
            d.fake.new_response_url = lambda _u, _c, url=url: url  # type: ignore[method-assign]
            d.fake.trigger_ttl = 0.0
            assert (await d.command(PRACTITIONER, "feedback"))[0] == 200
            await d.adapter.drain()
    finally:
        d.fake.new_response_url = original  # type: ignore[method-assign]
        await runner.cleanup()
    assert hits == []
    assert [c.method for c in d.fake.calls if c.method in ("response_url", "chat.postEphemeral")] \
        == ["chat.postEphemeral"] * 3
    assert sum("Open the form" in t for t in d.shown_ephemerally(PRACTITIONER)) == 3
    d.fake.trigger_ttl = 3.0
    await d.tap(PRACTITIONER, "Open the form")
    assert d.form(PRACTITIONER) is not None
    assert d.seen(PRACTITIONER) == [] == await history(d, PRACTITIONER)
