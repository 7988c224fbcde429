"""Stories: anonymous feedback end to end on every adapter, and what the database then holds."""

from __future__ import annotations

from datetime import date, datetime

from tests.test_feedback_helpers import (
    CHANGE,
    FEEDBACK_TABLES,
    LEADS,
    OTHER,
    PRACTITIONER,
    REF,
    as_text,
    dump,
    give,
    identity_strings,
    release,
)


def form_text(driver, email: str, *expected: str) -> None:  # type: ignore[no-untyped-def]
    """The open form shows `expected` in its title or intro.

    Checked where the driver reads intros back (every driver does now; kept for new ones).
    """
    form = driver.form(email)
    assert form is not None, driver.seen(email)[-2:]
    if not form.intro:
        return
    shown = "\n".join([form.title, *(getattr(b, "text", "") for b in form.intro)])
    for e in expected:
        assert e in shown, shown


def thanks_in_form(driver, email: str, *expected: str) -> None:  # type: ignore[no-untyped-def]
    """The form just sent now shows the thanks (nothing to fill in), with `expected` in it."""
    form = driver.form(email)
    assert form is not None and not form.inputs, driver.seen(email)[-2:]
    assert form.title == "Feedback sent"
    form_text(driver, email, "Thank you. Your feedback was sent anonymously.",
              "went to the safeguarding leads straight away", "LADO", "01632 960 200",
              "Whistleblowing line", "new feedback in batches, at 12:00 and 17:00 each day",
              *expected)


CONCERN = "A boy on my caseload told me his stepdad hits him and nobody has visited."
IDEA = "Family network meetings clash with court deadlines every week."


async def test_a_whole_feedback_session_leaves_nothing_that_links_feedback_to_its_author(driver) -> None:  # type: ignore[no-untyped-def]
    # The form says plainly it is not a referral route and lists the routes.
    await driver.say(PRACTITIONER, "feedback")
    form_text(driver, PRACTITIONER, "This is not a way to report a concern about a child",
              "LADO", "01632 960 200", "Whistleblowing line")
    dm = driver.seen(PRACTITIONER)
    assert await driver.submit(PRACTITIONER, {"text": IDEA, "theme": "family-networks",
                                              "replies": "true"}) is None
    # The thanks is in the form, with the reply route's days and the routes; the DM, which
    # the platform keeps by name and time, gets nothing (docs/invariants.md N19, N20).
    thanks_in_form(driver, PRACTITIONER, "If the change team answers within 90 days",
                   "feedback stop replies")
    assert driver.seen(PRACTITIONER) == dm

    # The change team lists it, replies; the author is told, reads it in a form, answers back.
    await release(driver.core)
    await driver.say(CHANGE, "feedback list family-networks")
    listing = driver.seen(CHANGE)[-1]
    assert IDEA in listing and "replies possible" in listing
    ref = REF.search(listing).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Thanks: we are moving them to Thursdays."}) is None
    notice = driver.seen(PRACTITIONER)[-1]
    assert "The change team answered your feedback" in notice
    assert "Thursdays" not in notice  # the words open in a form, not in the exportable DM
    await driver.tap(PRACTITIONER, "Read the answer")
    form_text(driver, PRACTITIONER, "Thursdays")
    dm = driver.seen(PRACTITIONER)
    assert await driver.submit(PRACTITIONER, {"text": "Thursdays would work much better."}) is None
    # Confirmed in the form just sent; the DM gets nothing (it dated the answer: N41).
    answered = driver.form(PRACTITIONER)
    assert answered is not None and not answered.inputs and answered.title == "Answer sent"
    form_text(driver, PRACTITIONER, "Your answer was sent anonymously to the change team.")
    assert driver.seen(PRACTITIONER) == dm
    await release(driver.core)
    await driver.say(CHANGE, f"feedback show #{ref}")
    assert "Author" in driver.seen(CHANGE)[-1] and "much better" in driver.seen(CHANGE)[-1]

    # A safeguarding-like item: routes again, then sent anyway.
    assert await give(driver, OTHER, CONCERN, confirm=False) is None
    assert driver.form(OTHER).form_id == "feedback.submit"
    form_text(driver, OTHER, "Before you send", "Children's social care front door")
    assert not [r for r in (await dump(driver.core.db))["feedback_items"] if r["text"] == CONCERN]
    dm = driver.seen(OTHER)
    assert await driver.submit(OTHER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    thanks_in_form(driver, OTHER)
    assert "answers within" not in "\n".join(getattr(b, "text", "") for b in driver.form(OTHER).intro)
    assert driver.seen(OTHER) == dm

    # Now read the whole database.
    tables = await dump(driver.core.db)
    for email, text in ((PRACTITIONER, IDEA), (OTHER, CONCERN)):
        who = await identity_strings(driver.core.db, email)
        display = email.split("@")[0]
        for name in FEEDBACK_TABLES:
            for row in tables[name]:
                for col, value in row.items():
                    shown = as_text(value)
                    assert not any(w in shown for w in who), f"{name}.{col} names {email}"
                    assert display not in shown
                    # Dates only: no precise time on any feedback row.
                    assert not isinstance(value, datetime), f"{name}.{col} is a timestamp"
        item = next(r for r in tables["feedback_items"] if r["text"] == text)
        assert item["day"] == date(2026, 11, 30)
        for name, rows in tables.items():
            if name in FEEDBACK_TABLES:
                continue
            for row in rows:
                joined = " ".join(as_text(v) for v in row.values())
                assert text not in joined and item["id"] not in joined, f"{name} mentions feedback"

    # A safeguarding-pattern item reached every safeguarding lead exactly once.
    for lead in LEADS:
        urgent = [m for m in driver.seen(lead) if m.startswith("URGENT")]
        assert len(urgent) == 1 and CONCERN in urgent[0], driver.seen(lead)
    await driver.core.tick()
    for lead in LEADS:
        assert len([m for m in driver.seen(lead) if m.startswith("URGENT")]) == 1


async def test_a_revoked_reply_handle_cannot_be_used(driver) -> None:  # type: ignore[no-untyped-def]
    assert await give(driver, PRACTITIONER, IDEA, replies=True) is None
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Could you tell us which court?"}) is None

    before = (await dump(driver.core.db))["feedback_handles"]
    await driver.tap(PRACTITIONER, "Stop replies")
    assert "the way back to you was destroyed" in driver.seen(PRACTITIONER)[-1]
    [after] = (await dump(driver.core.db))["feedback_handles"]
    # Destroyed where it lies: random bytes no key opens, a token key no button matches (the
    # row goes at 90 days, so the change team cannot see whose routes stopped together).
    assert [after["id"]] == [h["id"] for h in before]
    assert after["sealed"] != before[0]["sealed"] and after["token_key"] != before[0]["token_key"]

    # A reply is saved as before and reaches nobody (the author's stale buttons:
    # tests/test_feedback.py).
    seen = len(driver.seen(PRACTITIONER))
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Anything else?"}) is None
    assert "The author is told there is an answer when the app can reach them" in driver.seen(CHANGE)[-1]
    assert len(driver.seen(PRACTITIONER)) == seen
