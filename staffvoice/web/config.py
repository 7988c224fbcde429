"""The web surface's settings, from the environment (secrets never logged)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
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
    # Reverse proxies whose X-Forwarded-For is believed (STAFFVOICE_TRUSTED_PROXIES: addresses or
    # networks, comma-separated); from anyone else the header is ignored.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()

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
            trusted_proxies=_networks(env.get("STAFFVOICE_TRUSTED_PROXIES", "")),
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


def _networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """`10.0.0.5, 192.168.0.0/24` as networks; a bad entry is a configuration error."""
    from bot.config import SettingsError

    out = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            out.append(ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(f"STAFFVOICE_TRUSTED_PROXIES: {part!r} is not an address or "
                             "network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
    return tuple(out)


# The well-known IPv4/IPv6 translation prefix (RFC 6052): the IPv4 address is the last 32 bits,
# so every IPv4 visitor translated into it would share one /64.
NAT64 = IPv6Network("64:ff9b::/96")


def _ip(addr: str) -> IPv4Address | IPv6Address | None:
    """An address as a proxy may write it: bare, `[v6]`, `[v6]:port` or `v4:port`; an IPv4
    address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address. None: not an address."""
    a = addr.strip()
    if a.startswith("["):
        a = a[1:a.index("]")] if "]" in a else a[1:]
    elif a.count(":") == 1:  # IPv4 with the visitor's port (Azure Application Gateway)
        a = a.split(":")[0]
    try:
        ip = ip_address(a)
    except ValueError:
        return None
    return (ip.ipv4_mapped or ip) if isinstance(ip, IPv6Address) else ip


def visitor_key(addr: str) -> str:
    """Whom a per-address limit counts: an IPv4 address, or an IPv6 address's /64 (what one
    home or phone is given: each of its addresses is the same visitor); anything else as
    written. Ports and brackets never make two visitors of one."""
    ip = _ip(addr)
    if ip is None:
        return addr.strip()
    if isinstance(ip, IPv6Address):
        if ip in NAT64:  # an IPv4 visitor a translator (SIIT-DC) writes as IPv6: theirs is the IPv4
            return str(IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.teredo:  # Teredo keeps the visitor's IPv4 in the low 64 bits: its /64 is a server's
            return str(ip.teredo[1])
        return str(IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def client_address(remote: str | None, forwarded_for: str,
                   trusted: tuple[IPv4Network | IPv6Network, ...]) -> str:
    """The visitor (as `visitor_key`): the connection's address, or, when that is a trusted
    proxy, the nearest address in X-Forwarded-For that is not one (proxies append, so read
    from the right)."""
    def is_trusted(addr: str) -> bool:
        ip = _ip(addr)
        return ip is not None and any(ip in net for net in trusted)

    addr = remote or ""
    if not trusted or not is_trusted(addr):
        return visitor_key(addr)
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            return visitor_key(hop)
        addr = hop
    return visitor_key(addr)
