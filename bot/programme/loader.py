"""Validate, load (idempotently) and export the programme file."""

from __future__ import annotations

from typing import Any

import yaml

from bot.programme.core_sections import CORE_SECTIONS
from bot.programme.schema import Doc, ProgrammeError, Section, parse
from bot.router import Router
from storage.db import Database


def all_sections(router: Router) -> list[Section]:
    return sorted([*CORE_SECTIONS, *router.sections], key=lambda s: s.order)


def validate(text: str, router: Router) -> Doc:
    """Parse and check the whole file; raises ProgrammeError listing every problem."""
    if len(text) > 5_000_000:
        raise ProgrammeError(["the file is larger than 5 MB; is it the right file?"])
    doc = parse(text)
    sections = all_sections(router)
    known = {s.key for s in sections}
    for key in doc.data:
        if key not in known:
            doc.problem((key,), f"unknown section (expected one of: {', '.join(sorted(known))})")
    if "programme" not in doc.data:
        doc.problem((), "the 'programme' section is required")
    for section in sections:
        if section.key in doc.data and doc.data[section.key] is not None:
            section.validate(doc, doc.data[section.key])
    if doc.problems:
        raise ProgrammeError(doc.problems)
    return doc


async def load(db: Database, text: str, router: Router) -> list[str]:
    """Validate then sync every section in one transaction; returns what was loaded."""
    doc = validate(text, router)
    loaded = []
    async with db.session() as s:
        for section in all_sections(router):
            value = doc.data.get(section.key)
            if value is not None:
                await section.sync(s, doc, value)
                loaded.append(section.key)
    return loaded


async def export(db: Database, router: Router) -> str:
    """The programme as it stands in the database, as YAML."""
    out: dict[str, Any] = {}
    async with db.session() as s:
        for section in all_sections(router):
            value = await section.export(s)
            if value not in (None, [], {}):
                out[section.key] = value
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100)


__all__ = ["ProgrammeError", "validate", "load", "export"]
