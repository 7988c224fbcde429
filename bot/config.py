"""Settings from environment variables. Secrets are read here and never logged."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from storage.db import DEFAULT_URL


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    # Server key for sealing reply routes and keyed hashes. Empty = generated per database.
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 3978
    programme_file: str = ""
    log_level: str = "INFO"
    log_json: bool | None = None
    scheduler_interval_s: float = 30.0
    sender_enabled: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        json_env = e.get("STAFFVOICE_LOG_JSON")
        return cls(
            database_url=e.get("STAFFVOICE_DATABASE_URL", DEFAULT_URL),
            secret_key=e.get("STAFFVOICE_SECRET_KEY", ""),
            host=e.get("STAFFVOICE_HOST", "127.0.0.1"),
            port=int(e.get("STAFFVOICE_PORT", "3978")),
            programme_file=e.get("STAFFVOICE_PROGRAMME", ""),
            log_level=e.get("STAFFVOICE_LOG_LEVEL", "INFO"),
            log_json=None if json_env is None else json_env.lower() in ("1", "true", "yes"),
            scheduler_interval_s=float(e.get("STAFFVOICE_SCHEDULER_INTERVAL", "30")),
        )
