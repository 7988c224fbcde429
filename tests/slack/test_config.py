"""Slack is on only when configured; the manifest asks for least privilege and says why."""

from __future__ import annotations

import re

import pytest
import yaml
from aiohttp import web

from adapters.slack import config
from adapters.slack.config import BOT_SCOPES
from adapters.slack.manifest import MANIFEST, build, load
from adapters.slack.mount import mount
from bot.core import Core
from staffvoice.cli import main


def test_without_a_signing_secret_or_app_token_slack_is_off() -> None:
    assert config.from_env({}) is None
    assert config.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}) is None


async def test_mount_adds_nothing_when_slack_is_off(core: Core) -> None:
    app = web.Application()
    assert mount(app, core, {}) is None
    assert list(app.router.routes()) == [] and "slack" not in core.ports


def test_settings_are_read_and_checked() -> None:
    cfg = config.from_env({"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1",
                           "SLACK_API_URL": "https://slack-gov.com/api", "SLACK_COMMAND": "pulse"})
    assert cfg is not None and cfg.api_url == "https://slack-gov.com/api/" and cfg.command == "/pulse"
    assert cfg.authorization_url == "https://slack-gov.com/oauth/v2/authorize"
    assert "xoxb" not in repr(cfg) and "'s'" not in repr(cfg)
    with pytest.raises(config.SlackConfigError, match="SLACK_BOT_TOKEN"):
        config.from_env({"SLACK_SIGNING_SECRET": "s"})
    with pytest.raises(config.SlackConfigError, match="xapp-"):
        config.from_env({"SLACK_APP_TOKEN": "xoxb-wrong", "SLACK_BOT_TOKEN": "xoxb-1"})
    socket = config.from_env({"SLACK_APP_TOKEN": "xapp-1", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert socket is not None and socket.socket_mode and "Socket Mode" in socket.describe()
    oauth = config.from_env({"SLACK_SIGNING_SECRET": "s", "SLACK_CLIENT_ID": "1", "SLACK_CLIENT_SECRET": "2"})
    assert oauth is not None and oauth.oauth


def test_every_scope_is_justified_and_no_more_than_the_code_uses() -> None:
    text = MANIFEST.read_text()
    scope_lines = re.findall(r"^\s+- ([a-z_.:]+)\s*(#.*)?$", text.split("scopes:")[1].split("settings:")[0], re.M)
    assert all(comment for _, comment in scope_lines), "each scope needs a comment saying why"
    assert sorted(s for s, _ in scope_lines) == sorted(config.BOT_SCOPES)
    data = yaml.safe_load(text)
    assert data["features"]["app_home"]["home_tab_enabled"] is True
    assert {s["callback_id"] for s in data["features"]["shortcuts"]} == {"feedback.open", "feedback.open.message"}


def test_the_manifest_points_at_our_url_or_uses_socket_mode() -> None:
    http = load("https://voice.northbridge.example/", command="/pulse")
    assert http["settings"]["event_subscriptions"]["request_url"] == "https://voice.northbridge.example/slack/events"
    assert http["settings"]["interactivity"]["request_url"] == "https://voice.northbridge.example/slack/events"
    assert http["oauth_config"]["redirect_urls"] == ["https://voice.northbridge.example/slack/oauth_redirect"]
    assert http["features"]["slash_commands"][0]["command"] == "/pulse"
    socket = load(None, socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "HOST" not in build(None, socket_mode=True) and "request_url" not in build(None, socket_mode=True)


def test_the_manifest_command_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["manifest", "slack", "--url", "https://voice.northbridge.example"]) == 0
    out = capsys.readouterr().out
    assert "https://voice.northbridge.example/slack/events" in out and "# send DMs" in out
    assert main(["manifest", "slack", "--url", "http://insecure.example"]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["manifest"])  # no platform: argparse says which ones there are
    assert exit_.value.code == 2


def test_the_manifest_accepts_a_url_with_a_path(capsys) -> None:  # type: ignore[no-untyped-def]
    """Behind a proxy at https://host/staffvoice, Slack must call https://host/staffvoice/slack/events."""
    assert main(["manifest", "slack", "--url", "https://intranet.northbridge.example/staffvoice/"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["settings"]["event_subscriptions"]["request_url"] == (
        "https://intranet.northbridge.example/staffvoice/slack/events")
    assert data["oauth_config"]["redirect_urls"] == [
        "https://intranet.northbridge.example/staffvoice/slack/oauth_redirect"]
    assert main(["manifest", "slack", "--url", "https://host.example/x?y=1"]) == 2
    assert "--url must be" in capsys.readouterr().err


def test_every_scope_the_manifest_asks_for_is_one_the_app_uses_and_no_history_of_channels() -> None:
    scopes = load("https://voice.northbridge.example")["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == sorted(BOT_SCOPES)
    assert not {"channels:history", "groups:history", "chat:write.public"} & set(scopes)


def test_the_manifest_subscribes_to_the_events_the_adapter_handles() -> None:
    """A deactivated account is learnt from `user_change` (needs users:read,
    docs.slack.dev/reference/events/user_change); an event the manifest does not subscribe to
    never arrives, whatever the adapter handles."""
    data = yaml.safe_load(MANIFEST.read_text())
    events = set(data["settings"]["event_subscriptions"]["bot_events"])
    assert events == {"app_home_opened", "app_mention", "app_uninstalled", "message.im",
                      "tokens_revoked", "user_change"}
    assert "users:read" in config.BOT_SCOPES
