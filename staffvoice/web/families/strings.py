"""The words of the public pages: one strings file per language, then the programme's own words.

A language is chosen by `?lang=` or, failing that, the browser's Accept-Language; anything a
language's file leaves out is shown in English.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "strings"
DEFAULT = "en"


@lru_cache(maxsize=16)
def _file(lang: str) -> dict[str, dict[str, str]]:
    path = HERE / f"{lang}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {k: {a: str(b) for a, b in (v or {}).items()} for k, v in data.items()}


@lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """Languages with a strings file (English first)."""
    names = sorted(p.stem for p in HERE.glob("*.yaml"))
    return (DEFAULT, *[n for n in names if n != DEFAULT])


def choose(query: str | None, accept: str | None, offered: tuple[str, ...]) -> str:
    """`?lang=` if offered, else the first offered language the browser asks for, else English."""
    ok = [lang for lang in offered if lang in available()] or [DEFAULT]
    if query and query.lower() in ok:
        return query.lower()
    for part in (accept or "")[:500].split(","):
        tag = part.split(";")[0].strip().lower()
        for cand in (tag, tag.split("-")[0]):
            if cand in ok:
                return cand
    return DEFAULT


def words(lang: str, audience: str, wording: Mapping[str, Any]) -> dict[str, str]:
    """Every text for one page: English, then the language's file, then the programme's words."""
    out: dict[str, str] = {}
    layers = [_file(DEFAULT), wording.get(DEFAULT) or {}]
    if lang != DEFAULT:
        layers += [_file(lang), wording.get(lang) or {}]
    for layer in layers:
        out.update(layer.get("common") or {})
        out.update(layer.get(audience) or {})
    return out
