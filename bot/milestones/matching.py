"""Finding a milestone from what someone typed: its id, its title, or a near miss of either."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words people wrap a milestone name in ("the status of the ... milestone").
FILLER = frozenset(
    "a an the of for in at on to is are what whats what's how hows how's going status "
    "milestone milestones please".split()
)
GOOD = 80.0  # a fuzzy score at or above this is a match
CLOSE = 8.0  # matches within this of the best are too close to choose between
HINT = 45.0  # below this there is nothing worth suggesting


@dataclass(frozen=True)
class Found:
    """`ids` holds one match, several to choose from, or none (then maybe a `closest`)."""

    ids: tuple[str, ...]
    closest: str | None = None

    @property
    def one(self) -> str | None:
        return self.ids[0] if len(self.ids) == 1 else None


def words(text: str) -> list[str]:
    """Lower-case words without filler and punctuation."""
    raw = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return [w for w in raw if w not in FILLER]


def word_score(query: list[str], target: set[str]) -> float:
    """How well every query word is found among the target's words (0-100)."""
    if not query or not target:
        return 0.0
    # Imported at the first near miss, not by every serving process (2.8 MB: bench/README.md).
    from rapidfuzz import fuzz

    # Squared so that one clean word outweighs two half-typed ones.
    per_word = [max(fuzz.ratio(q, t) for t in target) ** 2 / 100 for q in query]
    return sum(per_word) / len(per_word)


def find(query: str, milestones: list[tuple[str, str]]) -> Found:
    """Match `query` against (id, title) pairs: exact id, all words exact, then fuzzy."""
    q = query.strip().lower()
    for mid, title in milestones:
        if q in (mid.lower(), title.lower()):
            return Found((mid,))
    qw = words(query)
    if not qw:
        return Found(())
    vocab = {mid: set(words(title)) | set(words(mid.replace("-", " "))) for mid, title in milestones}
    exact = [mid for mid, _ in milestones if set(qw) <= vocab[mid]]
    if exact:
        return Found(tuple(exact))
    scored = sorted(
        ((word_score(qw, vocab[mid]), mid) for mid, _ in milestones), reverse=True
    )
    if not scored:
        return Found(())
    best = scored[0][0]
    if best < GOOD:
        return Found((), closest=scored[0][1] if best >= HINT else None)
    return Found(tuple(mid for score, mid in scored if score >= GOOD and best - score < CLOSE))
