"""The server secret: seals reply routes and keys hashes. From the environment in production."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.db import Database

log = logging.getLogger("staffvoice.secrets")

LOCAL_KEY_FILE = ".staffvoice-secret"


async def load_secret(db: Database, configured: str) -> bytes:
    """32 bytes derived from STAFFVOICE_SECRET_KEY.

    Without it (a local demo) a random key is kept in a file beside the working directory,
    never in the database, so a database reader alone cannot open sealed routes.
    """
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    path = Path(os.environ.get("STAFFVOICE_SECRET_FILE", LOCAL_KEY_FILE))
    if path.exists():
        raw = path.read_text().strip()
    else:
        raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        path.write_text(raw + "\n")
        path.chmod(0o600)
        log.warning(
            "STAFFVOICE_SECRET_KEY is not set: generated a local key file for this demo. "
            "Set STAFFVOICE_SECRET_KEY in production."
        )
    return hashlib.sha256(raw.encode()).digest()


# What a reverse proxy or tunnel adds to a request it forwards: a request with none of them came
# straight from the connection's address. Not only the address headers: a proxy set up for the
# public origin often sends only X-Forwarded-Proto or -Host, HTTP says a proxy sends Via, and
# Cloudflare's tunnel and Akamai name the visitor their own way (nginx adds none by default).
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "Via", "X-Forwarded-Host",
                      "X-Forwarded-Proto", "X-Forwarded-Server", "X-Client-IP",
                      "CF-Connecting-IP", "True-Client-IP")


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def missing_key_problem(configured: str, host: str) -> str | None:
    """Why a server may not start without STAFFVOICE_SECRET_KEY on `host`, or None if it may.

    A key generated into a file beside the database ends up in the same backups as the data it
    protects; only a local demo (listening on loopback) may use one.
    """
    if configured or is_loopback(host):
        return None
    return (f"STAFFVOICE_SECRET_KEY is not set, and the server would listen on {host or 'every address'}. "
            "Set it to a long random value kept apart from the database and its backups, e.g. "
            "STAFFVOICE_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))'). "
            "Without it only a local demo on 127.0.0.1 may start.")


def keyed_hash(secret: bytes, *parts: str) -> str:
    """An HMAC of `parts`: stable for the server, meaningless without the key."""
    return hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


# -- sealing with a derived key ------------------------------------------------------------
# Pulse rounds keep a secret of their own, sealed under the server key and destroyed when the
# round closes; answers waiting for the close are sealed under that round secret.

NONCE = 12


class Unsealable(Exception):
    """The bytes cannot be opened with this key (destroyed, tampered with, or another key)."""


@functools.lru_cache(maxsize=256)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)  # one per key: an open round's answers all use the same


@functools.lru_cache(maxsize=256)
def derive(secret: bytes, label: str) -> bytes:
    """A 32-byte key for one purpose, derived from `secret` (never the secret itself)."""
    if len(secret) < 16:
        raise Unsealable("no key loaded")
    return hmac.new(secret, label.encode(), hashlib.sha256).digest()


def forget_derived() -> None:
    """Drop every derived key held in memory (a round's secret was destroyed)."""
    derive.cache_clear()
    _aead.cache_clear()


def seal_bytes(key: bytes, aad: str, plain: bytes) -> bytes:
    """AES-GCM: nonce || ciphertext, bound to `aad` (so a copy onto another row fails)."""
    nonce = secrets.token_bytes(NONCE)
    return nonce + _aead(key).encrypt(nonce, plain, aad.encode())


def open_bytes(key: bytes, aad: str, sealed: bytes | None) -> bytes:
    """Open what `seal_bytes` sealed; Unsealable if it cannot be."""
    if not sealed or len(sealed) <= NONCE:
        raise Unsealable("nothing sealed")
    try:
        return _aead(key).decrypt(sealed[:NONCE], sealed[NONCE:], aad.encode())
    except InvalidTag:
        raise Unsealable("cannot be opened with this key") from None
