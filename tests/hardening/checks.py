"""What every hardening test asserts: no unhandled error in the log, no injected mention or link.

`ErrorLog` collects every record at ERROR or above from any logger while a test runs (a
hypothesis test runs many examples inside one pytest test, so caplog's per-test view is too
coarse). `slack_leaks` and `teams_leaks` read what the fake platforms recorded and return every
place where text the bot sent would be parsed by the platform as a mention, a broadcast or a
link that someone's typed text planted.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.fakes.slack_api import FakeSlack
from tests.fakes.teams_connector import FakeConnector

# Slack parses `<...>` in mrkdwn and in a message's top-level text: `<!channel>`, `<@U1>`,
# `<#C1>`, `<!subteam^S1>`, `<!date^...>`, `<https://x|label>`, `<mailto:...>`. The bot itself
# never writes any of these, so any in what it sent came from someone's text.
SLACK_CONTROL = re.compile(r"<\s*(?:[!@#]|(?:https?|mailto|tel|slack|ftp)\s*:)", re.I)
# Teams: activity text and TextBlocks are markdown/HTML; a mention is an `<at>` tag plus an entity.
TEAMS_MARKUP = re.compile(r"<\s*(?:at|a|img|script|iframe)\b|\]\s*\(\s*[a-z]+:", re.I)
# Card fields whose content Teams shows verbatim (never parsed as markdown): not checked.
TEAMS_VERBATIM = {"TextRun": {"text"}, "Input.Text": {"value", "placeholder", "label"},
                  "Input.ChoiceSet": {"value"}, "Input.Number": {"value"},
                  "Action.Submit": {"data", "title"}, "Action.OpenUrl": {"url", "title"},
                  "Input.Choice": {"title", "value"}}


class ErrorLog(logging.Handler):
    """Every log record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        out = []
        for r in self.records:
            exc = ""
            if r.exc_info and r.exc_info[1] is not None:
                exc = f" [{type(r.exc_info[1]).__name__}: {str(r.exc_info[1])[:200]}]"
            extra = getattr(r, "error", "")  # adapters name the failure in an `error` field
            out.append(f"{r.name}: {r.getMessage()[:200]}{exc}{f' ({extra})' if extra else ''}")
        return out

    def take(self) -> list[str]:
        lines = self.lines()
        self.records.clear()
        return lines


@contextmanager
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.WARNING, logging.WARNING))
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


# -- Slack -------------------------------------------------------------------------------

SENDING = ("chat.postMessage", "chat.update", "chat.postEphemeral", "views.open", "views.update",
           "views.push", "views.publish", "response_url")


def _slack_strings(obj: Any, parsed: bool = False) -> Iterator[str]:
    """Strings Slack would parse for markup: mrkdwn text objects, and top-level message text."""
    if isinstance(obj, dict):
        kind = obj.get("type")
        for key, value in obj.items():
            if key == "text" and isinstance(value, str):
                if kind == "mrkdwn" or parsed:
                    yield value
            else:
                yield from _slack_strings(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _slack_strings(item)


def slack_leaks(fake: FakeSlack, since: int = 0) -> list[str]:
    """Parsed text in Slack calls from index `since` on that contains a control sequence."""
    found = []
    for call in fake.calls[since:]:
        if call.method not in SENDING:
            continue
        args = call.args
        strings = list(_slack_strings(args.get("blocks") or []))
        strings += list(_slack_strings(args.get("view") or {}))
        if isinstance(args.get("text"), str):
            strings.append(args["text"])  # the notification text is parsed as mrkdwn
        for s in strings:
            m = SLACK_CONTROL.search(s)
            if m:
                found.append(f"{call.method}: ...{s[max(0, m.start() - 30):m.end() + 30]!r}...")
    return found


# -- Teams -------------------------------------------------------------------------------


def _teams_strings(obj: Any, skip: set[str] | None = None) -> Iterator[str]:
    if isinstance(obj, dict):
        kind = obj.get("type")
        verbatim = TEAMS_VERBATIM.get(str(kind), set())
        for key, value in obj.items():
            if key in verbatim:
                continue
            if isinstance(value, str):
                yield value
            else:
                yield from _teams_strings(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _teams_strings(item)


def teams_leaks(fake: FakeConnector, since: set[str] | None = None) -> list[str]:
    """Markup or mention entities in activities the bot posted (ids not in `since`)."""
    found = []
    for aid, posted in fake.state.posted.items():
        if since is not None and aid in since:
            continue
        for activity in posted.versions:
            for e in activity.get("entities") or []:
                if isinstance(e, dict) and e.get("type") == "mention":
                    found.append(f"{aid}: mention entity {json.dumps(e)[:200]}")
            for s in _teams_strings({k: v for k, v in activity.items() if k != "entities"}):
                m = TEAMS_MARKUP.search(s)
                if m:
                    found.append(f"{aid}: ...{s[max(0, m.start() - 30):m.end() + 30]!r}...")
    return found
