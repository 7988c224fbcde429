"""Forms offered by button, kept in the database so any process can open them.

A DM message carries no trigger_id to open a modal with, and a slash command's, shortcut's or
button's trigger_id lives 3 seconds, so the bot offers an "Open the form" button (in the DM for
a typed word; in an ephemeral message or the Home tab for a trigger the core missed:
SlackPort.offer) whose value is a random token; the modal it opens is stored sealed under that
token until it expires. Any replica, a restarted server, or a second tap after cancelling opens it.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import delete

from adapters.slack.tables import SlackPendingForm
from storage.db import Database


class Seals(Protocol):
    async def seal(self, plain: str) -> str: ...

    async def open(self, sealed: str) -> str: ...


def expiry(now: datetime, ttl: timedelta) -> datetime:
    """When a form offered at `now` expires: the UTC midnight after `now + ttl`, the same for
    every form offered that day, so a row never says the second someone typed "feedback"
    (tests/anonymity/test_opening_trace.py)."""
    return datetime.combine((now + ttl).date() + timedelta(days=1), time(), tzinfo=UTC)


class PendingForms:
    """token -> modal view (Block Kit JSON), sealed at rest, for `ttl` and up to a day more
    (to the midnight after: `expiry`)."""

    def __init__(self, db: Database, sealer: Seals, ttl: timedelta = timedelta(days=1)) -> None:
        self.db = db
        self.sealer = sealer
        self.ttl = ttl

    async def keep(self, view: dict[str, Any]) -> str:
        """Store a modal; the token goes in the button's value."""
        now = datetime.now(UTC)
        token = secrets.token_urlsafe(16)
        sealed = await self.sealer.seal(json.dumps(view, separators=(",", ":")))
        async with self.db.session() as s:
            await s.execute(delete(SlackPendingForm).where(SlackPendingForm.expires_at < now))
            s.add(SlackPendingForm(token=token, view_sealed=sealed, expires_at=expiry(now, self.ttl)))
        return token

    async def find(self, token: str) -> dict[str, Any] | None:
        """The modal offered under `token`, until it expires (it may be opened again)."""
        if not token or len(token) > 32:
            return None
        async with self.db.session() as s:
            row = await s.get(SlackPendingForm, token)
            if row is None or row.expires_at < datetime.now(UTC):
                return None
            sealed = row.view_sealed
        try:
            view: dict[str, Any] = json.loads(await self.sealer.open(sealed))
        except Exception:  # another server key, or a damaged row: treat as expired
            return None
        return view
