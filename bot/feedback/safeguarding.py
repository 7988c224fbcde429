"""Safeguarding: the maintained pattern list, the configured routes and how they are shown.

Anonymous feedback is not a referral route. Text that looks like a disclosure of risk to a
child, of self-harm, or an allegation about a colleague is flagged so the sender sees the
routes again, and the item reaches the safeguarding leads at once. The patterns err towards
flagging: a false alarm costs a lead a minute, a miss can cost a child.

Maintaining the list: add a phrase to DEFAULT_PATTERNS (or, per council, to `safeguarding.
patterns` in the programme file) together with a must-trigger and a must-not-trigger example
in tests/test_feedback_safeguarding.py.
"""

from __future__ import annotations

import re
import re._parser as _parser  # the pattern's parse: which patterns fold (below)
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from bot.model import Text

CHILD_RISK = "child_risk"
SELF_HARM = "self_harm"
COLLEAGUE = "colleague_allegation"
CATEGORIES = (CHILD_RISK, SELF_HARM, COLLEAGUE)
LABELS = {
    CHILD_RISK: "possible risk to a child",
    SELF_HARM: "possible self-harm",
    COLLEAGUE: "possible allegation about a colleague",
}

_CHILD = (r"(?:(?:child|kid|baby|boy|girl|teenager|toddler|infant|son|daughter|pupil|newborn)s?"
          r"|children|child's|babies|young (?:person|people))")
_CARER = (r"(?:dad|mum|mom|father|mother|stepdad|stepfather|stepmum|stepmother|parent|parents"
          r"|partner|boyfriend|girlfriend|uncle|aunt|grandad|grandfather|carer|brother|sister)")
_HARMED = (r"(?:hit(?!\s+hard)|hits|hitting|beat|beats|beaten|beating|hurt|hurts|hurting|abused|abusing|abuses"
           r"|assaulted|assaulting|neglected|starved|starving|burnt|burned|bruised|bruises|bruising"
           r"|injured|injuries|punched|punches|kicked|kicks|slapped|slaps|shaken|strangled|choked"
           r"|touched(?! base)|touches(?! base)|touching(?! base)|groomed|grooming|exploited"
           r"|trafficked|raped|molested|smacked"
           r"|smacks|whipped|threatened|locked (?:in|up))")
_STAFF = (r"(?:(?:manager|colleague|co-worker|coworker|worker|supervisor|team lead|team leader"
          r"|social worker|staff member|practitioner|foster carer|carer|teacher|senior)s?"
          r"|member of staff|one of (?:the|our) (?:staff|team)|someone (?:in|on) (?:my|our) team)")
_MISCONDUCT = (r"(?:hit|hits|slapped|smacked|punched|kicked|assaulted|abused|abusing|grabbed"
               r"|restrained|shoved|pushed|touch(?:ed|ing|es)? me|touch(?:ed|ing|es)? (?:a|the|one of the) "
               r"(?:child|young person|kid|girl|boy)|inappropriate(?:ly)? with"
               r"|sexual(?:ly)?|harass(?:ed|es|ing|ment)?|bull(?:y|ies|ied|ying)"
               r"|drunk|under the influence|high on|falsif(?:y|ied|ies|ying)"
               r"|stole|steals|stealing|threaten(?:ed|s|ing)?"
               r"|shout(?:ed|s|ing)? at (?:a|the) (?:child|kid|young person|baby)"
               r"|sent (?:messages|pictures|photos) to (?:a|the) (?:child|young person|girl|boy))")
_S = r"[^.!?\n]{0,80}?"  # within one sentence

DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    CHILD_RISK: (
        rf"\b{_CHILD}\b{_S}\b(?:is|was|are|were|being|been|get|gets|getting|got|keeps? getting)"
        rf"\s+(?:\w+\s+)?{_HARMED}\b",
        rf"\b{_CARER}\b{_S}\b{_HARMED}\s+(?:him|her|them|me|us|the (?:child|baby|kids?|boy|girl))\b",
        rf"\b(?:his|her|their|my|the)\s+{_CARER}\s+{_HARMED}\b",
        rf"\b{_HARMED}\s+(?:a|the|my|this|that|one)\s+{_CHILD}\b",
        rf"\b{_CHILD}\b{_S}\b(?:had|has|with|covered in)\s+(?:\w+\s+)?(?:bruises|burns|injuries|marks)\b",
        r"\b(?:scared|afraid|frightened|too scared) (?:to go|of going) home\b",
        r"\bnot safe (?:at home|with (?:his|her|their) \w+)\b",
        r"\b(?:disclosed|told me|confided|said)\b[^.!?\n]{0,60}\b(?:abus\w*|touch\w*|hit|hits|hurt|hurts"
        r"|beat|beats|sexual\w*|rape\w*)\b",
        r"\b(?:child|sexual) (?:sexual )?(?:abuse|exploitation)\b|\bcse\b|\bfgm\b"
        r"|\bfemale genital mutilation\b",
        r"\b(?:left|leaves|leaving) (?:the |a |her |his |their )?(?:\w+ )?"
        r"(?:baby|toddler|children|kids|child) (?:alone|home alone|on (?:their|his|her) own)\b",
        rf"\b{_CHILD}\b{_S}\b(?:left|leaving|leaves) (?:at )?(?:home )?alone\b",
        # In the first person, as a child or young person writes it on the public page.
        rf"\b(?:he|she|they)\s+(?:keeps?\s+|always\s+)?{_HARMED}\s+me\b"
        rf"|\b(?:get|gets|got|getting|being|been)\s+{_HARMED}\s+at home\b"
        r"|\b(?:don'?t|do not|never) feel safe (?:at home|with (?:my|his|her|their) \w+)\b",
    ),
    SELF_HARM: (
        r"\b(?:kill|killing|hurt|hurting|harm|harming|cut|cutting) (?:myself|themselves|himself|herself)\b",
        r"\bself[- ]?harm(?:ing|ed)? (?:again|myself|every)\b|\bbeen self[- ]?harming\b"
        r"|\bi (?:self[- ]?harm|am self[- ]?harming)\b",
        r"\bsuicidal\b|\b(?:thinking|thought|think) (?:about|of) (?:suicide|ending (?:it|my life)"
        r"|killing myself)\b",
        r"\b(?:end|ending|take|taking) my (?:own )?life\b|\bend it all\b",
        r"\b(?:don'?t|do not) want to (?:live|be alive|be here any ?more|wake up)\b",
        r"\b(?:want|wanted|going) to die\b|\bcan'?t go on\b|\bbetter off dead\b",
        r"\boverdos(?:e|ed|ing)\b",
    ),
    COLLEAGUE: (
        rf"\b{_STAFF}\b{_S}\b{_MISCONDUCT}\b",
        r"\b(?:allegation|allegations|complaint) (?:about|against) (?:a|my|our|one of (?:the|our)) "
        r"(?:colleague|manager|worker|staff|carer|foster carer|team)",
        r"\b(?:my|our|a) (?:manager|colleague|supervisor|team lead(?:er)?) (?:is|has been) "
        r"(?:abusing|harassing|bullying)\b",
    ),
}

FIXED_NOTICE = "This is not a way to report a concern about a child or an adult at risk."
DEFAULT_SIGNPOSTING = (
    "If a child may be at risk, contact the children's social care front door now. "
    "If your concern is about a colleague, contact the LADO or the whistleblowing line. "
    "In an emergency call 999. Feedback here is anonymous: nobody, including the bot, can "
    "trace you, so nobody can follow up with you about a concern."
)


@dataclass(frozen=True)
class Route:
    """A place to take a concern: front door, LADO, whistleblowing line."""

    name: str
    phone: str = ""
    email: str = ""
    url: str = ""
    hours: str = ""
    description: str = ""

    def line(self) -> str:
        parts = [p for p in (self.phone, self.email, self.url, self.hours) if p]
        return " · ".join(parts) or self.description or "-"


@dataclass(frozen=True)
class Config:
    """The `safeguarding:` programme section, with defaults when it is absent."""

    signposting: str = DEFAULT_SIGNPOSTING
    routes: tuple[Route, ...] = ()
    extra_patterns: tuple[tuple[str, tuple[str, ...]], ...] = ()
    max_length: int = 2000
    daily_limit: int = 5
    alert_channel: str = ""
    # When non-urgent feedback becomes readable to the change team, in the programme's time
    # zone (bot/feedback/release.py); "HH:MM", earliest first.
    release_times: tuple[str, ...] = ("12:00", "17:00")

    @classmethod
    def from_setting(cls, value: Mapping[str, Any] | None) -> Config:
        """Build from the stored setting (as written by the programme section)."""
        v = value or {}
        fb = v.get("feedback") or {}
        return cls(
            signposting=v.get("signposting") or DEFAULT_SIGNPOSTING,
            routes=tuple(Route(**{k: str(r.get(k) or "") for k in
                                  ("name", "phone", "email", "url", "hours", "description")})
                         for r in v.get("routes") or ()),
            extra_patterns=tuple(sorted((k, tuple(p)) for k, p in (v.get("patterns") or {}).items())),
            max_length=int(fb.get("max_length", 2000)),
            daily_limit=int(fb.get("daily_limit", 5)),
            alert_channel=str(v.get("alert_channel") or ""),
            release_times=tuple(sorted({str(t) for t in fb.get("release_times") or ()}))
            or ("12:00", "17:00"),
        )


# How the patterns are run (issue 22: they took 0.43 M instructions a form, each of 21
# case-insensitive patterns searched on its own). The text is folded once, and the default
# patterns, which are ASCII and lower case, run without re.IGNORECASE on the folded text:
# a case-insensitive literal costs a lookup per character and keeps `re` from skipping an
# alternative on its first letter. Folding is exact, not approximate: an ASCII letter is
# lowered, and the only other characters that re.IGNORECASE lets match an ASCII letter (the
# dotted and dotless i, the long s and the Kelvin sign) become that letter; every character
# keeps its place, so word boundaries and the `{0,80}` within a sentence count the same.
# tests/test_feedback_safeguarding.py proves this over every code point and compares the
# results with the patterns searched one by one, case-insensitively, over every string in
# the tests, their variants and a random corpus. A default pattern that `foldable` does not
# accept (a capital, a scoped flag, a group) is simply run as a programme's extra pattern is:
# on its own, case-insensitively, on the unfolded text. Nothing is pre-filtered.
_CASE = {**{c: c + 32 for c in range(ord("A"), ord("Z") + 1)},
         0x130: ord("i"), 0x131: ord("i"), 0x17F: ord("s"), 0x212A: ord("k")}


def fold(text: str) -> str:
    """`text` as the default patterns see it: one character for one, cased as they are."""
    return text.lower() if text.isascii() else text.translate(_CASE)


def foldable(pattern: str) -> bool:
    """Whether `pattern` may run on folded text without re.IGNORECASE, joined to others.

    Read from the parsed pattern, not its text (`\\x41` is a capital A): every literal and
    range ASCII and free of capitals, only the classes, anchors and lookarounds whose case
    behaviour the tests prove, no flag (`(?-i:...)`, `(?a)` would change case or \\w back)
    and no capturing group (joined, a backreference's number would point elsewhere).
    """
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return False
    return parsed.state.flags == re.UNICODE and _case_free(parsed.data)


def _case_free(items: Iterable[tuple[Any, Any]]) -> bool:
    for op, av in items:
        kind = str(op)
        if kind in ("LITERAL", "NOT_LITERAL"):
            ok = av < 128 and not chr(av).isupper()
        elif kind == "RANGE":
            ok = av[1] < 128 and not (av[0] <= ord("Z") and av[1] >= ord("A"))
        elif kind in ("AT", "CATEGORY", "NEGATE", "ANY"):
            ok = True
        elif kind in ("IN", "ATOMIC_GROUP"):
            ok = _case_free(av)
        elif kind == "BRANCH":
            ok = all(_case_free(b) for b in av[1])
        elif kind in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            ok = _case_free(av[2])
        elif kind in ("ASSERT", "ASSERT_NOT"):
            ok = _case_free(av[1])
        elif kind == "SUBPATTERN":
            ok = av[0] is None and not av[1] and not av[2] and _case_free(av[3])
        else:  # a backreference, a conditional, anything newer
            ok = False
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Matcher:
    """The compiled patterns: per category, one alternation of the folded ones, and the rest."""

    any_folded: re.Pattern[str] | None
    folded: tuple[tuple[str, re.Pattern[str] | None], ...]
    others: Mapping[str, tuple[re.Pattern[str], ...]]

    def concerns(self, flat: str) -> list[str]:
        low = fold(flat)
        # One scan for the common case: most texts match nothing. A match anywhere means some
        # category matches; then each category is searched again to say which.
        hit = self.any_folded is not None and self.any_folded.search(low) is not None
        if not hit and not self.others:
            return []
        return [cat for cat, pat in self.folded
                if (hit and pat is not None and pat.search(low))
                or any(p.search(flat) for p in self.others.get(cat, ()))]


def _alternation(patterns: Iterable[str]) -> re.Pattern[str] | None:
    joined = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(joined) if joined else None


@lru_cache(maxsize=32)
def matcher(extra: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> Matcher:
    """The default patterns plus a programme's extra ones, compiled once."""
    fast: dict[str, list[str]] = {k: [] for k in DEFAULT_PATTERNS}
    slow: dict[str, list[re.Pattern[str]]] = {}
    for category, patterns in DEFAULT_PATTERNS.items():
        for p in patterns:
            if foldable(p):
                fast[category].append(p)
            else:
                slow.setdefault(category, []).append(re.compile(p, re.IGNORECASE))
    for category, patterns in extra:
        fast.setdefault(category, [])
        slow.setdefault(category, []).extend(re.compile(p, re.IGNORECASE) for p in patterns)
    return Matcher(
        any_folded=_alternation(p for ps in fast.values() for p in ps),
        folded=tuple((k, _alternation(v)) for k, v in fast.items()),
        others={k: tuple(v) for k, v in slow.items() if v},
    )


def concerns(text: str, config: Config | None = None) -> list[str]:
    """The safeguarding categories `text` looks like, in a stable order (empty if none)."""
    return matcher(config.extra_patterns if config else ()).concerns(_normalise(text))


# Look-alike letters of other alphabets (a keyboard left on Cyrillic or Greek for a letter),
# apostrophes and hyphens that are not ASCII: read as the letters the sender sees.
_FOLD = str.maketrans({
    **dict.fromkeys("\u2018\u2019\u02bc\u2032\u00b4", "'"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212", "-"),
    **dict(zip("\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u04bb\u0501"
               "\u051b\u051d\u04cf\u043a\u0131\u0261\u03b1\u03bf\u03c1\u03b9\u03ba\u03bd"
               "\u03c5\u03c7",
               "aeopcyxijshdqwlkigaopikvux", strict=True)),
    **dict(zip("\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0423\u0425"
               "\u0406\u0408\u0405\u04ae\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c"
               "\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
               "ABEKMHOPCTYXIJSYABEZHIKMNOPTYX", strict=True)),
})
# A word broken across lines with a hyphen (text copied from a PDF or a narrow column).
_BROKEN = re.compile(r"(?<=\w)-[ \t]*\r?\n\s*(?=\w)")
# Whether `_FOLD` has anything to do (a scan; `str.translate` with a dict is a lookup a
# character, 20 us for 500 characters), and the runs of other characters to read through.
_FOLDABLE = re.compile("[" + re.escape("".join(map(chr, _FOLD))) + "]")
_OTHER = re.compile(r"[^\x00-\x7f]+")


def _shown(run: re.Match[str] | str) -> str:
    """`run` without its combining accents (Mn) and invisible format characters (Cf)."""
    text = run if isinstance(run, str) else run.group()
    return "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn"))


def _normalise(text: str) -> str:
    """The text as the patterns should read it: what the sender sees, not how it is encoded.

    Without this, characters nobody sees dodged the patterns: a soft hyphen from a pasted
    document or a zero-width space inside a word, a dash that is not U+002D, full-width or
    accented letters, a Cyrillic "а" among Latin ones (docs/invariants.md N49)."""
    # A phone's curly apostrophes, the commonest: replaced alone, they cost nothing more.
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if not text.isascii():
        # Compatibility forms (full-width, ligatures, styled letters) to plain letters,
        # accents off; invisible format characters (soft hyphen, zero-width, bidi) dropped.
        # Folded before too: NFKD would make a spacing accent used as an apostrophe a space.
        # Only what needs it is read a character at a time in Python: a message with one
        # emoji or "£" cost 70 us more than an ASCII one for 500 characters, now 7 us.
        if _FOLDABLE.search(text):
            text = text.translate(_FOLD)
        text = unicodedata.normalize("NFKD", text)
        if len(text.encode("ascii", "ignore")) * 4 > len(text) * 3:  # mostly ASCII: the runs
            text = _OTHER.sub(_shown, text)
        else:
            text = _shown(text)
        if _FOLDABLE.search(text):
            text = text.translate(_FOLD)
    if "-" in text:
        text = _BROKEN.sub("", text)
    return " ".join(text.split())


def route_blocks(config: Config) -> tuple[Text, ...]:
    """The notice, the configured signposting text and the routes, as plain text blocks.

    Plain text (not a grid) so every surface shows the routes, the console's form prompt too.
    """
    blocks = [Text(FIXED_NOTICE, heading=True), Text(config.signposting)]
    if config.routes:
        blocks.append(Text("\n".join(f"• {r.name}: {r.line()}" for r in config.routes)))
    return tuple(blocks)


def describe(categories: Iterable[str]) -> str:
    return ", ".join(LABELS.get(c, c.replace("_", " ")) for c in categories)
