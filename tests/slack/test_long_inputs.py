"""Long text in Slack forms: a Slack box takes at most 3,000 characters (a plain_text_input's
max_length is "between 1 and 3000", and the client will not submit more: .../block-elements/
plain-text-input-element). A form that asks for more shows several boxes and reads them back
as one text, so a person on Slack can give what a person on Teams can, and nothing is cut."""

from __future__ import annotations

from sqlalchemy import select

from bot.broadcasts.tables import Broadcast
from bot.pulse.tables import PulseQuestion
from tests.conformance.drivers.slack import SlackDriver
from tests.conformance.test_broadcasts import GOOD

CHANGE = "changelead@northbridge.example"
# 45 questions, about 3,900 characters: more than one Slack box, within the form's 5,000.
QUESTIONS = "\n".join(
    f"rating: Question {i:02d}: I have had the time I need for family network meetings this week"
    for i in range(1, 46))


async def test_a_change_lead_defines_a_survey_of_45_questions_in_slack_and_every_one_is_kept(
    slack: SlackDriver,
) -> None:
    assert 3000 < len(QUESTIONS) <= 5000
    await slack.say(CHANGE, "pulse new")
    opened = slack.fake.open_view(slack.user(CHANGE).id)
    assert opened is not None  # Slack accepted the modal: every box within its limits
    boxes = [b for b in opened.view["blocks"] if b["block_id"].startswith("questions")]
    assert len(boxes) == 2 and all(b["element"]["max_length"] <= 3000 for b in boxes)
    errors = await slack.submit(CHANGE, {
        "id": "long-check", "title": "Long check", "every": "weekly", "when": "mon 10:00",
        "questions": QUESTIONS})
    assert errors is None, errors
    assert "Created long-check" in slack.seen(CHANGE)[-1]
    async with slack.core.db.session() as s:
        stored = (await s.execute(select(PulseQuestion.text).where(PulseQuestion.survey_id == "long-check")
                                  .order_by(PulseQuestion.position))).scalars().all()
    assert stored == [line.removeprefix("rating: ") for line in QUESTIONS.splitlines()]


async def test_a_broadcast_over_slacks_limit_is_told_its_length_and_nothing_is_lost(
    slack: SlackDriver,
) -> None:
    """The compose form takes twice the limit, so an over-long text reaches the bot and is
    answered with its length (in a Slack box it would be the client's error, and a paste cut)."""
    text = "Family network meetings are now offered in every locality. " * 60  # 3,600
    await slack.say(CHANGE, "broadcast")
    errors = await slack.submit(CHANGE, {**GOOD, "text": text})
    assert errors is not None and f"{len(text.strip()):,} characters" in errors["text"], errors
    assert slack.form(CHANGE) is not None  # still in the modal, to shorten
    async with slack.core.db.session() as s:
        assert (await s.execute(select(Broadcast))).first() is None
