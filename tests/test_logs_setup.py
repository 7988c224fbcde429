"""`bot.logs.setup` (what `staffvoice` runs first: tests reach it through `cli.main`) leaves
no handler behind a test: its StreamHandler holds the test's sys.stderr, which pytest closes
at the test's end, and every record logged after that printed "--- Logging error ---" with a
traceback into CI's output (ValueError: I/O operation on closed file). `logs.reset` undoes
it, and tests/conftest.py runs it after every test."""

from __future__ import annotations

import logging
import sys

import pytest

from bot import logs


def test_setup_installs_one_handler_however_often_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    logs.setup("DEBUG", json_lines=True)
    logs.setup("INFO", json_lines=True)  # a second `main` in the same process
    ours = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
            and h.stream is sys.stderr]
    assert len(ours) == 1
    logging.getLogger("staffvoice.test").warning("written to this test's stderr")
    assert "written to this test's stderr" in capsys.readouterr().err
    # left installed on purpose: the next test finds what the fixture left of it


def test_no_handler_of_an_earlier_test_writes_to_its_closed_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the handler the test above installed was still on the root logger, writing to
    that test's stderr, closed since; this record printed "--- Logging error ---"."""
    root = logging.getLogger()
    assert not [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                and getattr(h.stream, "closed", False)]
    logging.getLogger("staffvoice.test").warning("after the test that set logging up")
    assert "Logging error" not in capsys.readouterr().err


def test_reset_restores_the_levels_setup_changed() -> None:
    root = logging.getLogger()
    before = root.level, logging.getLogger("asyncpg").level
    logs.setup("DEBUG", json_lines=True)
    assert root.level == logging.DEBUG and logging.getLogger("asyncpg").level == logging.WARNING
    logs.reset()
    assert (root.level, logging.getLogger("asyncpg").level) == before
    logs.reset()  # idempotent: nothing to undo
    assert (root.level, logging.getLogger("asyncpg").level) == before
