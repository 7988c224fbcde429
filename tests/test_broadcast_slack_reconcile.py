"""Stories: a sender dies after Slack accepted some DMs but before it recorded them; the next
sender asks Slack (conversations.history, by the ledger key carried as message metadata) and
records those as sent instead of sending them again. A channel post whose history the app may
not read is not resent blindly either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.slack.port import DELIVERY_EVENT, SlackPort
from bot.broadcasts import ledger, service
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.people.tables import Person
from tests.fakes.slack_api import TEAM, FakeSlack
from tests.slack_fixture import slack_on

CHANGE = "changelead@northbridge.example"
TITLE = "Early win: family network meetings"
FAST = {"slack": Limits(workspace_per_s=1000, conversation_per_s=1000, burst=50)}


@pytest.fixture
async def slack(loaded: Core) -> AsyncIterator[tuple[FakeSlack, SlackPort]]:
    async with slack_on(loaded) as pair:
        yield pair


async def publish(core: Core, audience: str) -> str:
    async with core.db.session() as s:
        author = (await s.execute(select(Person.id).where(Person.email == CHANGE))).scalar_one()
    return await service.publish_to_staff(core, author, title=TITLE, text="In every team now.",
                                          audience=audience)


def titled(fake: FakeSlack) -> list[str]:
    """Channels that hold a copy of the broadcast (one entry per copy; the author's report
    mentions the title too, but carries no delivery key)."""
    return [m.channel for m in fake.messages if TITLE in m.text and m.metadata and not m.deleted]


async def test_dms_a_dead_sender_got_out_are_found_by_key_not_sent_twice(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock
) -> None:
    fake, port = slack
    bid = await publish(loaded, "teams: assessment")  # six people
    dead = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST))
    rows = await ledger.claim(loaded.db, dead.id, clock.now(), 10, dead.lease)
    assert len(rows) == 6
    msg = service.render((await service.status(loaded, bid)).broadcast)
    for row in rows[:3]:  # Slack accepted these; the sender died before recording them
        target = await dead._target(row)
        assert target is not None
        await port.send_keyed(target[1], msg, row.id)

    clock.advance(dead.lease + timedelta(seconds=1))
    assert await ledger.release_stale(loaded.db, clock.now()) == 6
    survivor = Sender(loaded, sender_id="replica-b", limiter=Limiter(FAST))
    await survivor.drain()

    copies = titled(fake)
    assert len(copies) == 6 and len(set(copies)) == 6, "each person has exactly one copy"
    assert survivor.stats.reconciled == 3 and survivor.stats.sent == 6
    history = fake.called("conversations.history")
    assert len(history) == 6 and all(c.args.get("include_all_metadata") for c in history)
    assert all(m.metadata == {"event_type": DELIVERY_EVENT, "event_payload": {"key": m_key}}
               for m, m_key in _keys(fake))
    st = await service.status(loaded, bid)
    assert st.counts["sent"] == 6 and st.broadcast.state == "done"
    async with loaded.db.session() as s:
        refs = {(d.conversation["conversation_id"], d.message_id) for d in (await s.execute(
            select(Delivery).where(Delivery.broadcast_id == bid))).scalars()}
    assert refs == {(m.channel, m.ts) for m in fake.messages if TITLE in m.text and m.metadata}, (
        "the ledger holds Slack's reference of the one real copy, reconciled or sent")


def _keys(fake: FakeSlack) -> list[tuple[object, str]]:
    return [(m, m.metadata["event_payload"]["key"]) for m in fake.messages
            if TITLE in m.text and m.metadata]


@pytest.mark.parametrize("may_read_history", [False, True])
async def test_a_channel_post_in_doubt_is_never_resent_blindly(
    loaded: Core, slack: tuple[FakeSlack, SlackPort], clock: FakeClock, may_read_history: bool
) -> None:
    fake, port = slack
    fake.add_channel("C0UPDATES")
    fake.history_scope = may_read_history
    bid = await publish(loaded, f"channels: slack:{TEAM}/C0UPDATES")
    dead = Sender(loaded, sender_id="replica-a", limiter=Limiter(FAST))
    (row,) = await ledger.claim(loaded.db, dead.id, clock.now(), 10, dead.lease)
    target = await dead._target(row)
    assert target is not None
    msg = service.render((await service.status(loaded, bid)).broadcast)
    await port.send_keyed(target[1], msg, row.id)

    clock.advance(dead.lease + timedelta(seconds=1))
    await ledger.release_stale(loaded.db, clock.now())
    await Sender(loaded, sender_id="replica-b", limiter=Limiter(FAST)).drain()

    assert titled(fake) == ["C0UPDATES"], "one copy, whatever the app may read"
    st = await service.status(loaded, bid)
    # The manifest grants no channel history scope (issue 17): the port does not even ask, so
    # a workspace that granted one more scope than the manifest behaves the same.
    assert st.counts["final_failed"] == 1 and fake.called("conversations.history") == []
    assert "could not be asked (slack: cannot check a channel's messages" in (
        await service.failures_csv(loaded, bid))
