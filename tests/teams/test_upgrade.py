"""The council publishes a new version of the app package: Teams upgrades every install.

Teams sends `installationUpdate` with action `add-upgrade` (and `remove-upgrade` when an
upgrade takes the bot out of a scope) "to distinguish if the bot is being added/removed as part
of an app upgrade scenario, rather than a fresh install" (microsoft/botframework-sdk #6139; the
Bot Framework SDKs route both to their add/remove handlers). An upgrade is not a welcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.teams import references as refs
from bot.model import UserRef, text_message
from tests.conformance.drivers.teams import CHANNEL_ID, TeamsDriver

PRACTITIONER = "practitioner1@northbridge.example"
LEAD = "changelead@northbridge.example"
HELLO = "Hello! I'm staffvoice"


def later(days: int) -> str:
    """A Teams timestamp some days on (an upgrade comes long after the install)."""
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


async def test_an_app_upgrade_greets_nobody_again_and_keeps_every_chat_reachable(
    teams: TeamsDriver,
) -> None:
    uid, cid = teams.dm_id(PRACTITIONER)
    teams.fake.state.users[uid].installed = True
    await teams.post(teams.activity(uid, cid, "personal", type="installationUpdate", action="add"))
    assert sum(HELLO in t for t in teams.seen(PRACTITIONER)) == 1
    channel = f"teams:x/{CHANNEL_ID}"
    assert sum(HELLO in t for t in teams.channel(channel)) == 1

    # Version 1.0.1 of the package: Teams upgrades the personal install and the team's.
    lead = teams.fake.user_by_email(LEAD)
    await teams.post(teams.activity(uid, cid, "personal", type="installationUpdate",
                                    action="add-upgrade", timestamp=later(3)))
    await teams.post(teams.activity(lead.id, CHANNEL_ID, "channel", type="installationUpdate",
                                    action="add-upgrade", timestamp=later(3)))
    assert sum(HELLO in t for t in teams.seen(PRACTITIONER)) == 1
    assert sum(HELLO in t for t in teams.channel(channel)) == 1

    # Both conversations are still known, so the bot can still write first.
    for conversation in (cid, CHANNEL_ID):
        row = await refs.conversation(teams.core.db, conversation)
        assert row is not None and row.installed
    port = teams.core.ports["teams"]
    dm = await port.open_dm(UserRef("teams", teams.fake.state.tenant_id, uid))
    await port.send(dm, text_message("The pulse survey for December is open."))
    assert teams.seen(PRACTITIONER)[-1] == "The pulse survey for December is open."


async def test_an_upgrade_that_removes_the_bot_from_a_chat_forgets_it(teams: TeamsDriver) -> None:
    uid, cid = teams.dm_id(PRACTITIONER)
    teams.fake.state.users[uid].installed = True
    await teams.post(teams.activity(uid, cid, "personal", type="installationUpdate", action="add"))
    await teams.post(teams.activity(uid, cid, "personal", type="installationUpdate",
                                    action="remove-upgrade", timestamp=later(3)))
    row = await refs.conversation(teams.core.db, cid)
    assert row is not None and not row.installed
