"""The safeguarding and identifier patterns: what must and must not trigger, and their settings."""

from __future__ import annotations

import functools
import re

import pytest

from bot.core import build_router
from bot.feedback import identifiers, safeguarding
from bot.feedback.safeguarding import CHILD_RISK, COLLEAGUE, SELF_HARM, Config
from bot.programme import loader
from bot.programme.schema import ProgrammeError
from tests.conftest import EXAMPLE

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


# The matcher folds the text once and runs the default patterns as one alternation without
# re.IGNORECASE (issue 22). These tests prove it flags exactly what the patterns searched one
# by one, case-insensitively, on the normalised text flag (the matcher before the change, kept
# here only as the reference): no prefilter, nothing that could miss a disclosure.

def _reference(text: str, config: Config | None = None) -> list[str]:
    patterns = _reference_patterns(config.extra_patterns if config else (),
                                   tuple(safeguarding.DEFAULT_PATTERNS.items()))
    flat = " ".join(text.replace("\u2019", "'").replace("\u2018", "'").split())
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
