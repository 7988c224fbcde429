"""Reading an HR file (CSV or XLSX) into a `Listing` of people, with each problem's row and column.

CSV: UTF-8 with or without a byte order mark (Excel's "CSV UTF-8" export), comma, semicolon or
tab separated. XLSX: the first sheet, read with openpyxl in read-only mode. Column names are
matched without regard to case, spaces, dashes or underscores; `--map COLUMN=FIELD` names the
rest. Anything that makes the whole file unreadable is a `SourceError` with one clear line.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.people.directory import (
    FIELD_NAMES,
    Listing,
    Problem,
    Record,
    SourceError,
    parse_date,
    parse_roles,
    parse_work_pattern,
)
from bot.people.service import valid_tz

MAX_BYTES = 200 * 1024 * 1024  # about 1.5 million rows of a typical HR export
ALIASES = {
    "email": ("email", "emailaddress", "workemail", "mail", "e-mail"),
    "name": ("name", "fullname", "displayname", "staffname"),
    "team": ("team", "teampath", "teamid", "unit"),
    "manager": ("manager", "manageremail", "linemanager", "linemanageremail", "reportsto"),
    "roles": ("roles", "role"),
    "timezone": ("timezone", "tz", "zone"),
    "work_pattern": ("workpattern", "workingpattern", "pattern", "workinghours"),
    "ends_on": ("endson", "enddate", "contractend", "contractenddate", "leavingdate"),
}


def column_key(name: str) -> str:
    """A column name as matched: lower case, without spaces, dashes, underscores or dots."""
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def parse_maps(pairs: list[str]) -> dict[str, str]:
    """`--map "Work Mail=email"` pairs as {column key: field}; SourceError on a bad one."""
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, fld = pair.partition("=")
        fld = fld.strip().lower().replace(" ", "_")
        if not sep or not column.strip() or fld not in FIELD_NAMES:
            raise SourceError(f"--map '{pair}' should be COLUMN=FIELD, FIELD one of: "
                              f"{', '.join(FIELD_NAMES)}")
        out[column_key(column)] = fld
    return out


def read_file(path: str | Path, maps: dict[str, str] | None = None) -> Listing:
    """The people in an HR file; SourceError when the file as a whole cannot be used."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SourceError(f"{p.name} is {size // (1024 * 1024)} MB; the limit is "
                              f"{MAX_BYTES // (1024 * 1024)} MB")
        data = p.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    return read_bytes(data, p.name, maps or {})


def read_bytes(data: bytes, name: str, maps: dict[str, str]) -> Listing:
    if data[:4] == b"PK\x03\x04" or name.lower().endswith((".xlsx", ".xlsm")):
        rows = _xlsx_rows(data, name)
    elif data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or name.lower().endswith(".xls"):
        raise SourceError(f"{name} is an old Excel .xls workbook; save it as .xlsx or 'CSV UTF-8'")
    else:
        rows = _csv_rows(data, name)
    return _listing(rows, name, maps)


def _csv_rows(data: bytes, name: str) -> Iterator[list[Any]]:
    if b"\x00" in data[:65536]:
        raise SourceError(f"{name} is not a text file (it holds binary data); "
                          "use CSV (UTF-8) or XLSX")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(f"{name} is not UTF-8 text (byte {e.start:,}); in Excel choose "
                          "Save As > 'CSV UTF-8 (Comma delimited)'") from None
    first = text[:4096].split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from reader
    except csv.Error as e:
        raise SourceError(f"{name}, line {reader.line_num:,}: not readable as CSV ({e})") from None


def _xlsx_rows(data: bytes, name: str) -> Iterator[list[Any]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as e:
        raise SourceError(f"{name} is not a readable Excel workbook ({type(e).__name__})") from None
    try:
        ws = wb.worksheets[0] if wb.worksheets else None
        if ws is None:
            raise SourceError(f"{name} has no sheets")
        for row in ws.iter_rows(values_only=True):
            yield list(row)
    finally:
        wb.close()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _listing(rows: Iterator[list[Any]], name: str, maps: dict[str, str]) -> Listing:
    header: list[str] | None = None
    number = 0
    for row in rows:
        number += 1
        if any(_cell(c) for c in row):
            header = [_cell(c) for c in row]
            break
    if header is None:
        raise SourceError(f"{name} is empty (no header row with an email column)")
    fields: dict[str, int] = {}
    columns: dict[str, str] = {}
    ignored: list[str] = []
    for i, col in enumerate(header):
        key = column_key(col)
        fld = maps.get(key) or next((f for f, names in ALIASES.items()
                                     if key in {column_key(n) for n in names}), None)
        if fld is None:
            if col:
                ignored.append(col)
            continue
        if fld in fields:
            raise SourceError(f"{name}: columns '{columns[fld]}' and '{col}' both mean {fld}; "
                              f"use --map to say which (e.g. --map \"{col}=...\")")
        fields[fld], columns[fld] = i, col
    if "email" not in fields:
        found = ", ".join(f"'{c}'" for c in header[:12] if c) or "none"
        raise SourceError(f"{name} has no email column (columns found: {found}); name one "
                          "'email' or use --map \"YOUR COLUMN=email\"")
    listing = Listing("import", [], detail=name)
    if ignored:
        listing.notes.append(f"ignored columns: {', '.join(ignored[:20])}")

    def val(row: list[Any], fld: str) -> str | None:
        i = fields.get(fld)
        if i is None:
            return None
        return _cell(row[i]) if i < len(row) else ""

    for row in rows:
        number += 1
        if not any(_cell(c) for c in row):
            continue
        where = f"row {number:,}"
        probs = listing.problems
        email = (val(row, "email") or "").lower()
        if not email:
            probs.append(Problem(where, columns["email"], "missing"))
            continue
        rec = Record(where, email, columns=columns)
        name_v = val(row, "name")
        rec.name = name_v if name_v else None
        rec.team = val(row, "team") or None
        manager = val(row, "manager")
        rec.manager = manager.lower() if manager else None
        roles = val(row, "roles")
        if roles is not None:
            rec.roles, bad = parse_roles(roles)
            if bad:
                probs.append(Problem(where, columns["roles"], f"unknown role '{bad[0]}' (roles: "
                                     "change team, team lead, safeguarding lead, leader)"))
        tz = val(row, "timezone")
        if tz:
            rec.tz = valid_tz(tz)
            if rec.tz is None:
                probs.append(Problem(where, columns["timezone"],
                                     f"'{tz[:64]}' is not a time zone (like Europe/London)"))
        wp = val(row, "work_pattern")
        if wp:
            rec.work_pattern = parse_work_pattern(wp)
            if rec.work_pattern is None:
                probs.append(Problem(where, columns["work_pattern"],
                                     f"'{wp[:40]}' should look like mon-fri 09:00-17:00"))
        e = fields.get("ends_on")
        raw = row[e] if e is not None and e < len(row) else None
        if raw not in (None, ""):
            rec.ends_on = parse_date(raw)
            if rec.ends_on is None:
                probs.append(Problem(where, columns["ends_on"],
                                     f"'{_cell(raw)[:40]}' should be a date like 2027-03-31"))
        listing.records.append(rec)
    return listing
