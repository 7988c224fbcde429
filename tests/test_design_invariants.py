"""DESIGN.md's anonymity and safeguarding rules as invariants, where no other test proves them.

docs/invariants.md maps every rule to the test(s) that prove it. The tests here go through the
public paths (the conformance drivers, core.handle, the feature services), assert what a viewer
sees and what the database holds, and run on SQLite and PostgreSQL. A rule the code breaks today
is an xfail(strict=True) test whose reason names the bug, so the fix turns it green.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

import tests.conformance.conftest as conformance_fixtures
import tests.slack.conftest as slack_fixtures
import tests.teams.conftest as teams_fixtures
from bot import logs
from bot.core import Core
from bot.feedback import safeguarding
from bot.people.tables import Setting
from bot.pulse.tables import PulsePending
from storage.base import new_id
from tests.conftest import MONDAY_10, ROOT
from tests.test_feedback_helpers import (
    CHANGE,
    LEADS,
    OTHER,
    PRACTITIONER,
    REF,
    as_text,
    dump,
    give,
    identity_strings,
    ref_for,
    release,
)
from tests.test_reports_seed import emails, everyone_answers, seed_round

# Fixtures of other test folders, used here by name: every conformance driver, and the Slack
# and Teams adapters each on a real server.
driver = conformance_fixtures.driver
slack = slack_fixtures.slack
teams = teams_fixtures.teams

P2 = "practitioner2@northbridge.example"
P3 = "practitioner3@northbridge.example"
ASSESSMENT = [f"practitioner{i}@northbridge.example" for i in range(1, 6)]
ASSESSMENT_LEAD = "lead.assessment@northbridge.example"
FRONT_DOOR = [f"practitioner{i}@northbridge.example" for i in (11, 12, 13)]
IDEA = "Family network meetings clash with court deadlines every week."
CONCERN = "A boy on my caseload told me his stepdad hits him and nobody has visited."
ANSWER_CONCERN = "Also, a colleague hit a child in the contact centre last week."
COMMENT = "Supervision slots keep moving and nobody says why."
WEEK = timedelta(days=7)
# Hex characters two random 24-hex keys share at the start by chance (odds 16^-5 per pair).
MAX_SHARED_PREFIX = 4
FIRST_TAP = (
    "bot/core.py _remember_dm(): `or ident.updated_at is None` stamps identities.updated_at with "
    "the precise time of a person's first event, and core.dm()/_store_dm()/discover() never set "
    "it; for someone first reached by a survey invitation that first event is their first "
    "answer tap, so the identity row records when they answered (and that they did)"
)


# --- shared steps ------------------------------------------------------------------------------


def form_text(d: Any, email: str) -> str:
    """Everything the open form shows: title, intro, labels, submit (Teams: read off the card)."""
    form = d.form(email)
    assert form is not None, d.seen(email)[-2:]
    parts = [form.title, form.submit_label, *(getattr(b, "text", "") for b in form.intro),
             *(i.label for i in form.inputs)]
    if d.name == "teams":
        # Read the card the person sees too (Fields and labels the driver's form() leaves out).
        from tests.conformance.drivers.teams import _actions, _intros, _texts, card_of

        found = d._open_form(email)
        assert found is not None
        card = card_of(found[0].current) or {}
        parts += [t for el in _intros(card) for t in _texts(el)]
        parts += [str(a.get("title", "")) for el in card.get("body", []) for a in _actions(el)]
    return "\n".join(parts)


async def pulse_round(d: Any) -> None:
    """Monday 10:00: the weekly round opens and everyone at work gets question 1."""
    await d.core.tick()


async def answer_all(d: Any, email: str, labels: tuple[str, ...], comment: str = "") -> None:
    for label in labels:
        await d.tap(email, label)
    if comment:
        await d.tap(email, "Write a comment")
        assert await d.submit(email, {"comment": comment}) is None


async def rows_naming(core: Core, who: set[str], skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every row (as text) of every table but `skip` that contains one of `who`."""
    out: dict[str, list[str]] = {}
    for name, rows in (await dump(core.db)).items():
        if name in skip:
            continue
        for row in rows:
            text = " ".join(f"{k}={as_text(v)}" for k, v in sorted(row.items()))
            if any(w in text for w in who):
                out.setdefault(name, []).append(text)
    return {k: sorted(v) for k, v in out.items()}


def shared_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@contextmanager
def debug_log_lines() -> Iterator[list[str]]:
    """Production logging at DEBUG (bot.logs.setup), every record kept as its JSON line."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logs.JsonFormatter().format(record))

    root = logging.getLogger()
    names = ("slack_bolt", "slack_sdk", "aiohttp.access", "microsoft_agents", "sqlalchemy", "msal",
             "alembic", "apscheduler", "asyncio", "aiosqlite", "asyncpg")
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names}
    logs.setup("DEBUG", json_lines=True)
    root.addHandler(Keep())
    try:
        yield lines
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for n, level in saved[2].items():
            logging.getLogger(n).setLevel(level)


# --- anonymity: pulse answers ------------------------------------------------------------------


async def test_pulse_answer_rows_name_nobody_and_carry_no_time(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: answers stored without any person id; answer rows carry the round, not a time."""
    await pulse_round(driver)
    await answer_all(driver, PRACTITIONER, ("4", "2", "Skip", "5", "1", "9"), COMMENT)
    await answer_all(driver, P2, ("3", "3", "3"))
    tables = await dump(driver.core.db)
    answers = tables["pulse_pending"]
    # Nine answers, the comment among them, sealed until the round closes: never in clear.
    assert len(answers) == 9 and not any(COMMENT in as_text(v) for r in answers for v in r.values())
    for email in (PRACTITIONER, P2):
        who = await identity_strings(driver.core.db, email) | {email.split("@")[0]}
        for name in ("pulse_pending", "pulse_completions"):
            for row in tables[name]:
                for col, value in row.items():
                    assert not any(w in as_text(value) for w in who), f"{name}.{col} names {email}"
                    assert not isinstance(value, datetime), f"{name}.{col} is a time"
    assert {r["round_id"] for r in answers} == {tables["pulse_rounds"][0]["id"]}


async def test_answering_writes_nothing_to_any_row_that_names_the_respondent(driver) -> None:  # type: ignore[no-untyped-def]
    """Rule: who has answered is stored apart, with no link to the answers.

    Answering every question (and finishing) must leave every row that names the respondent
    exactly as it was when the round opened: completion is recorded by key and copied onto the
    participation row only in batches, so no row of theirs changes at the moment they answer.
    (processed_events: the next test.)
    """
    await pulse_round(driver)
    who = await identity_strings(driver.core.db, PRACTITIONER)
    before = await rows_naming(driver.core, who, skip=("processed_events",))
    assert before.get("pulse_participation"), "the round did not invite the practitioner"
    await answer_all(driver, PRACTITIONER, ("4", "2", "Skip", "5", "1", "9"), COMMENT)
    assert "Thank you!" in driver.seen(PRACTITIONER)[-1]
    assert await rows_naming(driver.core, who, skip=("processed_events",)) == before


async def test_no_stored_row_names_a_person_next_to_what_they_tapped(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: who answered is stored only in participation; feedback is never stored with its
    author. No row that names a person may say which survey question or feedback button they used.

    Slack broke this while processed_events kept raw event ids: "slack:<team>:<user id>:
    <action_ts>:pulse.a.<round>.<n>" next to seen_at (adapters/slack/events.py action_event).
    """
    await pulse_round(driver)
    await answer_all(driver, PRACTITIONER, ("4", "2", "Skip", "5"))
    assert await give(driver, OTHER, IDEA, replies=True) is None
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Which court, please?"}) is None
    await driver.tap(OTHER, "Read the answer")
    assert await driver.submit(OTHER, {"text": "The county court, mostly."}) is None
    tables = await dump(driver.core.db)
    round_id = tables["pulse_rounds"][0]["id"]
    for email in (PRACTITIONER, OTHER):
        who = await identity_strings(driver.core.db, email)
        for name, rows in (await rows_naming(driver.core, who)).items():
            for row in rows:
                # Participation names the round by design, and so does its twin, the round's
                # invitation in the delivery ledger (who was asked, deleted with it at close);
                # nothing else may.
                asked = name == "pulse_participation" or (
                    name == "broadcast_deliveries" and "kind=pulse " in row)
                marks = ("pulse.", "feedback.") + (() if asked else (round_id,))
                said = [m for m in marks if m in row]
                assert not said, f"{name} names {email} next to {said}: {row}"


async def test_stored_keys_follow_no_order(loaded: Core) -> None:
    """Rule: keys are random, not sequential (answers, feedback, and the key maker itself)."""
    from tests.conformance.drivers.fake import FakeDriver

    d = FakeDriver(loaded)
    await pulse_round(d)
    order: list[str] = []
    for email in [f"practitioner{i}@northbridge.example" for i in range(1, 11)]:
        async with loaded.db.session() as s:
            known = set((await s.execute(select(PulsePending.response_key))).scalars())
        await d.tap(email, "4")
        async with loaded.db.session() as s:
            new = set((await s.execute(select(PulsePending.response_key))).scalars()) - known
        assert len(new) == 1
        order += new
    for i in range(6):
        assert await give(d, OTHER if i % 2 else PRACTITIONER, f"Idea {'abcdef'[i]} on tools.") is None
    async with loaded.db.session() as s:
        from bot.feedback.tables import FeedbackItem

        items = list((await s.execute(select(FeedbackItem.id))).scalars())
    made = [new_id() for _ in range(200)]
    for ids in (order, made):
        assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
        assert max(shared_prefix(a, b) for a, b in zip(ids, ids[1:], strict=False)) <= MAX_SHARED_PREFIX
    assert len(set(order + items)) == len(order) + len(items)
    assert all(len(i) == len(made[0]) for i in items)


async def test_reading_a_table_as_stored_does_not_give_the_answer_order(loaded: Core) -> None:
    """Rule: no sequential key that follows participation order, hidden ones included.

    B3 (fixed): PostgreSQL heap tables list rows in insertion order (ctid), and each answer's
    own transaction left its xmin; pulse_answers gave away the order people answered. Answers now
    wait sealed and are written when the round closes, comments shuffled, in one transaction.
    """
    people = [f"practitioner{i}@northbridge.example" for i in range(1, 13)]
    given = {e: {"comment": f"Comment {i:02d} on the new tools"} for i, e in enumerate(people)}
    await seed_round(loaded, MONDAY_10 - WEEK, given)
    async with loaded.db.engine.connect() as conn:
        stored = [r[0] for r in await conn.exec_driver_sql("SELECT text FROM pulse_comments")]
        if not loaded.db.is_sqlite:
            xmins = {r[0] for r in await conn.exec_driver_sql("SELECT xmin::text FROM pulse_comments")}
            assert len(xmins) == 1  # one transaction: no commit order
    in_order = [g["comment"] for g in given.values()]
    assert sorted(stored) == sorted(in_order)
    assert stored != in_order  # 1 in 12! by chance


# --- anonymity: reports -----------------------------------------------------------------------


async def test_what_a_viewer_sees_at_the_thresholds(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: results only for >= k (5) respondents; comments only from 10; complements too."""
    people = await emails(driver.core)
    no_lead = [e for e in people if e != ASSESSMENT_LEAD]
    four = [e for e in no_lead if e != ASSESSMENT[4]]
    await seed_round(driver.core, MONDAY_10 - 3 * WEEK, everyone_answers(four, comments=9))
    await seed_round(driver.core, MONDAY_10 - 2 * WEEK, everyone_answers(no_lead, comments=10))
    await seed_round(driver.core, MONDAY_10 - WEEK, everyone_answers(ASSESSMENT + FRONT_DOOR))

    async def ask(text: str) -> str:
        await driver.say(CHANGE, text)
        return driver.seen(CHANGE)[-1]

    hidden = "Not enough responses to show."
    four_team = await ask("results assessment team round 1")
    assert hidden in four_team and "favourable" not in four_team and "Responses" not in four_team
    five_team = await ask("results assessment team round 2")
    assert hidden not in five_team and "Responses: 5 of 6 asked" in five_team
    nine = await ask("results round 1")
    assert "comments are shown from 10 answers" in nine and "Comment number" not in nine
    ten = await ask("results round 2")
    assert "Comments on" in ten and "Comment number" in ten
    # Five answered in Assessment, but everyone (8) minus Assessment would be Front Door's 3.
    subtracted = await ask("results assessment team")
    assert "Round 3" in subtracted and hidden in subtracted and "Responses" not in subtracted
    assert "Responses: 8 of" in await ask("results")


async def test_comments_are_shown_shuffled_and_dated_only_by_their_round(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: comments are shown shuffled, dated by round; repeated asking shows the same list.

    The order is drawn once, when the round closes (random keys), so asking again and again
    cannot harvest more comments than one answer shows.
    """
    people = await emails(driver.core)
    await seed_round(driver.core, MONDAY_10 - WEEK, everyone_answers(people, comments=12))
    line = re.compile(r"^\u201c(Comment number \d+ about the change)\u201d\W*Round 1 \((\d\d \w{3} \d{4})\)\W*$")
    orders = set()
    for _ in range(5):
        await driver.say(CHANGE, "results")
        shown = [m for m in (line.match(x) for x in driver.seen(CHANGE)[-1].splitlines()) if m]
        assert len(shown) == 5, driver.seen(CHANGE)[-1]
        assert {m.group(2) for m in shown} == {f"{MONDAY_10 - WEEK:%d %b %Y}"}
        orders.add(tuple(m.group(1) for m in shown))
    assert len(orders) == 1  # the same five each time: nothing more to harvest
    given = [f"Comment number {i} about the change" for i in range(12)]
    assert list(orders.pop()) != given[:5]  # not the order people wrote them (1 in 95,040)


# --- anonymity: feedback ----------------------------------------------------------------------


async def test_feedback_typed_into_the_chat_is_neither_echoed_nor_stored(driver) -> None:  # type: ignore[no-untyped-def]
    """Rule: feedback is collected in a form, never in DM text."""
    secret = "the duty rota on Fridays is unsafe and unfair"
    await driver.say(PRACTITIONER, f"feedback {secret}")
    assert driver.form(PRACTITIONER) is not None
    assert not [m for m in driver.seen(PRACTITIONER) if secret in m]
    for name, rows in (await dump(driver.core.db)).items():
        for row in rows:
            assert secret not in " ".join(as_text(v) for v in row.values()), name


async def test_feedback_and_replies_never_appear_in_the_authors_dm_and_viewers_never_see_the_route(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: collected in a form; the reply route is sealed and no viewer ever sees it."""
    assert await give(driver, PRACTITIONER, IDEA, replies=True) is None
    assert await give(driver, PRACTITIONER, CONCERN, replies=True) is None
    viewer_text: list[str] = []
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback show #{ref}")
    await driver.say(CHANGE, f"feedback reply #{ref}")
    viewer_text.append(form_text(driver, CHANGE))
    reply = "We are moving those meetings to Thursdays from January."
    assert await driver.submit(CHANGE, {"text": reply}) is None
    await driver.tap(PRACTITIONER, "Read the answer")
    assert reply in form_text(driver, PRACTITIONER)
    answer = "Thursdays would work much better for our team."
    assert await driver.submit(PRACTITIONER, {"text": answer}) is None
    await release(driver.core)
    await driver.say(CHANGE, f"feedback show #{ref}")
    assert answer in driver.seen(CHANGE)[-1]
    for words in (IDEA, CONCERN, reply, answer):
        assert not [m for m in driver.seen(PRACTITIONER) if words in m], words
    viewer_text += driver.seen(CHANGE) + [m for lead in LEADS for m in driver.seen(lead)]
    assert any(CONCERN in m for m in viewer_text)  # the leads did get the item itself
    who = await identity_strings(driver.core.db, PRACTITIONER) | {PRACTITIONER.split("@")[0]}
    tables = await dump(driver.core.db)
    sealed = [bytes(h["sealed"]) for h in tables["feedback_handles"]]
    assert len(sealed) == 2
    for text in viewer_text:
        assert not any(w in text for w in who), text
        assert not any(s.hex()[:24] in text for s in sealed)


async def test_a_feedback_authors_taps_leave_no_row_that_names_them(driver) -> None:  # type: ignore[no-untyped-def]
    """Rule: feedback is never stored with its author (nor any trace of their part in it)."""
    await driver.say(PRACTITIONER, "help")  # the bot knows them already, as it would in practice
    who = await identity_strings(driver.core.db, PRACTITIONER)
    before = await rows_naming(driver.core, who, skip=("processed_events",))
    assert await give(driver, PRACTITIONER, IDEA, replies=True) is None
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Which court, please?"}) is None
    await driver.tap(PRACTITIONER, "Read the answer")
    assert await driver.submit(PRACTITIONER, {"text": "The county court, mostly."}) is None
    await driver.say(PRACTITIONER, "feedback stop replies")
    assert "destroyed" in driver.seen(PRACTITIONER)[-1]
    assert await rows_naming(driver.core, who, skip=("processed_events",)) == before


# --- safeguarding -----------------------------------------------------------------------------


async def configured(core: Core) -> safeguarding.Config:
    async with core.db.session() as s:
        row = await s.get(Setting, "safeguarding")
    assert row is not None and row.value.get("routes"), "the example programme configures routes"
    return safeguarding.Config.from_setting(row.value)


def route_lines(cfg: safeguarding.Config) -> list[str]:
    return [safeguarding.FIXED_NOTICE, *(r.name for r in cfg.routes),
            *(x for r in cfg.routes for x in (r.phone, r.email, r.url) if x)]


async def test_the_form_says_it_is_not_a_referral_route_and_shows_every_configured_route(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: before submitting, the form says so and shows the configured routes; a
    disclosure-like text shows them again, may still be sent, and the thanks repeats them."""
    cfg = await configured(driver.core)
    await driver.say(OTHER, "feedback")
    first = form_text(driver, OTHER)
    for expected in route_lines(cfg):
        assert expected in first, expected
    assert await driver.submit(OTHER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    again = form_text(driver, OTHER)
    assert "Before you send" in again and "possible risk to a child" in again
    for expected in route_lines(cfg):
        assert expected in again, expected
    dm = driver.seen(OTHER)
    assert await driver.submit(OTHER, {"text": CONCERN, "theme": "", "replies": "false"}) is None
    thanks = form_text(driver, OTHER)  # in the form, not the DM (docs/invariants.md N19, N20)
    assert driver.seen(OTHER) == dm
    assert "went to the safeguarding leads straight away" in thanks
    for r in cfg.routes:
        assert r.name in thanks


async def test_an_authors_answer_that_looks_like_a_disclosure_is_flagged_and_reaches_the_leads(driver) -> None:  # type: ignore[no-untyped-def]
    """Rules: flagged at submission, routes shown again, may still send, leads at once, urgent."""
    cfg = await configured(driver.core)
    assert await give(driver, PRACTITIONER, IDEA, replies=True) is None
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback reply #{ref}")
    assert await driver.submit(CHANGE, {"text": "Could you tell us more?"}) is None
    await driver.tap(PRACTITIONER, "Read the answer")
    assert await driver.submit(PRACTITIONER, {"text": ANSWER_CONCERN}) is None
    warned = form_text(driver, PRACTITIONER)
    assert "safeguarding concern" in warned and "Send anyway" in warned
    for expected in route_lines(cfg):
        assert expected in warned, expected
    for lead in LEADS:
        assert not [m for m in driver.seen(lead) if m.startswith("URGENT")]
    assert await driver.submit(PRACTITIONER, {"text": ANSWER_CONCERN}) is None
    for lead in LEADS:  # at once: no scheduler tick in between
        urgent = [m for m in driver.seen(lead) if m.startswith("URGENT")]
        assert len(urgent) == 1, driver.seen(lead)
    tables = await dump(driver.core.db)
    [item] = tables["feedback_items"]
    # Urgent to its leads at once; to everyone else from the answer's release (N37).
    assert not item["urgent"] and "colleague_allegation" in item["lead_concerns"]
    await release(driver.core)
    [item] = (await dump(driver.core.db))["feedback_items"]
    assert item["urgent"] and "colleague_allegation" in item["concerns"]
    assert item["lead_concerns"] is None


# --- the bot never promises to trace an author --------------------------------------------------

TRACE = re.compile(
    r"\b(?:trac(?:e|ed|ing)|identif(?:y|ied)|find out who|found out who|work out who|"
    r"track (?:you|them|the author|the sender) down|unmask|de-?anonymi[sz]e|"
    r"follow (?:it|this) up with you|contact you)\b", re.IGNORECASE)
DENIAL = re.compile(r"\b(?:not|never|no ?one|nobody|cannot|can't|without|unable)\b|n't\b",
                    re.IGNORECASE)
# A warning about the author's own words ("...which could identify you or someone else").
OWN_WORDS = re.compile(r"\bwhich could identify you\b|\bcould identify you or someone else\b",
                       re.IGNORECASE)


def promises_to_trace(text: str) -> list[str]:
    """Sentences that speak of tracing or identifying someone without denying it first.

    The denial must come before the tracing words in the same clause ("Nobody, including the
    bot, can trace you"); a clause starts after a colon or semicolon.
    """
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        if OWN_WORDS.search(sentence):
            continue
        for m in TRACE.finditer(sentence):
            clause = re.split(r"[:;]", sentence[: m.start()])[-1]
            if not DENIAL.search(clause):
                out.append(sentence.strip())
                break
    return out


def test_the_promise_checker_catches_promises_and_lets_denials_pass() -> None:
    for promise in ("We will find out who sent this.", "The safeguarding team can trace you if needed.",
                    "Rest assured: we'll identify the author and follow it up with you.",
                    "If it is serious we will track the sender down."):
        assert promises_to_trace(promise), promise
    for denial in ("Nobody, including the bot, can trace you.", "They cannot trace you.",
                   "It may contain a phone number, which could identify you or someone else.",
                   "Feedback here is anonymous, so nobody can follow it up with you."):
        assert not promises_to_trace(denial), denial


def source_strings(path: Path) -> list[str]:
    """Every string literal of a module that can reach a person (f-strings with their fixed
    parts); docstrings are left out, they describe the code to its readers."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values))
    return out


def test_no_string_in_the_feedback_code_promises_to_trace_an_author() -> None:
    texts = [s for p in sorted((ROOT / "bot" / "feedback").glob("*.py")) for s in source_strings(p)]
    texts += [safeguarding.DEFAULT_SIGNPOSTING]
    assert any("trace" in t for t in texts)  # the denials are there and were read
    found = [bad for t in texts for bad in promises_to_trace(t)]
    assert found == []


async def test_no_message_or_form_of_the_feedback_flow_promises_to_trace_an_author(driver) -> None:  # type: ignore[no-untyped-def]
    shown: list[str] = []
    await driver.say(PRACTITIONER, "feedback")
    shown.append(form_text(driver, PRACTITIONER))
    values = {"text": "Mrs Patel rang 07700 900123 and " + CONCERN, "theme": "", "replies": "true"}
    assert await driver.submit(PRACTITIONER, values) is None
    shown.append(form_text(driver, PRACTITIONER))  # the "before you send" version
    assert await driver.submit(PRACTITIONER, values) is None
    shown.append(form_text(driver, PRACTITIONER))  # the thanks, in the form
    assert await give(driver, OTHER, IDEA, theme="family-networks", replies=True) is None
    shown.append(form_text(driver, OTHER))
    await release(driver.core)
    await driver.say(CHANGE, "feedback list")
    ref = REF.search(driver.seen(CHANGE)[-1]).group(1)  # type: ignore[union-attr]
    await driver.say(CHANGE, f"feedback show #{ref}")
    await driver.say(CHANGE, f"feedback reply #{ref}")
    shown.append(form_text(driver, CHANGE))
    assert await driver.submit(CHANGE, {"text": "Thank you, we are looking at it."}) is None
    author = PRACTITIONER if "The change team answered" in driver.seen(PRACTITIONER)[-1] else OTHER
    await driver.tap(author, "Read the answer")
    shown.append(form_text(driver, author))
    assert await driver.submit(author, {"text": ANSWER_CONCERN}) is None
    shown.append(form_text(driver, author))
    assert await driver.submit(author, {"text": ANSWER_CONCERN}) is None
    await driver.say(CHANGE, "you said we did family-networks")
    shown.append(form_text(driver, CHANGE))
    assert await driver.submit(CHANGE, {"title": "Meetings moved", "items": "",
                                        "text": "Network meetings now avoid court days."}) is None
    await driver.tap(OTHER, "Stop replies")
    await driver.say(PRACTITIONER, "feedback stop replies")
    for email in (PRACTITIONER, OTHER, CHANGE, *LEADS):
        shown += driver.seen(email)
    assert any(m.startswith("URGENT") for m in shown)
    assert any("cannot trace you" in m or "cannot be traced" in m for m in shown)
    assert [bad for m in shown for bad in promises_to_trace(m)] == []


# --- logs -------------------------------------------------------------------------------------


async def test_pulse_answers_and_comments_never_reach_the_logs(driver) -> None:  # type: ignore[no-untyped-def]
    """Rule: logs never carry anonymous text next to an identity (here: not at all)."""
    with debug_log_lines() as lines:
        logging.getLogger("staffvoice.invariants").debug("capture works")
        await pulse_round(driver)
        await answer_all(driver, PRACTITIONER, ("4", "2", "Skip", "5", "1", "9"), COMMENT)
    assert "capture works" in lines[0]
    who = await identity_strings(driver.core.db, PRACTITIONER)
    for line in lines:
        json.loads(line)
        assert COMMENT not in line
        assert not (any(w in line for w in who) and "pulse" in line), line


RAW_SLACK = ("private_metadata", "trigger_id", "api_app_id", "response_url", "hooks.slack.com",
             '"state"', "view_submission", "block_actions", "client_msg_id", "legacy-verification")
RAW_TEAMS = ("serviceUrl", "channelData", "conversationType", "replyToId", "aadObjectId",
             '"recipient"', '"from"', "Action.Submit", "adaptivecards", "tenantId")


async def feedback_story(d: Any) -> tuple[str, ...]:
    """A feedback session on one adapter: idea with replies, a concern, a reply and an answer."""
    answer = "It crashed again on Friday afternoon."
    assert await give(d, PRACTITIONER, IDEA, replies=True) is None
    assert await give(d, OTHER, CONCERN) is None
    await release(d.core)
    await d.say(CHANGE, "feedback list")
    ref = ref_for(d.seen(CHANGE)[-1], IDEA)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Thanks, we will look at the rota."}) is None
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": answer}) is None
    await d.tap(PRACTITIONER, "Stop replies")
    await d.core.tick()
    return IDEA, CONCERN, answer, "look at the rota"


async def test_no_log_line_on_the_slack_feedback_paths_carries_a_payload_or_feedback(slack) -> None:  # type: ignore[no-untyped-def]
    """Rule: raw payloads are not logged on those paths (Slack, production logging at DEBUG)."""
    with debug_log_lines() as lines:
        texts = await feedback_story(slack)
    assert lines, "debug logging captured nothing"
    author = slack.user(PRACTITIONER).id
    for line in lines:
        assert not [t for t in (*texts, *RAW_SLACK) if t in line], line
        assert author not in line, line


async def test_no_log_line_on_the_teams_feedback_paths_carries_a_payload_or_feedback(teams) -> None:  # type: ignore[no-untyped-def]
    """Rule: raw payloads are not logged on those paths (Teams, production logging at DEBUG)."""
    with debug_log_lines() as lines:
        texts = await feedback_story(teams)
    assert lines, "debug logging captured nothing"
    who = await identity_strings(teams.core.db, PRACTITIONER)
    for line in lines:
        assert not [t for t in (*texts, *RAW_TEAMS) if t in line], line
        assert not any(w in line for w in who), line


def test_every_advisory_lock_key_is_used_for_one_thing_only() -> None:
    """Two unrelated jobs sharing a PostgreSQL advisory lock key wait on each other (the
    privacy notice's flush once shared the families counter's key). Every key is a literal
    of ours (0x5F5F_7376_....) in the code, written once."""
    root = Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for path in [*root.glob("bot/**/*.py"), *root.glob("storage/**/*.py"),
                 *root.glob("staffvoice/**/*.py"), *root.glob("adapters/**/*.py")]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for key in re.findall(r"0x5F5F_7376_[0-9A-Fa-f_]+", line):
                seen.setdefault(key.upper().replace("_", ""), []).append(
                    f"{path.relative_to(root)}:{n}")
    assert sum(map(len, seen.values())) >= 5  # start-up, upgrade and the flushers' keys
    shared = {k: v for k, v in seen.items() if len(v) > 1}
    assert not shared, f"advisory lock keys used in more than one place: {shared}"
