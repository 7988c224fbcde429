"""Personal answers asked for where others can read go to the person privately; the channel or
group chat hears only that they did, with nothing personal in it (issue 17 item 12). The rule is
the core's, so it holds for every platform whose events say the conversation is shared."""

from __future__ import annotations

import json

from adapters.fake.port import FakePort
from bot.core import FORM_PRIVATELY, PRIVATELY, Core
from bot.model import ConversationRef, MessageEvent, UserRef, plain_text
from tests.conformance.drivers.teams import CHANNEL_ID, TeamsDriver, dialog_button, plain_of

WHO = "practitioner1@northbridge.example"
GROUP = "19:groupchat-7@thread.v2"


async def group_mention(teams: TeamsDriver, email: str, text: str) -> None:
    u = teams.fake.user_by_email(email)
    teams.fake.state.users[u.id].installed = True
    a = teams.activity(u.id, GROUP, "groupChat", text=f"<at>staffvoice</at> {text}")
    a["entities"].append({"type": "mention", "text": "<at>staffvoice</at>",
                          "mentioned": {"id": teams.fake.state.bot_id, "name": "staffvoice"}})
    await teams.post(a)


async def test_feedback_asked_in_a_group_chat_opens_privately_and_the_group_is_told(
    teams: TeamsDriver,
) -> None:
    await teams.say(WHO, "help")  # the personal chat exists
    await group_mention(teams, WHO, "feedback")
    in_group = [plain_of(p.current) for p in teams.fake.in_conversation(GROUP)]
    assert in_group == [PRIVATELY]
    mine = teams._dm_posts(WHO)
    assert dialog_button(mine[-1].current) is not None  # the form's button is in the DM
    assert not any(dialog_button(p.current) for p in teams.fake.in_conversation(GROUP))


async def test_whoami_in_a_channel_answers_in_the_dm_and_the_thread_holds_nothing_personal(
    teams: TeamsDriver,
) -> None:
    await teams.say(WHO, "help")
    await teams.mention(WHO, "whoami")
    thread = [p for p in teams.fake.in_conversation(CHANNEL_ID) if ";messageid=" in p.conversation_id]
    assert [plain_of(p.current) for p in thread] == [PRIVATELY]
    posted = json.dumps([p.versions for p in teams.fake.in_conversation(CHANNEL_ID)])
    assert WHO not in posted and "Roles" not in posted
    assert f"Email: {WHO}" in teams.seen(WHO)[-1]


async def test_someone_the_bot_cannot_message_privately_is_told_how_without_the_answer(
    teams: TeamsDriver,
) -> None:
    from bot.people.service import ENROLMENT
    from bot.programme.core_sections import set_setting

    async with teams.core.db.session() as s:  # not in the programme file, but may join
        await set_setting(s, ENROLMENT, {"self_enrol": True, "contact": ""})
    stranger = teams.fake.add_user("visitor@northbridge.example", "Visiting worker")
    a = teams.activity(stranger.id, GROUP, "groupChat", text="<at>staffvoice</at> whoami")
    a["entities"].append({"type": "mention", "text": "<at>staffvoice</at>",
                          "mentioned": {"id": teams.fake.state.bot_id, "name": "staffvoice"}})
    await teams.post(a)
    said = [plain_of(p.current) for p in teams.fake.in_conversation(GROUP)]
    assert len(said) == 1 and "can't message you privately" in said[0]
    assert "visitor@" not in said[0]


async def test_the_same_rule_on_another_platform(loaded: Core) -> None:
    """The rule lives in the core: any adapter whose event says 'shared' gets it (Slack too)."""
    port = FakePort()
    loaded.add_port(port)
    user = UserRef("fake", port.workspace, f"U-{WHO}", email=WHO)
    channel = ConversationRef("fake", port.workspace, "C-general", "1700.1", is_direct=False)
    await loaded.handle(MessageEvent("e1", user, channel, text="whoami", mentioned=True), port)
    shared = [plain_text(p.message) for p in port.messages("C-general")]
    assert shared == [PRIVATELY]
    dm = [plain_text(p.message) for p in port.messages(port.dm_id(user.user_id))]
    assert any(f"Email: {WHO}" in t for t in dm)


async def test_a_form_opened_from_a_shared_conversation_says_so_there(loaded: Core) -> None:
    port = FakePort()
    loaded.add_port(port)
    lead = "changelead@northbridge.example"
    user = UserRef("fake", port.workspace, f"U-{lead}", email=lead)
    channel = ConversationRef("fake", port.workspace, "C-general", None, is_direct=False)
    await loaded.handle(MessageEvent("e3", user, channel, text="broadcast", mentioned=True), port)
    assert port.forms[user.user_id].title == "New broadcast"
    assert [plain_text(p.message) for p in port.messages("C-general")] == [FORM_PRIVATELY]
