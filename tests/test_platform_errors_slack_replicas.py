"""Story: two replicas of the Slack adapter on one database (OAuth installs). Slack sends
app_uninstalled to one of them only; an admin reinstalls the app, which stores a new token.
The other replica, never restarted, reaches people again with the new token: a dead token is
not kept for the life of the process on the replicas the event missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.slack.config import SlackConfig
from adapters.slack.installations import DatabaseInstallationStore, Sealer
from adapters.slack.port import Directory, SlackPort, Workspaces
from bot.core import Core
from bot.model import MessageRef, UserRef, text_message
from bot.port import AppNotAuthorised
from tests.conformance.drivers.slack import SlackDriver
from tests.fakes.slack_api import FakeSlack
from tests.slack.test_install import install

PRACTITIONER = "practitioner2@northbridge.example"


@pytest.fixture
async def replicas(loaded: Core) -> AsyncIterator[tuple[SlackDriver, SlackPort]]:
    """Replica A: the whole adapter behind its HTTP endpoints (installs, events). Replica B:
    the port another process builds from the same database's installations."""
    fake = FakeSlack(tokens=set(), retry_after=0)
    a = SlackDriver(loaded, fake, env={
        "SLACK_BOT_TOKEN": "", "SLACK_CLIENT_ID": fake.client_id,
        "SLACK_CLIENT_SECRET": fake.client_secret,
    })
    await a.start()
    assert a.adapter is not None
    cfg = SlackConfig(signing_secret="s", client_id=fake.client_id,
                      client_secret=fake.client_secret, api_url=fake.url)
    ws = Workspaces(cfg, DatabaseInstallationStore(loaded.db, Sealer(a.adapter._secret)))
    await ws.start()
    try:
        yield a, SlackPort(ws, Directory(ws))
    finally:
        await ws.close()
        await a.close()


async def dm(port: SlackPort, fake: FakeSlack, text: str) -> MessageRef:
    user = fake.user_by_email(PRACTITIONER)
    assert user is not None
    conv = await port.open_dm(UserRef("slack", fake.team, user.id))
    return await port.send(conv, text_message(text))


def seen(fake: FakeSlack) -> list[str]:
    user = fake.user_by_email(PRACTITIONER)
    assert user is not None
    return [m.text for m in fake.in_channel(fake.dm_of(user.id))]


async def test_a_replica_the_uninstall_event_missed_uses_the_reinstalled_token(
    replicas: tuple[SlackDriver, SlackPort],
) -> None:
    a, b = replicas
    fake = a.fake
    await install(a)
    first = fake.called("oauth.v2.access")
    assert first, "installed through the OAuth redirect"
    await dm(b, fake, "Before the uninstall")
    [old] = {c.token for c in fake.called("chat.postMessage")}

    # An admin uninstalls the app: Slack revokes the token and tells replica A only.
    fake.revoke("token_revoked", token=old)
    assert await a.post_event({"type": "app_uninstalled"}) == 200
    with pytest.raises(AppNotAuthorised):
        await dm(b, fake, "During the uninstall")

    # The admin reinstalls it (through replica A): a new token, stored in the database.
    await install(a, code="code-456")
    fake.calls.clear()
    await dm(b, fake, "After the reinstall")
    used = {c.token for c in fake.called("chat.postMessage")}
    assert used and old not in used, "replica B uses the new token, without a restart"
    assert seen(fake) == ["Before the uninstall", "After the reinstall"]
