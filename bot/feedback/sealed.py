"""A day's counts kept as one sealed blob of a fixed size class (docs/invariants.md N40).

The daily counters (bot/feedback/counts.py) and the waiting senders' marks
(bot/feedback/senders.py) each keep a whole day's (a whole listing's) state in ONE row: the
keyed hashes and their counts, sorted, padded to a size class and sealed under a key derived
from the server key. A database dump without that key shows one row of one length whoever sent
and however many each: before, one row per sender with their count said how many people sent
the day's items and how many each (two items and one row that says 2: one author).

The size class is at least `FLOOR` entries and doubles beyond, so the blob's length says
nothing on any ordinary day (fewer than `FLOOR` senders) and only the power of two above that.
Each write seals afresh (a random nonce) and carries a new random `stamp`, which lets a process
keep the opened state until the row changes (`stamp` names nothing: no count of writes).
"""

from __future__ import annotations

import secrets
import struct

from bot.secrets import Unsealable, derive, open_bytes, seal_bytes

LABEL = "staffvoice sealed counts v1"
FLOOR = 512  # entries: a blob never says fewer senders than this
_KEY = 32  # bytes of a keyed hash (keyed_hash's 64 hex digits)
_ENTRY = struct.Struct(f"!{_KEY}sI")
_HEAD = struct.Struct("!I")


def capacity(n: int) -> int:
    """The entries a blob of `n` real ones is padded to."""
    c = FLOOR
    while c < n:
        c *= 2
    return c


def pack(counts: dict[str, int]) -> bytes:
    """`counts` (keyed hashes in hex, counts) sorted by key and zero-padded to its size class."""
    keys = sorted(counts)
    return b"".join([_HEAD.pack(len(keys)),
                     *(_ENTRY.pack(bytes.fromhex(k), counts[k]) for k in keys),
                     bytes(_ENTRY.size * (capacity(len(keys)) - len(keys)))])


def unpack(plain: bytes) -> dict[str, int]:
    """What `pack` packed; ValueError if it is not that."""
    if len(plain) < _HEAD.size:
        raise ValueError("too short")
    (n,) = _HEAD.unpack_from(plain)
    if len(plain) < _HEAD.size + n * _ENTRY.size:
        raise ValueError("truncated")
    return {k.hex(): c for k, c in _ENTRY.iter_unpack(
        plain[_HEAD.size: _HEAD.size + n * _ENTRY.size])}


def seal(secret: bytes, aad: str, counts: dict[str, int]) -> bytes:
    """`counts` sealed under the server-derived key, bound to `aad` (the row it belongs to)."""
    return seal_bytes(derive(secret, LABEL), aad, pack(counts))


def open_counts(secret: bytes, aad: str, sealed: bytes) -> dict[str, int]:
    """What `seal` sealed; Unsealable if it cannot be opened (another key, damaged, moved)."""
    try:
        return unpack(open_bytes(derive(secret, LABEL), aad, sealed))
    except ValueError as e:
        raise Unsealable(f"opened but not counts: {e}") from None


def stamp() -> str:
    """A new random version mark for a row just written."""
    return secrets.token_hex(8)
