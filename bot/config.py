"""Settings from environment variables. Secrets are read here and never logged."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from storage.db import DEFAULT_URL

N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used; `str()` says which and why."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    # Server key for sealing reply routes and keyed hashes. Empty = generated per database.
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 3978
    reuse_port: bool = False  # share the port with other `serve` processes (SO_REUSEPORT)
    programme_file: str = ""
    log_level: str = "INFO"
    log_json: bool | None = None
    scheduler_interval_s: float = 30.0
    # Seconds between writes of the feedback daily counts a process holds (bot/feedback/counts.py).
    feedback_flush_s: float = 5.0
    sender_enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (the process environment by default); `SettingsError` names a
        variable whose value cannot be used."""
        e = os.environ if env is None else env
        json_env = e.get("STAFFVOICE_LOG_JSON")
        return cls(
            database_url=e.get("STAFFVOICE_DATABASE_URL", DEFAULT_URL),
            secret_key=e.get("STAFFVOICE_SECRET_KEY", ""),
            host=e.get("STAFFVOICE_HOST", "127.0.0.1"),
            port=_number(e, "STAFFVOICE_PORT", "3978", int, 0, 65535),
            reuse_port=e.get("STAFFVOICE_REUSE_PORT", "").strip().lower() in ("1", "true", "yes"),
            programme_file=e.get("STAFFVOICE_PROGRAMME", ""),
            log_level=e.get("STAFFVOICE_LOG_LEVEL", "INFO"),
            log_json=None if json_env is None else json_env.lower() in ("1", "true", "yes"),
            scheduler_interval_s=_number(e, "STAFFVOICE_SCHEDULER_INTERVAL", "30", float, 0.01, 86400),
            feedback_flush_s=_number(e, "STAFFVOICE_FEEDBACK_FLUSH_INTERVAL", "5", float, 0.01, 3600),
        )


def _number(env: Mapping[str, str], name: str, default: str, kind: Callable[[str], N],
            low: float, high: float) -> N:
    raw = env.get(name, default).strip()
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name} must be {what}, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g}, not {raw}")
    return value
