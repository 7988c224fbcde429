"""Structured logging: JSON lines when not on a terminal. Never message text on anonymous paths."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in STANDARD:
                out[k] = v if isinstance(v, str | int | float | bool | None) else repr(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


# Third-party libraries log request bodies and SQL parameters (which can hold anonymous
# text) at INFO/DEBUG: kept at WARNING whatever our own level is.
NOISY = ("slack_bolt", "slack_sdk", "aiohttp.access", "microsoft_agents", "sqlalchemy",
         "msal", "alembic", "apscheduler", "asyncio", "aiosqlite", "asyncpg")


class _Ours(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `setup` installs (told apart from any other by its class)."""


# The levels `setup` changed, as they were before its first call: the root's, and NOISY's.
# None while setup has not run (or `reset` undid it).
_before: tuple[int, dict[str, int]] | None = None


def setup(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Configure the root logger: one handler, to the stderr of the moment. Idempotent: a
    second call replaces the handler of the first (never a second one); `reset` undoes it."""
    global _before
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    handler = _Ours(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if use_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    if _before is None:
        _before = (root.level, {n: logging.getLogger(n).level for n in NOISY})
    for old in root.handlers:
        if isinstance(old, _Ours):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def reset() -> None:
    """Undo `setup` (a process that goes on after it: the test suite, after each test): its
    handler removed and closed, so nothing writes to a stream closed since (pytest closes
    each test's captured stderr: every record after it printed "--- Logging error ---"), and
    the levels as they were. The handlers it replaced are not put back: they belonged to
    their moment (pytest's capture of a test phase that has ended). Nothing to undo:
    nothing done."""
    global _before
    if _before is None:
        return
    level, levels = _before
    _before = None
    root = logging.getLogger()
    for h in root.handlers[:]:
        if isinstance(h, _Ours):
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    for name, was in levels.items():
        logging.getLogger(name).setLevel(was)
