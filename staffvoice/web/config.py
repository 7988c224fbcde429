"""The web surface's settings, from the environment (secrets never logged)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from bot.secrets import is_loopback

SLACK_ISSUER = "https://slack.com"
ENTRA_ISSUER = "https://login.microsoftonline.com/{tenant}/v2.0"


@dataclass(frozen=True)
class Provider:
    """One OpenID Connect provider people sign in with."""

    name: str  # slack | entra (in URLs: never a person)
    label: str  # "Slack", "Microsoft"
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str = "openid email profile"
    tenant: str = ""  # Entra: the one tenant whose people may sign in


@dataclass(frozen=True)
class WebSettings:
    """What the dashboard needs to know beyond the core's settings."""

    base_url: str = ""  # public origin, e.g. https://staffvoice.northbridge.example
    providers: tuple[Provider, ...] = ()
    session_idle: timedelta = timedelta(minutes=30)
    session_max: timedelta = timedelta(hours=8)
    bound_hosts: tuple[str, ...] = ()

    @property
    def loopback_only(self) -> bool:
        """Whether the server listens on loopback addresses only (demo sign-in links allowed)."""
        return bool(self.bound_hosts) and all(is_loopback(h) for h in self.bound_hosts)

    @property
    def secure_origin(self) -> bool:
        return urlsplit(self.base_url).scheme == "https" or not self.base_url

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSettings:
        """Read STAFFVOICE_WEB_* (see README, "The dashboard")."""
        providers = []
        slack_id = env.get("STAFFVOICE_WEB_SLACK_CLIENT_ID", "").strip()
        if slack_id:
            providers.append(Provider(
                "slack", "Slack", env.get("STAFFVOICE_WEB_SLACK_ISSUER", SLACK_ISSUER).rstrip("/"),
                slack_id, env.get("STAFFVOICE_WEB_SLACK_CLIENT_SECRET", "")))
        entra_id = env.get("STAFFVOICE_WEB_ENTRA_CLIENT_ID", "").strip()
        tenant = env.get("STAFFVOICE_WEB_ENTRA_TENANT", "").strip()
        if entra_id and tenant:
            issuer = env.get("STAFFVOICE_WEB_ENTRA_ISSUER", ENTRA_ISSUER.format(tenant=tenant))
            providers.append(Provider(
                "entra", "Microsoft", issuer.rstrip("/"), entra_id,
                env.get("STAFFVOICE_WEB_ENTRA_CLIENT_SECRET", ""), tenant=tenant))
        hosts = tuple(h.strip() for h in env.get("STAFFVOICE_BOUND_HOSTS", "").split(",") if h.strip())
        return cls(
            base_url=env.get("STAFFVOICE_WEB_BASE_URL", "").strip().rstrip("/"),
            providers=tuple(providers),
            session_idle=timedelta(minutes=_minutes(env, "STAFFVOICE_WEB_SESSION_IDLE_MINUTES", 30)),
            session_max=timedelta(minutes=_minutes(env, "STAFFVOICE_WEB_SESSION_MAX_MINUTES", 480)),
            bound_hosts=hosts,
        )


def _minutes(env: Mapping[str, str], name: str, default: int) -> int:
    from bot.config import SettingsError

    raw = env.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of minutes, not {raw!r}") from None
    if not 1 <= value <= 7 * 24 * 60:
        raise SettingsError(f"{name} must be between 1 and 10080 minutes, not {raw}")
    return value
