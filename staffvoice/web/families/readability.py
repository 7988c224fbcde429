"""How hard the public pages' English is to read: a UK reading age for each page.

The Flesch-Kincaid grade level (0.39 x words per sentence + 11.8 x syllables per word - 15.59)
is a US school grade; a UK reading age is that grade plus five years. Syllables are counted by a
rule of thumb (groups of vowels, less a silent final e), which is what readability checkers do;
it is a guide for whoever edits the wording, not a verdict. Every text on a page counts, each
label or sentence as its own sentence, so short labels pull the figure down as they do for a
reader; so that one hard paragraph cannot hide among them, each text of twelve words or more is
also scored on its own. Only English is measured: the formula's weights are for English.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from staffvoice.web.families.strings import DEFAULT, words

AIM = 9.0  # the reading age the strings are written for (strings/en.yaml)
LONG_TEXT = 12  # words: a text this long is also scored on its own (shorter ones are too noisy)
AUDIENCES = ("families", "young_people")

_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*|\d+")
_VOWELS = re.compile(r"[aeiouy]+")
_SILENT_END = re.compile(r"([^laeiouy])(?:es|ed|e)$")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)|:\s")
_FIELD = re.compile(r"\{[a-z_]+\}")
# Not what a reader sees: the language's own name, codes and the template's field names.
_NOT_READ = frozenset({"lang_name", "html_lang"})


def syllables(word: str) -> int:
    """Syllables in one English word, by rule of thumb (at least one)."""
    w = word.lower().strip("'’")
    if len(w) <= 3:
        return 1
    w = _SILENT_END.sub(r"\1", w)
    if w.startswith("y"):
        w = w[1:]
    return max(1, len(_VOWELS.findall(w)))


@dataclass(frozen=True)
class Reading:
    """One page's figures."""

    audience: str
    age: float  # UK reading age in years
    words: int
    sentences: int
    longest: str  # the sentence with most words, for whoever edits the wording
    hard_words: tuple[str, ...]  # words of four syllables or more, most common first
    hardest: tuple[tuple[str, float], ...] = ()  # (name, age) of long texts, hardest first

    def above(self, most: float) -> bool:
        """Whether the page, or one long text on it, reads above this age."""
        return self.age > most or any(age > most for _, age in self.hardest)


def measure(texts: Iterable[str], audience: str = "") -> Reading:
    """The reading age of these texts taken together."""
    n_words = n_sentences = n_syllables = 0
    longest: list[str] = []
    hard: dict[str, int] = {}
    for text in texts:
        text = _FIELD.sub("30", text)
        for sentence in _SENTENCE_END.split(text):
            ws = _WORD.findall(sentence)
            if not ws:
                continue
            n_sentences += 1
            n_words += len(ws)
            for w in ws:
                s = syllables(w)
                n_syllables += s
                if s >= 4:
                    hard[w.lower()] = hard.get(w.lower(), 0) + 1
            if len(ws) > len(longest):
                longest = ws
    if not n_words:
        return Reading(audience, 0.0, 0, 0, "", ())
    grade = 0.39 * n_words / n_sentences + 11.8 * n_syllables / n_words - 15.59
    return Reading(audience, round(max(grade, 0.0) + 5, 1), n_words, n_sentences, " ".join(longest),
                   tuple(sorted(hard, key=lambda w: (-hard[w], w))))


def pages(wording: Mapping[str, Any]) -> list[Reading]:
    """Each public page's English, with the programme's own words over the strings file."""
    out = []
    for audience in AUDIENCES:
        texts = {k: v for k, v in words(DEFAULT, audience, wording).items() if k not in _NOT_READ}
        page = measure(texts.values(), audience)
        each = [(k, measure([v])) for k, v in texts.items()]
        hardest = sorted(((k, m.age) for k, m in each if m.words >= LONG_TEXT),
                         key=lambda x: (-x[1], x[0]))
        out.append(replace(page, hardest=tuple(hardest)))
    return out
