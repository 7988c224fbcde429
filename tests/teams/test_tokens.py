"""The bot's own token for the Bot Connector: asked for once while it lasts, not on every turn
(the SDK's MsalAuth answers each ask on a worker thread), and never while a transaction begun
ahead of the turn is open (asking may go to Entra over the network)."""

from __future__ import annotations

import jwt

from adapters.teams.connector import TOKEN_MARGIN_S, ConnectorPool, token_expiry
from storage.db import OPENED, Database

ENDS = 1_800_000_000.0


class Entra:
    """Hands out tokens as MSAL does (a JWT with its `exp`), counting the asks."""

    def __init__(self, ends: float | None = ENDS) -> None:
        self.ends = ends
        self.asked = 0

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        self.asked += 1
        if self.ends is None:
            return f"opaque-{self.asked}"
        return jwt.encode({"aud": "https://api.botframework.com", "exp": int(self.ends),
                           "n": self.asked}, "not-a-real-key-but-long-enough-32b", algorithm="HS256")


async def test_the_token_is_asked_for_once_while_it_lasts() -> None:
    entra = Entra()
    pool = ConnectorPool(entra)
    now = [ENDS - 3600]
    pool.wall = lambda: now[0]
    first = await pool.token()
    assert token_expiry(first) == ENDS
    assert [await pool.token() for _ in range(5)] == [first] * 5 and entra.asked == 1
    now[0] = ENDS - TOKEN_MARGIN_S  # near its end: a new one
    second = await pool.token()
    assert second != first and entra.asked == 2
    await pool.token(refresh=True)  # after a 401: always asked
    assert entra.asked == 3
    other = Entra()
    pool.tokens = other  # new credentials: their own token
    await pool.token()
    assert other.asked == 1
    opaque = Entra(ends=None)  # a token that says no end is asked for every time
    pool.tokens = opaque
    await pool.token()
    await pool.token()
    assert opaque.asked == 2


async def test_asking_for_a_token_gives_back_a_transaction_begun_ahead(db: Database) -> None:
    entra = Entra()
    pool = ConnectorPool(entra)
    pool.wall = lambda: ENDS - 3600
    await pool.token()
    ahead = await db.begin_ahead()
    token = OPENED.set(ahead)
    try:
        await pool.token()  # kept: nothing waits, the transaction stays for the admission
        assert ahead.conn is not None and entra.asked == 1
        await pool.token(refresh=True)  # asks Entra: given back first
        assert ahead.conn is None and entra.asked == 2
    finally:
        OPENED.reset(token)
        await ahead.release()
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
