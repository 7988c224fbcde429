"""The safeguarding and identifier patterns: what must and must not trigger, and their settings."""

from __future__ import annotations

import functools
import re

import pytest
from sqlalchemy import select

from bot.core import Core, build_router
from bot.feedback import identifiers, safeguarding
from bot.feedback import service as fb
from bot.feedback.safeguarding import CHILD_RISK, COLLEAGUE, SELF_HARM, Config
from bot.feedback.tables import FeedbackAlert, FeedbackItem
from bot.model import ConversationRef, Message, MessageRef
from bot.port import TransientError
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import EXAMPLE
from tests.test_feedback_helpers import CHANGE, LEADS, PRACTITIONER, give, ref_for, release

MUST_TRIGGER = [
    ("A boy on my caseload told me his stepdad hits him.", CHILD_RISK),
    ("I saw a child being slapped by her mother in the waiting room.", CHILD_RISK),
    ("The baby had bruises on his arms and nobody followed it up.", CHILD_RISK),
    ("She said she is scared to go home at the weekend.", CHILD_RISK),
    ("I think one of the girls is being groomed online by an older man.", CHILD_RISK),
    ("Her dad beat her with a belt last night.", CHILD_RISK),
    ("The toddler was left home alone all afternoon.", CHILD_RISK),
    ("A young person disclosed that her uncle touched her.", CHILD_RISK),
    ("I want to kill myself.", SELF_HARM),
    ("Sometimes I think about ending my life because of this job.", SELF_HARM),
    ("I've been self-harming again since the restructure.", SELF_HARM),
    ("Honestly I feel suicidal most Sunday nights.", SELF_HARM),
    ("I don't want to be here anymore.", SELF_HARM),
    ("My team manager shouted at a child and grabbed his arm.", COLLEAGUE),
    ("A colleague has been touching a young person inappropriately.", COLLEAGUE),
    ("One of the foster carers hit a child in their care.", COLLEAGUE),
    ("A social worker came to a home visit drunk.", COLLEAGUE),
    ("My supervisor has been bullying me for months.", COLLEAGUE),
    ("My manager falsified the visit records to hit the target.", COLLEAGUE),
]

MUST_NOT_TRIGGER = [
    "The family network meetings are too long and clash with court deadlines.",
    "Group supervision has really helped our team think about risk.",
    "Our caseloads are too high and we are stretched thin.",
    "The new recording template takes twice as long as the old one.",
    "This workload is killing me, honestly.",
    "The children in care team has been hit hard by staff shortages.",
    "The self-harm awareness training was really useful.",
    "My manager has been really supportive about flexible working.",
    "We need better tools to assess children at risk of neglect.",
    "I hit a wall with the new case recording system.",
    "The parking at the children's centre is a nightmare.",
    "Please give us more time to build relationships with families.",
    "Training on the practice framework was brilliant, more please.",
    "Kids' activities budget was cut and families noticed.",
]


@pytest.mark.parametrize(("text", "category"), MUST_TRIGGER)
def test_disclosure_like_text_is_flagged(text: str, category: str) -> None:
    assert category in safeguarding.concerns(text), text


@pytest.mark.parametrize("text", MUST_NOT_TRIGGER)
def test_everyday_feedback_is_not_flagged(text: str) -> None:
    assert safeguarding.concerns(text) == [], text


def test_curly_apostrophes_and_odd_spacing_do_not_dodge_the_patterns() -> None:
    assert SELF_HARM in safeguarding.concerns("I  don\u2019t want   to live")


def test_a_programme_can_add_patterns() -> None:
    cfg = Config(extra_patterns=((CHILD_RISK, (r"\bno food in the house\b",)),))
    assert safeguarding.concerns("There was no food in the house again") == []
    assert safeguarding.concerns("There was no food in the house again", cfg) == [CHILD_RISK]


def test_a_giant_input_is_scanned_quickly() -> None:
    import time

    text = ("the child was " * 8000) + "fine"
    # This thread's CPU time, not the wall clock: no backtracking blow-up, whatever else the
    # machine's cores are running.
    start = time.thread_time()
    safeguarding.concerns(text)
    identifiers.findings(text)
    assert time.thread_time() - start < 2.0


IDENTIFYING = [
    ("Mrs Patel in the front office was rude", identifiers.NAME),
    ("My manager Janet never answers", identifiers.NAME),
    ("Jane Doughty keeps cancelling supervision", identifiers.NAME),
    ("Call me on 07700 900123 if you want", identifiers.PHONE),
    ("Ring 01632 960100 about it", identifiers.PHONE),
    ("Email me at someone@northbridge.example", identifiers.EMAIL),
    ("Case 123456 was closed too early", identifiers.REFERENCE),
    ("The referral ref: CP-20231 got lost", identifiers.REFERENCE),
    ("NHS number 943 476 5919 was on the letter", identifiers.REFERENCE),
]

NOT_IDENTIFYING = [
    "Family Network meetings are great",
    "The Front Door is overwhelmed on Mondays",
    "Group Supervision should be monthly",
    "We waited 3 weeks for a reply in 2025",
    "Social Worker caseloads are too high",
]


@pytest.mark.parametrize(("text", "kind"), IDENTIFYING)
def test_identifiers_are_spotted(text: str, kind: str) -> None:
    assert kind in identifiers.findings(text), text


@pytest.mark.parametrize("text", NOT_IDENTIFYING)
def test_ordinary_capitalised_words_and_years_are_not_identifiers(text: str) -> None:
    assert identifiers.findings(text) == [], text


def test_the_example_programme_configures_routes_and_limits() -> None:
    doc = loader.validate(EXAMPLE.read_text(), build_router())
    section = doc.data["safeguarding"]
    assert {r["name"].split(" (")[0] for r in section["routes"]} >= {"LADO", "Whistleblowing line"}
    assert section["feedback"]["daily_limit"] == 5


def test_a_bad_pattern_or_limit_is_reported_with_its_line() -> None:
    text = EXAMPLE.read_text().replace('- "\\\\bno food in the (?:house|home)\\\\b"', '- "(unclosed"')
    text = text.replace("daily_limit: 5", "daily_limit: 0")
    with pytest.raises(ProgrammeError) as e:
        loader.validate(text, build_router())
    problems = "\n".join(e.value.problems)
    assert "safeguarding.patterns.child_risk[0]: not a valid pattern" in problems
    assert "safeguarding.feedback.daily_limit: must be between 1 and 100" in problems
    assert "line " in problems


@pytest.mark.parametrize("pattern", ['""', '"(?:home)?"', '"x*"', '"a|"'])
def test_a_pattern_that_matches_empty_text_is_refused(pattern: str) -> None:
    """A pattern matching empty text would mark every piece of feedback urgent (and alert the
    leads each time, drowning a real disclosure): refused when the programme is loaded."""
    text = EXAMPLE.read_text().replace('- "\\\\bno food in the (?:house|home)\\\\b"', f"- {pattern}")
    assert text != EXAMPLE.read_text()
    with pytest.raises(ProgrammeError) as e:
        loader.validate(text, build_router())
    assert "safeguarding.patterns.child_risk[0]: matches empty text" in "\n".join(e.value.problems)


# The matcher folds the text once and runs the default patterns as one alternation without
# re.IGNORECASE (issue 22). These tests prove it flags exactly what the patterns searched one
# by one, case-insensitively, on the normalised text flag (the matcher before the change, kept
# here only as the reference): no prefilter, nothing that could miss a disclosure.

def _reference(text: str, config: Config | None = None) -> list[str]:
    patterns = _reference_patterns(config.extra_patterns if config else (),
                                   tuple(safeguarding.DEFAULT_PATTERNS.items()))
    flat = safeguarding._normalise(text)  # what is proven here is the matching, not this
    return [cat for cat, pats in patterns.items() if any(p.search(flat) for p in pats)]


@functools.lru_cache
def _reference_patterns(extra: tuple[tuple[str, tuple[str, ...]], ...],
                        defaults: tuple[tuple[str, tuple[str, ...]], ...]
                        ) -> dict[str, list[re.Pattern[str]]]:
    patterns = {k: [re.compile(p, re.IGNORECASE) for p in v] for k, v in defaults}
    for category, more in extra:
        patterns.setdefault(category, []).extend(re.compile(p, re.IGNORECASE) for p in more)
    return patterns


def test_folding_matches_every_code_point_as_ignorecase_does() -> None:
    everything = "".join(map(chr, range(0x110000)))
    folded = safeguarding.fold(everything)
    assert len(folded) == len(everything)  # one character for one: positions and counts hold
    # Every ASCII character a folded pattern may hold (no capitals), and every class and
    # assertion the patterns use: the same code points match, case-insensitively on the text
    # and case-sensitively on the folded text.
    atoms = [re.escape(chr(c)) for c in range(128) if not chr(c).isupper()]
    atoms += [r"\w", r"\W", r"\s", r"\S", r"\d", r"\D", r"\b", r"\B", ".", r"[^.!?\n]", r"[- ]",
              "[a-z]", "[^a-z]", "[h-q]"]
    for atom in atoms:
        expected = [m.start() for m in re.finditer(atom, everything, re.IGNORECASE)]
        assert [m.start() for m in re.finditer(atom, folded)] == expected, atom
    assert all(safeguarding.foldable(p) for ps in safeguarding.DEFAULT_PATTERNS.values() for p in ps)


def _corpus() -> list[str]:
    """Every string in the tests, their variants, and random text around the patterns' words."""
    import ast
    import random
    from pathlib import Path

    strings: set[str] = set()
    for path in Path(__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip():
                strings.add(node.value)
    confusables = str.maketrans({"i": "\u0130", "s": "\u017f", "k": "\u212a", "'": "\u2019"})
    dotless = str.maketrans({"i": "\u0131", "I": "\u0131", "S": "\u017f", "K": "\u212a"})
    variants: list[str] = []
    for s in sorted(strings):
        variants += [s, s.swapcase(), s.translate(confusables), s.upper().translate(dotless),
                     s.replace(" ", "  \t\u00a0").replace("'", "\u2018"),
                     s.replace(" ", ". ").replace("e", "\u00e9")]
    words = sorted({w for ps in safeguarding.DEFAULT_PATTERNS.values() for p in ps
                    for w in re.findall(r"[a-z][a-z' -]*[a-z]", p.replace("\\b", " ").replace("\\s", " "))})
    words += ["the", "a", "my", "his", "her", "was", "is", "with", "and", "team", "today",
              "meeting", "\u00e9t\u00e9", "stra\u00dfe", "\u03bc", "\u0130stanbul", "\ud83d\ude00"]
    rnd = random.Random(22)
    seps = [" ", " ", " ", "  ", ". ", "! ", "? ", "\n", ", ", "-", "'", "\u2019", "\t", ""]
    for _ in range(10000):
        text = "".join(rnd.choice(words) + rnd.choice(seps) for _ in range(rnd.randint(1, 14)))
        pick = rnd.random()
        if pick < 0.15:
            text = text.upper()
        elif pick < 0.25:
            text = text.translate(confusables)
        elif pick < 0.3:
            text = "".join(chr(rnd.randint(0x20, 0x2FFF)) if rnd.random() < 0.1 else c for c in text)
        variants.append(text)
    return variants


def test_the_matcher_flags_exactly_what_each_pattern_searched_alone_flags() -> None:
    corpus = _corpus()
    extra = Config(extra_patterns=((CHILD_RISK, (r"\bno food in the (?:house|home)\b",)),
                                   ("housing", (r"\bEVICT\w*", r"\S+@\S+"))))
    flagged = {cat: 0 for cat in (*safeguarding.CATEGORIES, "housing")}
    for text in corpus:
        expected = _reference(text)
        assert safeguarding.concerns(text) == expected, text
        with_extra = _reference(text, extra)
        assert safeguarding.concerns(text, extra) == with_extra, text
        for cat in with_extra:
            flagged[cat] += 1
    # The corpus is not all quiet text: each category was flagged many times, none always.
    assert all(100 < n < len(corpus) / 2 for n in flagged.values()), flagged


def test_a_default_pattern_that_cannot_be_folded_still_matches_as_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What a maintainer might write that folding would get wrong: a capital, a capital written
    # as an escape, a range holding the capitals alone, a scoped flag, a backreference.
    unfoldable = (r"\bNO FOOD\b", r"\bno \x46OOD\b", r"\bcode [0-_]9\b", r"\bdad (?-i:hit)s\b",
                  r"\b(sore|raw) and \1\b")
    assert not any(safeguarding.foldable(p) for p in unfoldable)
    assert safeguarding.foldable(r"\bsleeps\S*\s+in the car\b")
    patterns = dict(safeguarding.DEFAULT_PATTERNS)
    patterns[CHILD_RISK] = (*patterns[CHILD_RISK], *unfoldable, r"\bsleeps\S*\s+in the car\b")
    monkeypatch.setattr(safeguarding, "DEFAULT_PATTERNS", patterns)
    safeguarding.matcher.cache_clear()
    try:
        for text in ("There was no food again", "NO FOOD", "No Food", "code a9", "code A9",
                     "CODE _9", "dad hits", "DAD hits", "dad HITS", "sore and sore", "SORE and sore",
                     "sore and raw", "he sleeps-alone in the car", "HE SLEEPS\u2019 IN THE CAR",
                     "no fooding", "sleeps in the car"):
            assert safeguarding.concerns(text) == _reference(text), text
        assert safeguarding.concerns("there was No Food") == [CHILD_RISK]
        assert safeguarding.concerns("CODE a9") == [CHILD_RISK]  # [0-_] holds A, so a too
        assert safeguarding.concerns("DAD hits") == [CHILD_RISK]
        assert safeguarding.concerns("dad HITS") == []  # the scoped flag: hits as written
        assert safeguarding.concerns("he SLEEPS-ALONE IN THE CAR") == [CHILD_RISK]
    finally:
        safeguarding.matcher.cache_clear()


# Disclosures as they arrive from a phone or a paste, not only as typed on a plain keyboard:
# invisible characters inside words (a soft hyphen from a document, a zero-width space from a
# web page or a messaging app), a hyphen or dash that is not U+002D, full-width letters, an
# accented typo, look-alike letters from another alphabet (a keyboard left on Cyrillic or
# Greek for one letter), a word broken across a line of a PDF. The sender sees ordinary
# words; the check must see them too (docs/invariants.md N49).
DISGUISED = [
    ("The child is being ab\u00adused at home by her step\u00addad.", CHILD_RISK),
    ("Her dad h\u200bit her last night.", CHILD_RISK),
    ("Honestly I feel sui\u200dcidal most Sunday nights.", SELF_HARM),
    ("I've been self\u2011harming again since the restructure.", SELF_HARM),
    ("I've been self\u2013harming again since the restructure.", SELF_HARM),
    ("\uff28\uff45\uff52 \uff44\uff41\uff44 \uff42\uff45\uff41\uff54 \uff48\uff45\uff52 last night.",
     CHILD_RISK),
    ("Honestly I feel suic\u00eddal most Sunday nights.", SELF_HARM),
    ("My m\u0430n\u0430ger has been bullying me for months.", COLLEAGUE),
    ("I want to kill mys\u0435lf.", SELF_HARM),
    ("I don\u02bct want to be here anymore.", SELF_HARM),
    ("A young person disclosed that her uncle tou-\nched her.", CHILD_RISK),
    ("The baby had bru\u2060ises on his arms and nobody followed it up.", CHILD_RISK),
]

DISGUISED_EVERYDAY = [
    "The self\u2011harm awareness training was really useful.",
    "\uff2d\uff59 \uff4d\uff41\uff4e\uff41\uff47\uff45\uff52 has been really supportive.",
    "Caf\u00e9 vouchers for the front door team would be nice.",
    "\u041c\u0430\u043c\u0430 \u0441\u043a\u0430\u0437\u0430\u043b\u0430, \u0447\u0442\u043e "
    "\u0432\u0441\u0451 \u0445\u043e\u0440\u043e\u0448\u043e.",
    "The follow-\nup letters go out too late.",
]


@pytest.mark.parametrize(("text", "category"), DISGUISED)
def test_invisible_or_look_alike_characters_do_not_dodge_the_patterns(text: str,
                                                                      category: str) -> None:
    assert category in safeguarding.concerns(text), ascii(text)


@pytest.mark.parametrize("text", DISGUISED_EVERYDAY)
def test_everyday_feedback_with_such_characters_is_not_flagged(text: str) -> None:
    assert safeguarding.concerns(text) == [], ascii(text)


def test_a_giant_input_of_other_alphabets_is_scanned_quickly() -> None:
    import time

    text = ("\u0440\u0435\u0431\u0451\u043d\u043e\u043a the ch\u00adild w\u200bas " * 4000) + "fine"
    start = time.thread_time()  # CPU, not the wall clock (as above)
    safeguarding.concerns(text)
    assert time.thread_time() - start < 2.0


async def test_a_disclosure_pasted_from_a_document_reaches_the_leads(loaded: Core) -> None:
    """A practitioner pastes a note from a Word document into the form: its soft hyphens
    (U+00AD, invisible) sit inside the words. They are shown "Before you send" with the routes,
    send anyway, and both safeguarding leads get the URGENT alert at once.

    Before: nothing matched, the item was stored as ordinary feedback and waited for the
    change team's next release, half a day; no lead was told."""
    d = FakeDriver(loaded)
    pasted = ("A girl on my case\u00adload says her step\u00addad be\u00adats her when he has "
              "been drinking.")
    await d.say(PRACTITIONER, "feedback")
    assert await d.submit(PRACTITIONER, {"text": pasted, "replies": "false"}) is None
    warn = d.form(PRACTITIONER)
    assert warn is not None and warn.title == "Before you send", warn
    shown = "\n".join(getattr(b, "text", "") for b in warn.intro)
    assert "possible risk to a child" in shown and "LADO" in shown
    assert await d.submit(PRACTITIONER, {"text": pasted, "replies": "false"}) is None
    async with loaded.db.session() as s:
        [item] = list((await s.execute(select(FeedbackItem))).scalars())
    assert item.urgent and item.concerns == [CHILD_RISK] and item.text == pasted
    for lead in LEADS:
        assert len([m for m in d.seen(lead) if m.startswith("URGENT")]) == 1, lead


async def test_an_urgent_answer_in_a_thread_reaches_the_leads_in_its_own_words(
        loaded: Core) -> None:
    """An idea about rotas, with replies allowed; the change team asks for more; the author
    answers with words of self-harm and sends anyway. Both leads are alerted at once, and the
    alert must carry what made it urgent: the answer, not only the idea about rotas.

    Before: the alert read "Looks like: possible self-harm" over the rota idea alone; the
    words that needed a lead were only in `feedback show`, which an alert that reads like a
    false alarm does not send the lead to."""
    d = FakeDriver(loaded)
    idea = "The new rota means nobody covers the duty phone on Fridays."
    answer = "Honestly I can't go on like this, I keep thinking about ending my life."
    assert await give(d, PRACTITIONER, idea, replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    ref = ref_for(d.seen(CHANGE)[-1], idea)
    await d.say(CHANGE, f"feedback reply #{ref}")
    assert await d.submit(CHANGE, {"text": "Thank you. What would help most?"}) is None
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": answer}) is None
    assert await d.submit(PRACTITIONER, {"text": answer}) is None  # Send anyway
    for lead in LEADS:
        [alert] = [m for m in d.seen(lead) if m.startswith("URGENT")]
        assert "possible self-harm" in alert
        assert answer in alert, alert  # the words that made it urgent
        assert idea in alert  # with the item they answer, as before


NO_LEADS_YET = ", roles: [safeguarding_lead]}"


async def test_with_no_safeguarding_lead_the_sender_is_not_told_a_lead_has_it(
        loaded: Core, caplog: pytest.LogCaptureFixture) -> None:
    """A council loads its programme before naming its safeguarding leads (or its leads'
    roles were taken away). A practitioner writes a disclosure: the form must not promise
    that it "goes to the safeguarding leads straight away" (nobody gets it until the change
    team's next release), it must send them to a route now; the change team's urgent queue
    and the operator's log must say that alerts reach nobody.

    Before: "Before you send" and the thanks both said it went to the leads straight away;
    the urgent queue said nothing (0 of 0 leads counted as none missing); no log line."""
    text = EXAMPLE.read_text()
    assert text.count(NO_LEADS_YET) == 2
    await loader.load(loaded.db, text.replace(NO_LEADS_YET, "}"), loaded.router)
    d = FakeDriver(loaded)
    concern = "A boy on my caseload told me his stepdad hits him."
    await d.say(PRACTITIONER, "feedback")
    assert await d.submit(PRACTITIONER, {"text": concern, "replies": "false"}) is None
    warn = d.form(PRACTITIONER)
    assert warn is not None and warn.title == "Before you send"
    before = "\n".join(getattr(b, "text", "") for b in warn.intro)
    assert "safeguarding leads straight away" not in before, before
    assert "No safeguarding lead is set up" in before and "LADO" in before
    caplog.set_level("INFO", logger="staffvoice")
    assert await d.submit(PRACTITIONER, {"text": concern, "replies": "false"}) is None
    thanks = d.form(PRACTITIONER)
    assert thanks is not None and thanks.notice
    after = "\n".join(getattr(b, "text", "") for b in thanks.intro)
    assert "safeguarding leads straight away" not in after, after
    assert "No safeguarding lead is set up" in after
    assert any(r.levelname == "ERROR" and "no safeguarding lead" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    await d.say(CHANGE, "feedback list urgent")
    assert "No safeguarding lead is set up" in d.seen(CHANGE)[-1], d.seen(CHANGE)[-1]


# As a child or young person writes on the public page (/young-people), which shares these
# patterns: in the first person, "me" rather than "her" or "the child".
FIRST_PERSON = [
    ("my mums boyfriend hurts me", CHILD_RISK),
    ("my stepdad touches me at night", CHILD_RISK),
    ("Dad kicked me and I hid in my room", CHILD_RISK),
    ("he hits me if I tell anyone", CHILD_RISK),
    ("I get hit at home when I am late", CHILD_RISK),
    ("I dont feel safe at home", CHILD_RISK),
    ("my teacher touched me and said not to tell", COLLEAGUE),
]

FIRST_PERSON_EVERYDAY = [
    "I was hurt by the restructure decision.",
    "I got hurt at football last week so missed the session.",
    "The youth club makes me feel safe and I can talk to people.",
    "She never hurts anyone's feelings when she gives me feedback.",
    "Her mum touches base with us every week, which really helps.",
    "The dad touched base yesterday about contact.",
]


@pytest.mark.parametrize(("text", "category"), FIRST_PERSON)
def test_a_childs_own_words_are_flagged(text: str, category: str) -> None:
    assert category in safeguarding.concerns(text), text


@pytest.mark.parametrize("text", FIRST_PERSON_EVERYDAY)
def test_everyday_first_person_words_are_not_flagged(text: str) -> None:
    assert safeguarding.concerns(text) == [], text


async def test_a_disclosure_in_a_pulse_comment_shows_the_routes_before_it_is_saved(
        loaded: Core) -> None:
    """The weekly pulse ends with "Anything else you want the change team to hear?". A
    practitioner writes a disclosure there. Pulse comments are read only after the round
    closes, and only where enough people commented: nobody may ever read it. Before it is
    saved, the form must say so and show every configured route, as the feedback form does
    ("Before you send"); they may still save it, and the card moves on as after any comment.

    Before: saved at once; the form's only word on it was "use the usual safeguarding routes",
    with no route named."""
    d = FakeDriver(loaded)
    await loaded.tick()  # Monday 10:00: the weekly round opens
    for label in ("4", "4", "4", "4", "4", "8"):
        await d.tap(PRACTITIONER, label)
    await d.tap(PRACTITIONER, "Write a comment")
    concern = "A boy on my caseload told me his stepdad hits him and nobody has followed it up."
    assert await d.submit(PRACTITIONER, {"comment": concern}) is None
    warn = d.form(PRACTITIONER)
    assert warn is not None, "saved without a word"
    shown = "\n".join(getattr(b, "text", "") for b in warn.intro)
    async with loaded.db.session() as s:
        cfg = await fb.config(s)
    assert cfg.routes
    for route in cfg.routes:
        assert route.name in shown and route.line() in shown, route.name
    assert "possible risk to a child" in shown and "not read until the round closes" in shown
    assert warn.inputs[0].initial == concern  # type: ignore[union-attr]
    assert await d.submit(PRACTITIONER, {"comment": concern}) is None  # Save anyway
    assert d.form(PRACTITIONER) is None
    assert "Thank you!" in d.seen(PRACTITIONER)[-1]


async def test_the_answer_form_says_it_is_not_a_referral_route_and_shows_the_routes(
        loaded: Core) -> None:
    """An author reads the change team's answer ("Could you tell us more?") in a form where
    they may write back: a place to say more, sometimes more than they first did. Before they
    write, the form says that this is not a way to report a concern and shows every
    configured route, as the feedback form does (S1, S2).

    Before: the routes appeared only once what they wrote had been flagged; an answer the
    patterns missed was sent without the author ever seeing them in that form."""
    d = FakeDriver(loaded)
    idea = "Supervision keeps being cancelled for court."
    assert await give(d, PRACTITIONER, idea, replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    await d.say(CHANGE, f"feedback reply #{ref_for(d.seen(CHANGE)[-1], idea)}")
    assert await d.submit(CHANGE, {"text": "Could you tell us more?"}) is None
    await d.tap(PRACTITIONER, "Read the answer")
    form = d.form(PRACTITIONER)
    assert form is not None and form.form_id == "feedback.answer"
    shown = "\n".join(getattr(b, "text", "") for b in form.intro)
    async with loaded.db.session() as s:
        cfg = await fb.config(s)
    assert safeguarding.FIXED_NOTICE in shown
    for route in cfg.routes:
        assert route.name in shown and route.line() in shown, route.name
    assert "Could you tell us more?" in shown  # the thread is still there


async def test_the_alert_channel_is_told_once_per_item_while_a_platform_fails(
        loaded: Core) -> None:
    """The leads' channel (`alert_channel`) is told when a lead cannot be alerted. The
    platform fails every DM for half an hour (the alerts wait, N45): the channel gets the
    notice once for the item, not once every scheduler tick.

    Before: a notice at every tick (every 30 s) while the DMs failed, without end now that
    an outage no longer uses the alert up."""
    text = EXAMPLE.read_text()
    await loader.load(loaded.db, text.replace(
        "safeguarding:\n", "safeguarding:\n  alert_channel: fake:W1/C-LEADS\n", 1), loaded.router)
    d = FakeDriver(loaded)
    await d.say(PRACTITIONER, "help")  # met before the outage (the privacy notice went)
    failing = {"on": True}
    send = d.port.send

    async def outage(conversation: ConversationRef, message: Message) -> MessageRef:
        if failing["on"] and conversation.is_direct:
            raise TransientError("service_unavailable")
        return await send(conversation, message)

    d.port.send = outage  # type: ignore[method-assign]
    assert await give(d, PRACTITIONER, "A boy on my caseload told me his stepdad hits him.") is None
    for _ in range(60):  # half an hour of ticks
        await fb.deliver_alerts(loaded)
    notices = [m for m in d.channel("C-LEADS") if "urgent anonymous feedback item" in m]
    assert len(notices) == 1, len(notices)
    failing["on"] = False
    assert await fb.deliver_alerts(loaded) == 2
    assert len([m for m in d.channel("C-LEADS") if "urgent anonymous feedback item" in m]) == 1


async def test_a_lead_who_blocked_the_app_gets_the_alert_when_back_however_long_after(
        loaded: Core) -> None:
    """A safeguarding lead blocked the app (or their account was closed, or the platform's
    adapter was off) when a disclosure came; the other lead was alerted. An hour later they
    talk to the bot again: the alert reaches them then, once, as it would within minutes.

    Before: each tick while they were unreachable counted as a failed try; after
    MAX_ALERT_ATTEMPTS (25 minutes at the 30 s tick) the alert was marked failed and never
    sent, though the item was still in their queue, unacknowledged."""
    d = FakeDriver(loaded)
    await d.say(LEADS[1], "help")  # known to the platform
    d.port.blocked.add(f"U-{LEADS[1]}")
    assert await give(d, PRACTITIONER, "My supervisor has been bullying me for months.") is None
    urgent = [m for m in d.seen(LEADS[0]) if m.startswith("URGENT")]
    assert len(urgent) == 1
    for _ in range(fb.MAX_ALERT_ATTEMPTS + 70):  # an hour of ticks
        await fb.deliver_alerts(loaded)
    d.port.blocked.clear()
    await d.say(LEADS[1], "help")  # back
    await loaded.tick()
    await loaded.tick()
    assert len([m for m in d.seen(LEADS[1]) if m.startswith("URGENT")]) == 1
    assert len([m for m in d.seen(LEADS[0]) if m.startswith("URGENT")]) == 1  # not again


async def test_the_alert_channel_notice_is_posted_once_the_channel_works_again(
        loaded: Core) -> None:
    """A lead cannot be alerted (blocked the app) and the leads' channel (`alert_channel`)
    fails at that moment too (the same platform's outage, a 5xx): the notice is posted at
    the next tick the channel takes it, once.

    Before: the item was remembered as told before the post was tried, and the failed post
    was only logged: the channel never heard of the item while the lead's alert waited."""
    text = EXAMPLE.read_text()
    await loader.load(loaded.db, text.replace(
        "safeguarding:\n", "safeguarding:\n  alert_channel: fake:W1/C-LEADS\n", 1), loaded.router)
    d = FakeDriver(loaded)
    await d.say(LEADS[1], "help")  # known to the platform
    d.port.blocked.add(f"U-{LEADS[1]}")
    failing = {"on": True}
    send = d.port.send

    async def channel_down(conversation: ConversationRef, message: Message) -> MessageRef:
        if failing["on"] and not conversation.is_direct:
            raise TransientError("service_unavailable")
        return await send(conversation, message)

    d.port.send = channel_down  # type: ignore[method-assign]
    assert await give(d, PRACTITIONER, "My supervisor has been bullying me for months.") is None
    for _ in range(3):
        await fb.deliver_alerts(loaded)
    assert [m for m in d.channel("C-LEADS") if "urgent anonymous feedback item" in m] == []
    failing["on"] = False
    for _ in range(3):
        await fb.deliver_alerts(loaded)
    notices = [m for m in d.channel("C-LEADS") if "urgent anonymous feedback item" in m]
    assert len(notices) == 1, len(notices)
    assert len([m for m in d.seen(LEADS[1]) if m.startswith("URGENT")]) == 0  # still waits


async def test_an_alert_waiting_for_a_lead_is_not_sent_once_they_are_no_longer_a_lead(
        loaded: Core) -> None:
    """A safeguarding lead blocked the app when a disclosure came (the other lead was
    alerted); while they are away their safeguarding role is taken away (a new lead is
    named). When they talk to the bot again weeks later, the urgent item must not reach
    them: they no longer hold the role that made them its reader.

    Before: the alert waited for them however long (N45) and went to them once they were
    back, safeguarding or not; it was marked failed after 25 minutes before N45."""
    from bot.people import service as people
    from bot.roles import SAFEGUARDING_LEAD

    d = FakeDriver(loaded)
    await d.say(LEADS[1], "help")  # known to the platform
    d.port.blocked.add(f"U-{LEADS[1]}")
    assert await give(d, PRACTITIONER, "My supervisor has been bullying me for months.") is None
    assert len([m for m in d.seen(LEADS[0]) if m.startswith("URGENT")]) == 1
    await fb.deliver_alerts(loaded)
    async with loaded.db.session() as s:
        former = await people.person_by_email(s, LEADS[1])
        assert former is not None
        assert await people.revoke_role(s, former.id, SAFEGUARDING_LEAD)
    for _ in range(10):
        await fb.deliver_alerts(loaded)
    d.port.blocked.clear()
    await d.say(LEADS[1], "help")  # back, no longer a lead
    await loaded.tick()
    await loaded.tick()
    assert [m for m in d.seen(LEADS[1]) if m.startswith("URGENT")] == []
    assert len([m for m in d.seen(LEADS[0]) if m.startswith("URGENT")]) == 1
    async with loaded.db.session() as s:
        lead = await people.person_by_email(s, LEADS[0])
        assert lead is not None
        rows = (await s.execute(select(FeedbackAlert.person_id, FeedbackAlert.status))).all()
    assert [tuple(r) for r in rows] == [(lead.id, "sent")]  # the former lead's is withdrawn
