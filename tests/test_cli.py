"""The `staffvoice` command line as a new user meets it: every mistake a user or an environment
can make is one line, `error: ...`, exit status 2, no traceback; every command and argument
explains itself; read-only commands never change the database."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.broadcasts import service as broadcasts
from bot.broadcasts.tables import Delivery
from bot.config import Settings
from bot.core import Core
from bot.people.tables import Person
from staffvoice.cli import build_parser, main
from storage.db import Database
from tests.conftest import ROOT, TEST_SECRET
from tests.fakes.slack_api import BOT_TOKEN, TEAM, FakeSlack

UPGRADE = "the database needs `staffvoice db upgrade`"


def staffvoice(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, with only the environment given (and PATH)."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    clean.update({"STAFFVOICE_SECRET_KEY": TEST_SECRET, "STAFFVOICE_LOG_LEVEL": "WARNING",
                  "PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "staffvoice", *args], capture_output=True,
                          text=True, env=clean, cwd=cwd, timeout=120)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit status 2 and said why in exactly one line, no traceback."""
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


# -- the environment ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["db", "upgrade"], ["serve", "--help"]])
def test_a_port_that_is_not_a_number_is_one_line_even_with_help(tmp_path: Path, args: list[str]) -> None:
    out = staffvoice(*args, cwd=tmp_path, STAFFVOICE_PORT="abc")
    assert one_error_line(out) == "error: STAFFVOICE_PORT must be a whole number, not 'abc'"


@pytest.mark.parametrize(("url", "says"), [
    ("nonsense", "'nonsense' is not a database URL; expected sqlite+svinline:///FILE or "
                 "postgresql+asyncpg://"),
    ("mysql://u@localhost/sv", "unsupported database URL scheme 'mysql'; use one of: "
                               "sqlite+svinline, sqlite+aiosqlite, postgresql+asyncpg"),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432", "the PostgreSQL URL names no database"),
])
def test_a_bad_database_url_is_one_line(tmp_path: Path, url: str, says: str) -> None:
    out = staffvoice("db", "upgrade", cwd=tmp_path, STAFFVOICE_DATABASE_URL=url)
    assert one_error_line(out).startswith(f"error: {says}")


def test_an_unreachable_postgresql_is_one_line_with_the_password_hidden(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    url = "postgresql+asyncpg://staffvoice:hunter2@127.0.0.1:1/staffvoice"
    for args in (["db", "upgrade"], ["broadcast", "list"]):
        line = one_error_line(staffvoice(*args, cwd=tmp_path, STAFFVOICE_DATABASE_URL=url))
        assert line.startswith("error: cannot open the database at "
                               "postgresql+asyncpg://staffvoice:***@127.0.0.1:1/staffvoice: ")
        assert "hunter2" not in line


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    url = f"sqlite+svinline:///{tmp_path}/a-file/staffvoice.db"
    line = one_error_line(staffvoice("db", "upgrade", cwd=tmp_path, STAFFVOICE_DATABASE_URL=url))
    assert line == (f"error: cannot open the database at {url}: unable to open database file")


def test_a_serve_that_cannot_reach_its_database_says_so_in_one_log_line(tmp_path: Path) -> None:
    out = staffvoice("serve", "--port", "0", cwd=tmp_path, STAFFVOICE_LOG_JSON="0",
                     STAFFVOICE_DATABASE_URL="postgresql+asyncpg://u:secret@127.0.0.1:1/sv")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "secret" not in out.stderr
    assert "start-up failed: cannot open the database at postgresql+asyncpg://u:***@127.0.0.1:1/sv" \
        in out.stderr


# -- files given on the command line ------------------------------------------------------------


def test_an_out_file_that_cannot_be_written_is_one_line(settings: Settings, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    out = tmp_path / "a-file" / "programme.yaml"
    assert main(["programme", "export", "--out", str(out)], settings=settings) == 2
    assert capsys.readouterr().err == f"error: {out}: Not a directory\n"
    chart = tmp_path / "a-file" / "trend.png"
    assert main(["report", "chart", "--survey", "weekly-pulse", "--question", "x", "--out",
                 str(chart)], settings=settings) == 2
    assert capsys.readouterr().err.count("\n") == 1  # (no such survey: still one line)


# -- read-only commands never migrate -----------------------------------------------------------

READ_ONLY = [["programme", "export"], ["schedule", "list"], ["broadcast", "list"],
             ["broadcast", "status", "b1"], ["report", "rounds"], ["report", "round", "r1"]]


@pytest.mark.parametrize("args", READ_ONLY)
def test_a_read_only_command_on_an_old_database_asks_for_an_upgrade_and_changes_nothing(
        tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # an empty database: no migration applied
    settings = Settings(database_url=f"sqlite+svinline:///{path}", secret_key=TEST_SECRET)
    assert main(args, settings=settings) == 2
    assert capsys.readouterr().err == (f"error: {UPGRADE} (its schema is older than this "
                                       "staffvoice)\n")
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT name FROM sqlite_master").fetchall() == []  # still untouched


def test_a_read_only_command_with_no_database_file_does_not_create_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.db"
    settings = Settings(database_url=f"sqlite+svinline:///{path}", secret_key=TEST_SECRET)
    assert main(["broadcast", "list"], settings=settings) == 2
    assert capsys.readouterr().err == f"error: there is no database at {path}; {UPGRADE} to create it\n"
    assert not path.exists()


# -- what the commands print --------------------------------------------------------------------


def test_empty_lists_say_they_are_empty(db: Database, settings: Settings,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """(`db` empties the shared PostgreSQL database first, as for every story.)"""
    assert main(["broadcast", "list"], settings=settings) == 0
    assert capsys.readouterr().out == "no broadcasts yet\n"
    assert main(["report", "rounds"], settings=settings) == 0
    assert capsys.readouterr().out == "no closed rounds yet (results show once a round closes)\n"


def test_an_unknown_broadcast_is_named_in_shell_words_not_chat_words(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("status", "watch", "send"):
        assert main(["broadcast", action, "b-nope"], settings=settings) == 2
        err = capsys.readouterr().err
        assert err == "error: no broadcast with id 'b-nope' (see: staffvoice broadcast list)\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"], settings=Settings())
    assert done.value.code == 0
    assert capsys.readouterr().out == "staffvoice 0.1.0\n"


@pytest.mark.parametrize("args", [["manifest", "--help"], ["manifest", "slack", "--help"],
                                  ["manifest", "teams", "--help"], ["--help"]])
def test_help_exits_zero(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(args, settings=Settings())
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: staffvoice")


def _commands(parser: argparse.ArgumentParser, path: str = "staffvoice"):  # type: ignore[no-untyped-def]
    """Every (command path, parser, the help its parent lists for it), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub, helps.get(name)
                yield from _commands(sub, f"{path} {name}")


def test_every_command_and_argument_has_real_help() -> None:
    missing = []
    for path, parser, listed in _commands(build_parser(Settings())):
        if not listed or "see 'staffvoice" in listed:
            missing.append(f"{path}: {listed!r}")
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not a.help or a.help == argparse.SUPPRESS:
                missing.append(f"{path} {a.option_strings or a.dest}")
    assert missing == []


# -- broadcast send uses the platforms the environment configures -------------------------------


async def test_broadcast_send_delivers_through_the_configured_slack(
        loaded: Core, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No test port in the process: SLACK_* settings (as `serve` reads them) give the sender
    its platform; here Slack's Web API is the local fake."""
    from adapters.slack.config import SlackConfig
    from adapters.slack.port import Directory, SlackPort, Workspaces

    fake = FakeSlack(retry_after=0)
    await fake.start()
    fake.add_channel("C0NEWS")
    try:
        # The change team publishes in chat (on a replica with Slack), to a Slack channel.
        ws = Workspaces(SlackConfig(signing_secret="s", bot_token=BOT_TOKEN, api_url=fake.url))
        await ws.start()
        loaded.add_port(SlackPort(ws, Directory(ws)))
        async with loaded.db.session() as s:
            author = (await s.execute(select(Person.id).where(
                Person.email == "changelead@northbridge.example"))).scalar_one()
        bid = await broadcasts.publish_to_staff(loaded, author, title="Early win: one front door",
                                                text="Referrals now reach one team.",
                                                audience=f"channels: slack:{TEAM}/C0NEWS")
        await ws.close()
        await loaded.db.dispose()
        assert fake.in_channel("C0NEWS") == []  # queued, not sent: no replica is draining

        for name in [k for k in os.environ if k.startswith(("SLACK_", "CONNECTIONS__"))]:
            monkeypatch.delenv(name)
        rc = await asyncio.to_thread(main, ["broadcast", "send", bid], settings=settings)
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: no platform is configured in this environment")
        assert err.count("\n") == 1 and "nothing was sent: slack: not configured" in err

        for name, value in {"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": BOT_TOKEN,
                            "SLACK_API_URL": fake.url}.items():
            monkeypatch.setenv(name, value)
        rc = await asyncio.to_thread(main, ["broadcast", "send", bid], settings=settings)
        assert rc == 0, capsys.readouterr().err
        assert "done: 1 delivered of 1" in capsys.readouterr().out
        assert any("Early win: one front door" in m.text for m in fake.in_channel("C0NEWS"))
        async with loaded.db.session() as s:
            states = (await s.execute(select(Delivery.state).where(
                Delivery.broadcast_id == bid))).scalars().all()
        assert states == ["sent"]
    finally:
        await fake.close()



def test_a_serve_whose_port_is_taken_says_so_without_a_traceback(settings: Settings,
                                                                  tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = staffvoice("serve", "--port", port, cwd=tmp_path, STAFFVOICE_LOG_JSON="1",
                         STAFFVOICE_DATABASE_URL=settings.database_url)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert '"msg": "cannot listen"' in out.stderr and '"port": ' + port in out.stderr


def test_serve_off_loopback_without_the_server_key_refuses_in_one_line(tmp_path: Path) -> None:
    """A generated key would sit beside the database, in the same backups (tests/anonymity)."""
    db = f"sqlite+svinline:///{tmp_path}/sv.db"
    line = one_error_line(staffvoice("serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path,
                                     STAFFVOICE_SECRET_KEY="", STAFFVOICE_DATABASE_URL=db))
    assert "STAFFVOICE_SECRET_KEY is not set" in line and "0.0.0.0" in line
    assert not (tmp_path / "sv.db").exists() and not (tmp_path / ".staffvoice-secret").exists()
