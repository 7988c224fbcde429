"""A disclosure is never refused by the daily feedback limit (N53).

The staff form allows 5 items a day (spam and floods). A practitioner who had sent their five
ideas that morning and then wrote a disclosure was told "You have sent 5 pieces of feedback
today, which is the daily limit. Please try again tomorrow. Nothing was sent.": no "Before you
send", no route, no alert to the leads. The public pages already let what looks like a
disclosure through past their limit, up to a hard cap (bot/families/service.py
CONCERN_ALLOWANCE); staff feedback now does too.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.core import Core
from bot.feedback import counts
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import LEADS, OTHER, PRACTITIONER, give

CONCERN = "A boy on my caseload told me his stepdad hits him."
ROUTE = "Children's social care front door"


def _form_text(d: FakeDriver, email: str) -> str:
    form = d.form(email)
    assert form is not None
    return "\n".join([form.title, form.submit_label,
                      *(getattr(b, "text", "") for b in form.intro)])


async def _five(d: FakeDriver, email: str) -> None:
    for i in range(5):
        assert await give(d, email, f"Idea {i}: the rota should be published earlier.") is None


async def test_a_disclosure_past_the_daily_limit_shows_the_routes_and_reaches_the_leads(
        loaded: Core) -> None:
    """Five ideas in the morning, then a disclosure: "Before you send" with the routes, then,
    sent anyway, stored urgent and both leads alerted once; an idea after it is still refused.

    Before: the limit's words in the form at the first submit (no routes), and the same at
    "Send anyway"; nothing stored, no lead told."""
    d = FakeDriver(loaded)
    await _five(d, PRACTITIONER)
    await counts.flush(loaded)
    await d.say(PRACTITIONER, "feedback")
    values = {"text": CONCERN, "theme": "", "replies": "false"}
    assert await d.submit(PRACTITIONER, values) is None
    warned = _form_text(d, PRACTITIONER)
    assert "Before you send" in warned and ROUTE in warned, warned
    assert "daily limit" not in warned
    assert await d.submit(PRACTITIONER, values) is None  # Send anyway
    thanks = d.form(PRACTITIONER)
    assert thanks is not None and thanks.notice, _form_text(d, PRACTITIONER)
    async with loaded.db.session() as s:
        urgent = (await s.execute(select(FeedbackItem).where(
            FeedbackItem.urgent.is_(True)))).scalars().all()
    assert [i.text for i in urgent] == [CONCERN]
    for lead in LEADS:
        assert len([m for m in d.seen(lead) if m.startswith("URGENT")]) == 1
    errors = await give(d, PRACTITIONER, "Idea 6: fewer meetings on Fridays.")
    assert errors is not None and "daily limit" in " ".join(errors.values())


async def test_disclosures_past_the_limit_stop_at_a_hard_cap(loaded: Core) -> None:
    """Against a flood: disclosures past the limit are let through up to the allowance the
    public pages use (5 times the limit), then refused as anything else is."""
    d = FakeDriver(loaded)
    cap = 5 * fb.CONCERN_ALLOWANCE
    for i in range(cap):
        assert await give(d, OTHER, f"{CONCERN} ({i})") is None, i
    errors = await give(d, OTHER, CONCERN)
    assert errors is not None and "daily limit" in " ".join(errors.values())
    async with loaded.db.session() as s:
        n = len((await s.execute(select(FeedbackItem.id))).scalars().all())
    assert n == cap
