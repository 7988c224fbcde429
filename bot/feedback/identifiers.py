"""Spotting text that may identify someone: a name, a phone number, an email, a case number.

Only ever a warning before sending: the author decides and may edit. Nothing is altered.
"""

from __future__ import annotations

import re

NAME = "name"
PHONE = "phone"
EMAIL = "email"
REFERENCE = "reference"
LABELS = {
    NAME: "what looks like a person's name",
    PHONE: "a phone number",
    EMAIL: "an email address",
    REFERENCE: "what looks like a case or reference number",
}

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# UK numbers (07..., 01/02/03..., +44) with common separators; 10-11 digits.
_PHONE = re.compile(r"(?:\+44\s?\(?0?\)?|\b0)(?:[\s-]?\d){9,10}\b")
_REFERENCE = re.compile(
    r"\b(?:case|ref|reference|file|record|crn|lcs|mosaic|nhs)(?:\s*(?:no\.?|number|#|id))?"
    r"\s*[:#]?\s*[A-Z]{0,4}[-/]?\d[\d/-]{2,}\b"
    r"|\b[A-Z]{1,4}[-/]?\d{4,}(?:[-/]\d+)*\b"
    r"|\b\d{3}\s\d{3}\s\d{4}\b"  # NHS number layout
    r"|\b\d{6,}\b",
    re.IGNORECASE,
)
_TITLE_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr)\.?\s+[A-Z][a-z'-]+")
_CALLED = re.compile(r"\b(?:called|named|name is|manager|colleague|supervisor)\s+[A-Z][a-z'-]{2,}\b")
_FULL_NAME = re.compile(r"\b([A-Z][a-z'-]{1,})\s+([A-Z][a-z'-]{2,})\b")
# Capitalised pairs that are not people (words of the service and of the programme).
NOT_NAMES = {
    "family", "network", "networks", "meeting", "meetings", "support", "front", "door", "team",
    "children", "childrens", "services", "service", "social", "care", "group", "supervision",
    "case", "notes", "recording", "practice", "tools", "training", "change", "changes",
    "programme", "the", "our", "my", "we", "i", "it", "this", "that", "monday", "tuesday",
    "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march",
    "april", "may", "june", "july", "august", "september", "october", "november", "december",
    "north", "south", "east", "west", "northbridge", "council", "mash", "lado", "court",
    "assessment", "safeguarding", "lead", "leads", "worker", "workers", "manager", "director",
    "adviser", "personal", "duty", "emergency", "in", "on", "at", "for", "and", "but", "so",
    "when", "if", "why", "what", "how", "please", "thanks", "thank", "you", "new", "old",
    "hub", "office", "centre", "center", "board", "panel", "plan", "plans", "child", "protection",
    "conference", "review", "reviews", "early", "help", "wins", "win", "teams", "slack",
    "microsoft", "excel", "word", "outlook", "liquidlogic", "mosaic", "signs", "safety",
}


def findings(text: str) -> list[str]:
    """Which kinds of identifier `text` may contain, in a stable order (empty if none)."""
    found = []
    if _looks_like_name(text):
        found.append(NAME)
    if _PHONE.search(text):
        found.append(PHONE)
    if _EMAIL.search(text):
        found.append(EMAIL)
    stripped = _PHONE.sub(" ", _EMAIL.sub(" ", text))
    if _REFERENCE.search(stripped):
        found.append(REFERENCE)
    return found


def _looks_like_name(text: str) -> bool:
    if _TITLE_NAME.search(text) or _CALLED.search(text):
        return True
    for m in _FULL_NAME.finditer(text):
        first, last = m.group(1).lower(), m.group(2).lower()
        if first not in NOT_NAMES and last not in NOT_NAMES:
            return True
    return False


def describe(kinds: list[str]) -> str:
    names = [LABELS[k] for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
