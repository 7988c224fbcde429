"""A survey's time zone from a form or a file is checked without ever crashing the check."""

from __future__ import annotations

from bot.pulse import definition


def test_a_long_dotted_time_zone_is_a_clear_problem_not_a_recursion_error() -> None:
    """zoneinfo imports each '/' part of a name as a package: '<at>x</at>' repeated recursed
    past the limit in the hardening fuzz (a RecursionError and 'Sorry', not a field error)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    definition.check({"id": "s", "title": "S", "timezone": "<at>Everyone</at>" * 5000},
                     lambda path, msg: problems.append((path, msg)), teams=set())
    assert any(path == ("timezone",) and "is not a time zone" in msg for path, msg in problems)
