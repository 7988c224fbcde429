"""docs/data-protection.md stays true: every table is in the inventory, every retention default
is the code's, and the programme reference lists every kind."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from bot.privacy.erasure import rules
from bot.privacy.rules import LIMITS, Retention
from storage.base import Base

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "data-protection.md").read_text()
PROGRAMME = (ROOT / "docs" / "programme.md").read_text()


def test_every_table_is_in_the_data_inventory() -> None:
    listed = set(re.findall(r"`([a-z_]+)`", DOC))
    missing = sorted(t for t in Base.metadata.tables if t not in listed)
    assert not missing, f"add to docs/data-protection.md: {missing}"


def test_the_retention_defaults_and_limits_are_the_codes() -> None:
    for f in fields(Retention):
        row = re.search(rf"^\| `{f.name}` \| (\d+) \|", DOC, re.MULTILINE)
        assert row is not None and int(row.group(1)) == f.default, f.name
        lo, hi = LIMITS[f.name]
        ref = re.search(rf"^\| `{f.name}` \| whole number \| `(\d+)` \|.*\| {lo} to {hi} \|$",
                        PROGRAMME, re.MULTILINE)
        assert ref is not None and int(ref.group(1)) == f.default, f.name


def test_every_erasure_rule_names_a_real_table_and_column() -> None:
    for rule in rules():
        table = Base.metadata.tables.get(rule.table.name)
        assert table is rule.table and rule.column in table.c, rule
