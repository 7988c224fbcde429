"""Teams: a message over one activity's size (about 28 KB, in bytes as sent: a typographic
quote or dash is a six-byte escape) goes in parts, in order, and each item's buttons arrive in
the same activity as its text (bot.model.units, the rule Slack's parts keep too)."""

from __future__ import annotations

import re

from bot.feedback import service as fb
from bot.model import Choice, Choices, Message, Text
from tests.conformance.drivers.teams import TeamsDriver, plain_of
from tests.test_feedback_helpers import release

CHANGE = "changelead@northbridge.example"
# Pasted from a word processor: curly quotes and dashes, each six bytes in the activity.
QUOTE = "“The new recording templates take longer” — said at supervision, ‘again’. "
# Written in the practitioner's first language ("the new recording templates take longer
# than the old ones"): every letter a six-byte escape.
UKRAINIAN = "Нові шаблони записів забирають більше часу, ніж старі. "


async def test_a_page_of_feedback_quoting_people_goes_in_parts_each_item_with_its_buttons(
    teams: TeamsDriver,
) -> None:
    for i in range(20):
        await fb.store(teams.core, f"seed-person-{i}", text=f"Item {i:02d}: " + UKRAINIAN * 12,
                       theme_id=None, replies=False, concerns=())
    await teams.say(CHANGE, "help")  # past the first-contact privacy notice
    before = len(teams.seen(CHANGE))
    await release(teams.core)
    await teams.say(CHANGE, "feedback list")
    answer = teams.seen(CHANGE)[before:]
    assert len(answer) > 1 and answer[0].startswith("Feedback (20)")
    assert not [r for r in teams.fake.state.refused if r[0] == 413]
    text = "\n".join(answer)
    assert sorted(re.findall(r"Item (\d{2}):", text)) == [f"{i:02d}" for i in range(20)]
    for part in answer:
        # Every item in a part has its Read | Done below it, before the next item; no part
        # starts with buttons whose item is in the part before.
        assert not part.startswith("Read | Done")
        for chunk in re.split(r"\n(?=\S+ · )", part)[1:]:
            assert chunk.rstrip().endswith("Read | Done"), chunk[-80:]

    # A Done in the last part marks that part's first item done.
    first_of_last = re.findall(r"Item (\d{2}):", answer[-1])[0]
    await teams.tap(CHANGE, "Done")
    async with teams.core.db.session() as s:
        items = await fb.list_items(s, statuses=fb.STATUSES, limit=100)
    assert [i.text[:7] for i in items if i.status == "done"] == [f"Item {first_of_last}"]


async def test_one_long_question_keeps_its_answers_with_its_last_lines(teams: TeamsDriver) -> None:
    """A single paragraph too big for one activity is cut between lines; its buttons come
    with the last part, never alone."""
    await teams.say(CHANGE, "help")
    port = teams.core.ports["teams"]
    _uid, cid = teams.dm_id(CHANGE)
    from adapters.teams.port import conversation_ref

    conv = conversation_ref(teams.fake.state.tenant_id, cid, "personal", teams.fake.service_url)
    lines = [f"{i:03d} {QUOTE}" for i in range(240)]
    before = len(teams.seen(CHANGE))
    await port.send(conv, Message((Text("\n".join(lines)),
                                   Choices("q", (Choice("Agree", "a"), Choice("Disagree", "d"))))))
    parts = [plain_of(p.current) for p in teams._dm_posts(CHANGE)][before:]
    assert len(parts) > 1 and not [r for r in teams.fake.state.refused if r[0] == 413]
    assert [ln.strip() for ln in "\n".join(p.removesuffix("\nAgree | Disagree")
                                           for p in parts).split("\n")] == [
        ln.strip() for ln in lines]
    assert parts[-1].endswith("\nAgree | Disagree")
    assert parts[-1].split("\n")[-2].strip() == lines[-1].strip()
    assert not any("Agree" in p for p in parts[:-1])
