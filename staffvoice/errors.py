"""Failures the person at the shell can act on, each said in one line (`error: ...`, exit 2)."""

from __future__ import annotations

from bot.config import SettingsError
from bot.errors import UserError
from bot.programme.schema import ProgrammeError
from storage.db import DatabaseUnavailable, DatabaseUrlError

EXIT_USAGE = 2


class CliError(Exception):
    """A problem with what was asked or with the environment; `str()` is the whole message."""


def one_line(exc: BaseException) -> str | None:
    """The message for a failure a user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, CliError | SettingsError | DatabaseUrlError | DatabaseUnavailable):
        return str(exc)
    if isinstance(exc, UserError):  # a core service refusing (its wording suits both places)
        return str(exc)
    if isinstance(exc, ProgrammeError):
        return f"the programme has {len(exc.problems)} problem(s): " + "; ".join(
            str(p) for p in exc.problems)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"  # an --out, --csv or FILE we cannot use
    return None
