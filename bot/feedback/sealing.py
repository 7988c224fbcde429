"""Sealed reply routes: the way back to an author, encrypted with a key derived from the server key.

A database reader sees random bytes; without STAFFVOICE_SECRET_KEY nobody can open them. The
handle's id is bound in as associated data, so a sealed route copied onto another row fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_LABEL = b"staffvoice feedback reply route v1"
NONCE = 12


class RouteUnavailable(Exception):
    """The route cannot be opened (revoked, destroyed, or sealed under another key)."""


@dataclass(frozen=True)
class Route:
    """Who to DM (a person id) and the token their buttons carry."""

    person_id: str
    token: str


def _key(secret: bytes) -> bytes:
    if len(secret) < 16:
        raise RouteUnavailable("no server key loaded")
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def seal(secret: bytes, handle_id: str, route: Route) -> bytes:
    """Encrypt a route for the handle `handle_id`: nonce || ciphertext."""
    nonce = os.urandom(NONCE)
    plain = json.dumps({"p": route.person_id, "t": route.token}).encode()
    return nonce + AESGCM(_key(secret)).encrypt(nonce, plain, handle_id.encode())


def open_sealed(secret: bytes, handle_id: str, sealed: bytes | None) -> Route:
    """Decrypt a route; RouteUnavailable if it was destroyed or does not belong here."""
    if not sealed or len(sealed) <= NONCE or not any(sealed):
        raise RouteUnavailable("the reply route was destroyed")
    try:
        plain = AESGCM(_key(secret)).decrypt(sealed[:NONCE], sealed[NONCE:], handle_id.encode())
    except InvalidTag:
        raise RouteUnavailable("the reply route cannot be opened with this key") from None
    data = json.loads(plain)
    return Route(person_id=str(data["p"]), token=str(data["t"]))
