"""`staffvoice manifest slack --url https://HOST | --socket-mode`: our manifest, filled in."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from adapters.slack.config import DEFAULT_COMMAND

MANIFEST = Path(__file__).resolve().parents[2] / "manifest" / "slack" / "manifest.yaml"


def build(url: str | None, *, socket_mode: bool = False, command: str = DEFAULT_COMMAND) -> str:
    """The manifest text (comments kept): request URLs on `url`, or Socket Mode with no URL."""
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    # The file's opening how-to comment is for readers of the repository, not for Slack.
    lines = lines[next(i for i, line in enumerate(lines) if not line.startswith("#")):]
    out: list[str] = []
    skip_list_item = False
    for line in lines:
        stripped = line.strip()
        if skip_list_item and stripped.startswith("- "):
            continue
        skip_list_item = False
        if stripped.startswith("- command: /voice"):
            line = line.replace("/voice", command, 1)
        if socket_mode:
            if "https://HOST" in line:
                continue
            if stripped.startswith("redirect_urls:"):
                skip_list_item = True
                continue
            line = line.replace("socket_mode_enabled: false", "socket_mode_enabled: true")
        else:
            assert url is not None
            line = line.replace("https://HOST", url.rstrip("/"))
        out.append(line)
    return "\n".join(out) + "\n"


def load(url: str | None, *, socket_mode: bool = False, command: str = DEFAULT_COMMAND) -> dict[str, Any]:
    """The manifest as data (what Slack will read)."""
    data: dict[str, Any] = yaml.safe_load(build(url, socket_mode=socket_mode, command=command))
    return data


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="staffvoice manifest slack",
        description="Print the Slack app manifest to paste into 'Create an app from a manifest'.",
    )
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="public https:// address of this server, e.g. https://voice.example.org or "
                            "https://intranet.example.org/staffvoice")
    where.add_argument("--socket-mode", action="store_true", help="no public URL: use Socket Mode")
    ap.add_argument("--command", default=DEFAULT_COMMAND, help="slash command name (default /voice)")
    args = ap.parse_args(argv)
    if args.url:
        # A path is fine (https://host/staffvoice behind a proxy that forwards it to this
        # server): Slack gets https://host/staffvoice/slack/events and so on.
        parts = urlsplit(args.url)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            print("error: --url must be the server's public https:// address, like "
                  "https://voice.example.org or https://intranet.example.org/staffvoice",
                  file=sys.stderr)
            return 2
    command = args.command if args.command.startswith("/") else "/" + args.command
    sys.stdout.write(build(args.url, socket_mode=args.socket_mode, command=command))
    return 0
