"""Teams settings from the environment, in the Agents SDK's own variable names.

Credentials: CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID / __CLIENTSECRET / __TENANTID.
Without them the endpoint is off, unless STAFFVOICE_TEAMS_ANONYMOUS=true is set on a loopback
listen address (for local tools such as the Microsoft 365 Agents Playground).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__"
BOT_FRAMEWORK_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
# Scope of tokens the bot presents to the Bot Connector service.
CONNECTOR_SCOPE = "https://api.botframework.com/.default"
TRUE = ("1", "true", "yes", "on")
# Set by `serve` to the addresses it actually listens on (comma-separated): `--host` wins over
# STAFFVOICE_HOST, so the anonymous-mode check must read what was bound, not the variable.
BOUND_HOSTS = "STAFFVOICE_BOUND_HOSTS"


class TeamsConfigError(ValueError):
    """The Teams settings are inconsistent; the message says how to fix them."""


@dataclass(frozen=True)
class TeamsConfig:
    app_id: str
    app_secret: str = field(default="", repr=False)
    tenant_id: str = ""
    anonymous: bool = False
    # Where signing keys come from. Overridable for sovereign clouds and for tests.
    metadata_urls: tuple[str, ...] = (BOT_FRAMEWORK_METADATA,)
    issuers: tuple[str, ...] = (BOT_FRAMEWORK_ISSUER,)
    host: str = "127.0.0.1"
    bot_name: str = "staffvoice"

    @property
    def sdk_settings(self) -> dict[str, str]:
        """The SDK's connection settings (for MsalConnectionManager)."""
        return {"CLIENTID": self.app_id, "CLIENTSECRET": self.app_secret,
                "TENANTID": self.tenant_id}


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def load(env: Mapping[str, str]) -> TeamsConfig | None:
    """The Teams config, or None when Teams is not configured (the endpoint stays off)."""
    app_id = env.get(PREFIX + "CLIENTID", "").strip()
    secret = env.get(PREFIX + "CLIENTSECRET", "").strip()
    tenant = env.get(PREFIX + "TENANTID", "").strip()
    bound = [h.strip() for h in env.get(BOUND_HOSTS, "").split(",") if h.strip()]
    host = ", ".join(bound) if BOUND_HOSTS in env else (
        env.get("STAFFVOICE_HOST", "127.0.0.1").strip() or "127.0.0.1")
    anonymous = env.get("STAFFVOICE_TEAMS_ANONYMOUS", "").strip().lower() in TRUE
    metadata = tuple(
        u.strip() for u in env.get("STAFFVOICE_TEAMS_OPENID_METADATA", "").split(",") if u.strip()
    ) or (BOT_FRAMEWORK_METADATA,)
    issuers = tuple(
        u.strip() for u in env.get("STAFFVOICE_TEAMS_ISSUERS", "").split(",") if u.strip()
    ) or (BOT_FRAMEWORK_ISSUER,)
    if tenant and "STAFFVOICE_TEAMS_OPENID_METADATA" not in env:
        # Single-tenant apps also receive tokens issued by their own Entra tenant.
        metadata += (f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration",)
        issuers += (f"https://login.microsoftonline.com/{tenant}/v2.0",
                    f"https://sts.windows.net/{tenant}/")
    if app_id and secret:
        # Credentials always win: never fall back to anonymous when they are set.
        return TeamsConfig(app_id, secret, tenant, False, metadata, issuers, host)
    if app_id or secret:
        raise TeamsConfigError(
            f"Teams needs both {PREFIX}CLIENTID and {PREFIX}CLIENTSECRET (only one is set)."
        )
    if not anonymous:
        return None
    hosts = bound if BOUND_HOSTS in env else [host]
    if not hosts or not all(is_loopback(h) for h in hosts):
        raise TeamsConfigError(
            "STAFFVOICE_TEAMS_ANONYMOUS=true is refused: the server listens on "
            f"{host or 'every address'!r}, not only on loopback. Anonymous mode lets anyone "
            "pose as any user; use it only with --host 127.0.0.1 for local tools."
        )
    return TeamsConfig("", "", tenant, True, metadata, issuers, host)
