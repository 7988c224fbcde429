"""The console demo at any hour: its clock can be moved (`/time`, `chat --at`), the demo says so
in its first lines, the help lines read right, and console channels do not nag under `serve`
(issue 17 item 15)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.core import Core, build_router
from bot.model import text_message
from storage.db import Database
from tests.conftest import EXAMPLE
from tests.test_console_cli import run

EVENING = "2026-12-02 21:30"  # a Wednesday, after working hours
MORNING = "2026-12-03 09:30"


def test_the_demo_says_how_to_move_the_clock_and_a_pulse_question_then_arrives(
    db: Database, db_url: str, tmp_path: Path  # db: a clean database on PostgreSQL too
) -> None:
    out = run(["demo", "--at", EVENING], db_url, tmp_path, f"/time {MORNING}\n/quit\n")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[:6]
    assert any("/time YYYY-MM-DD 09:30" in line for line in first), first
    text = out.stdout
    assert "21:30 (Europe/London), outside working hours" in text
    assert "Move the clock with: /time 2026-12-03 09:30" in text
    assert "Thu 03 Dec 2026 09:30 (Europe/London), within working hours" in text
    assert "WEEKLY PULSE: QUESTION 1 OF 7" in text  # invited once the clock says 09:30
    assert "Traceback" not in text + out.stderr


def test_chat_at_a_working_moment_shows_the_pulse_question_at_once(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    assert run(["programme", "load", str(EXAMPLE)], db_url, tmp_path).returncode == 0
    out = run(["chat", "--at", MORNING], db_url, tmp_path, "/tick\n/time nonsense\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert "WEEKLY PULSE: QUESTION 1 OF 7" in out.stdout
    assert "usage: /time 2026-12-02 09:30" in out.stdout


def test_no_help_line_repeats_its_command() -> None:
    """'results results [TEAM]': a usage that repeated the command's words."""
    for cmd in build_router().commands.values():
        assert not cmd.usage.lower().startswith(cmd.words), (cmd.words, cmd.usage)


async def test_console_channels_under_serve_are_said_once_not_on_every_tick(
    loaded: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """Under `serve` there is no console: the example's console:local digest channels were
    warned about on every tick."""
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert await loaded.post_channel("console:local/leadership", text_message("x")) is None
            assert await loaded.post_channel("console:local/change-updates", text_message("x")) is None
    said = [r for r in caplog.records if "not connected" in r.getMessage()]
    assert len(said) == 2 and all(r.levelno == logging.INFO for r in said)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
