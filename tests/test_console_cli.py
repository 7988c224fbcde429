"""The console as a person (or a script) uses it: the real `staffvoice` command, stdin piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE, ROOT, TEST_SECRET

STAFFVOICE = [sys.executable, "-m", "staffvoice"]


def run(args: list[str], db_url: str, tmp: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, STAFFVOICE_DATABASE_URL=db_url, STAFFVOICE_SECRET_KEY=TEST_SECRET,
               STAFFVOICE_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    return subprocess.run(STAFFVOICE + args, input=stdin, capture_output=True, text=True,
                          env=env, cwd=tmp, timeout=120)


def test_a_scripted_console_session(db_url: str, tmp_path: Path) -> None:
    loaded = run(["programme", "load", str(EXAMPLE)], db_url, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded" in loaded.stdout

    script = "\n".join([
        "help",
        "grant change team practitioner2@northbridge.example",
        "/as changelead@northbridge.example",
        "help",
        "/quit",
    ]) + "\n"
    out = run(["chat", "--as", "practitioner1@northbridge.example"], db_url, tmp_path, script)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "practitioner1@northbridge.example> help" in text
    assert "WHAT YOU CAN DO HERE" in text
    assert "Sorry, only the change team can do that. Nothing was changed." in text
    assert "-- you are now changelead@northbridge.example --" in text
    assert "grant ROLE EMAIL" in text
    assert "Traceback" not in text + out.stderr


def test_a_bad_programme_file_is_reported_by_line_and_nothing_loads(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("programme:\n  name: X\n  timezone: Nowhere/Town\nthemes: nope\n")
    out = run(["programme", "load", str(bad)], db_url, tmp_path)
    assert out.returncode == 2
    assert "2 problem(s); nothing was loaded" in out.stderr
    assert "line 3, programme.timezone: 'Nowhere/Town' is not a time zone" in out.stderr
    assert "line 4, themes: should be a list of themes" in out.stderr
    assert "Traceback" not in out.stderr

    missing = run(["programme", "load", str(tmp_path / "missing.yaml")], db_url, tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
