"""What Bolt does to logging on each Slack request: our own loggers stay as configured, and
Bolt builds no debug line that logging would only drop (issue 22)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from adapters.slack.app import BOLT_LOG
from tests.conformance.drivers.slack import SlackDriver

PRACTITIONER = "practitioner1@northbridge.example"


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


async def test_a_slack_request_leaves_our_own_loggers_as_the_operator_set_them(
        slack: SlackDriver) -> None:
    # Bolt copies its logger's level, handlers and filters onto the logger named after the
    # app on every request: named "staffvoice", that was the parent of all of ours, so one
    # Slack request set (or unset) the level of every staffvoice.* logger.
    ours, root, keep = logging.getLogger("staffvoice"), logging.getLogger(), Keep()
    saved = ours.level, root.level
    ours.setLevel(logging.INFO)
    root.setLevel(logging.DEBUG)
    root.addHandler(keep)
    try:
        await slack.say(PRACTITIONER, "status")
        assert slack.seen(PRACTITIONER), "the person got no answer"
        logging.getLogger("staffvoice.slack").info("after a Slack request")
        assert ours.level == logging.INFO
        assert ours.filters == [] and ours.handlers == []
        assert "staffvoice.slack: after a Slack request" in keep.messages
    finally:
        root.removeHandler(keep)
        ours.setLevel(saved[0])
        root.setLevel(saved[1])


async def test_bolt_builds_no_debug_line_for_a_request(slack: SlackDriver,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Production logging at DEBUG (bot.logs keeps slack_bolt at WARNING): Bolt checks its
    # logger's own level, not the effective one, before formatting "Applying <middleware>".
    built: list[Any] = []
    monkeypatch.setattr(BOLT_LOG, "debug", lambda *a, **k: built.append(a))
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.DEBUG)
    try:
        await slack.say(PRACTITIONER, "status")
        await slack.say(PRACTITIONER, "status")
    finally:
        root.setLevel(saved)
    assert len(slack.seen(PRACTITIONER)) >= 2, "the person got no answers"
    # Bolt formats some lines whatever the level ("Checking listener: ...", "Running
    # listener: ...", one or two per listener); those guarded by its logger's own level, the
    # "Applying <middleware>" ones (5 a request here), are no longer built.
    assert [a[0] for a in built if a[0].startswith("Applying ")] == []
    assert built, "the spy saw nothing: Bolt no longer logs through BOLT_LOG?"
