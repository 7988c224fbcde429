"""Slack settings from the environment. Secrets stay out of repr and logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_COMMAND = "/voice"

# What the bot token may do; each scope is justified in manifest/slack/manifest.yaml.
BOT_SCOPES = (
    "app_mentions:read",
    "channels:read",
    "chat:write",
    "commands",
    "files:write",
    "im:history",
    "groups:read",
    "im:write",
    "usergroups:read",
    "users:read",
    "users:read.email",
)


class SlackConfigError(ValueError):
    """The Slack settings are present but cannot work together."""


@dataclass(frozen=True)
class SlackConfig:
    signing_secret: str = field(default="", repr=False)
    bot_token: str = field(default="", repr=False)
    app_token: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    command: str = DEFAULT_COMMAND
    # Longest Retry-After we wait for inline; longer waits go back to the caller as RateLimited.
    max_inline_wait_s: float = 5.0

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    @property
    def oauth(self) -> bool:
        """Multi-workspace install: installations live in the database."""
        return bool(self.client_id and self.client_secret) and not self.bot_token

    @property
    def authorization_url(self) -> str:
        """The OAuth consent page on the same Slack domain as the Web API (GovSlack differs)."""
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc}/oauth/v2/authorize"

    def describe(self) -> str:
        mode = "Socket Mode" if self.socket_mode else "HTTP events at /slack/events"
        install = "OAuth install at /slack/install" if self.oauth else "single workspace"
        return f"slack: {mode}, {install}, command {self.command}"


def from_env(env: Mapping[str, str]) -> SlackConfig | None:
    """The Slack settings, or None when Slack is not configured (no signing secret, no app token)."""
    signing = env.get("SLACK_SIGNING_SECRET", "").strip()
    app_token = env.get("SLACK_APP_TOKEN", "").strip()
    if not signing and not app_token:
        return None
    api_url = env.get("SLACK_API_URL", "").strip() or DEFAULT_API_URL
    if not api_url.endswith("/"):
        api_url += "/"
    command = env.get("SLACK_COMMAND", "").strip() or DEFAULT_COMMAND
    if not command.startswith("/"):
        command = "/" + command
    cfg = SlackConfig(
        signing_secret=signing,
        bot_token=env.get("SLACK_BOT_TOKEN", "").strip(),
        app_token=app_token,
        client_id=env.get("SLACK_CLIENT_ID", "").strip(),
        client_secret=env.get("SLACK_CLIENT_SECRET", "").strip(),
        api_url=api_url,
        command=command,
    )
    check(cfg)
    return cfg


def check(cfg: SlackConfig) -> None:
    """Refuse combinations that would start but never work, with a message an admin can act on."""
    if not cfg.bot_token and not cfg.oauth:
        raise SlackConfigError(
            "Slack needs SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and "
            "SLACK_CLIENT_SECRET (install into several workspaces)"
        )
    if not cfg.socket_mode and not cfg.signing_secret:
        raise SlackConfigError("Slack over HTTP needs SLACK_SIGNING_SECRET")
    if cfg.app_token and not cfg.app_token.startswith("xapp-"):
        raise SlackConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    scheme = urlsplit(cfg.api_url).scheme
    if scheme not in ("https", "http"):
        raise SlackConfigError("SLACK_API_URL must be an http(s) URL like https://slack.com/api/")
