"""Sign-in sessions: a sealed cookie naming a server-side session row.

The cookie holds a random id sealed with AES-GCM under a key derived from the server secret
(bot/secrets.py), so it can be neither read nor forged; the row is keyed by a keyed hash of
the id, so a database dump cannot be turned into a cookie. Sign-out deletes the row. A session
ends after `session_idle` without a request or `session_max` after sign-in, whichever first,
and at once when the person leaves the programme or loses every dashboard role.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people import service as people
from bot.people.tables import Person
from bot.secrets import Unsealable, derive, keyed_hash, open_bytes, seal_bytes
from staffvoice.web.site import CORE, SESSION, SETTINGS, Handler, Session, delete_cookie, set_cookie
from staffvoice.web.tables import WebSession

COOKIE = "sv_session"
LABEL = "web-session"
SEEN_EVERY = timedelta(minutes=1)  # how often a request refreshes the idle clock


def _key(request: web.Request) -> bytes:
    return derive(request.app[CORE].secret, LABEL)


def _seal(request: web.Request, raw: str) -> str:
    sealed = seal_bytes(_key(request), LABEL, json.dumps({"id": raw}).encode())
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def _unseal(request: web.Request, value: str) -> str | None:
    try:
        data = open_bytes(_key(request), LABEL, base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        raw = json.loads(data)["id"]
    except (Unsealable, ValueError, KeyError, TypeError):
        return None
    return raw if isinstance(raw, str) else None


def _row_id(request: web.Request, raw: str) -> str:
    return keyed_hash(request.app[CORE].secret, LABEL, raw)


async def start(request: web.Request, resp: web.StreamResponse, person_id: str, provider: str) -> None:
    """Sign `person_id` in: a new session row and its cookie on `resp` (a fresh id every
    sign-in, so a planted cookie never becomes someone's session). The session this browser
    had, if any, ends: its cookie is replaced, and a copy of it must not outlive it."""
    core = request.app[CORE]
    settings = request.app[SETTINGS]
    now = core.clock.now()
    raw = secrets.token_urlsafe(32)
    previous = request.get(SESSION)
    async with core.db.session() as s:
        if previous is not None:
            await s.execute(delete(WebSession).where(WebSession.id == previous.token_id))
        # Sessions past their absolute expiry go as others sign in (idle ones at their next use).
        await s.execute(delete(WebSession).where(WebSession.expires_at <= now))
        s.add(WebSession(id=_row_id(request, raw), person_id=person_id, provider=provider,
                         created_at=now, seen_at=now, expires_at=now + settings.session_max))
        await s.commit()
    set_cookie(resp, settings, COOKIE, _seal(request, raw))
    from staffvoice.web.site import ANON_COOKIE

    delete_cookie(resp, settings, ANON_COOKIE)


async def end(request: web.Request, resp: web.StreamResponse) -> None:
    """Sign out: the row is deleted (the cookie is worthless from now on) and the cookie cleared."""
    session = request.get(SESSION)
    core = request.app[CORE]
    if session is not None:
        async with core.db.session() as s:
            await s.execute(delete(WebSession).where(WebSession.id == session.token_id))
            await s.commit()
    delete_cookie(resp, request.app[SETTINGS], COOKIE)


async def _lookup(request: web.Request, row_id: str, touch: bool = True) -> Session | None:
    core = request.app[CORE]
    settings = request.app[SETTINGS]
    now = core.clock.now()
    async with core.db.session() as s:
        row = await s.get(WebSession, row_id)
        if row is None:
            return None
        if now >= row.expires_at or now - row.seen_at >= settings.session_idle:
            await s.execute(delete(WebSession).where(WebSession.id == row_id))
            await s.commit()
            return None
        person = await s.get(Person, row.person_id)
        if person is None or person.left_on is not None:
            return None
        roles = await people.roles_of(s, person.id)
        if touch and now - row.seen_at >= SEEN_EVERY:
            await s.execute(update(WebSession).where(WebSession.id == row_id).values(seen_at=now))
            await s.commit()
        return Session(row_id, person.id, person.display_name or person.email or "you",
                       person.email or "", person.team_id, roles, row.expires_at)


async def claim_stream_audit(s: AsyncSession, token_id: str, now: datetime,
                             every: timedelta) -> bool:
    """True for the one request, on any replica, that should record this session's viewing of
    a live stream now: none recorded it in the last `every`. A conditional update of the
    session's row, in the caller's transaction (the audit entry's: `trail.record(only_if=)`),
    so the claim and the entry commit together, and two replicas at once cannot both win
    (the second sees the first's value once its row lock is released)."""
    res = await s.execute(update(WebSession).where(
        WebSession.id == token_id,
        (WebSession.stream_audited_at.is_(None))
        | (WebSession.stream_audited_at <= now - every)).values(stream_audited_at=now))
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def recheck(request: web.Request, token_id: str) -> Session | None:
    """The session `token_id` as it stands now (None once signed out, expired or left), for a
    long response such as a live stream; the idle clock is not reset by it."""
    return await _lookup(request, token_id, touch=False)


@web.middleware
async def load_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`request[SESSION]`: the signed-in person, or None (a stale cookie is cleared)."""
    settings = request.app[SETTINGS]
    from staffvoice.web.site import cookie_name

    value = request.cookies.get(cookie_name(settings, COOKIE))
    request[SESSION] = None
    stale = False
    if value:
        raw = _unseal(request, value)
        session = await _lookup(request, _row_id(request, raw)) if raw else None
        request[SESSION] = session
        stale = session is None
    resp = await handler(request)
    if stale and not resp.prepared:
        delete_cookie(resp, settings, COOKIE)
    return resp


async def prune(core: object, now: datetime) -> int:
    """Delete expired sessions (the idle ones go at their next request or here)."""
    db = core.db  # type: ignore[attr-defined]
    async with db.session() as s:
        n = (await s.execute(delete(WebSession).where(WebSession.expires_at <= now))).rowcount
        await s.commit()
    return int(n or 0)


async def count_for(core: object, person_id: str) -> int:
    db = core.db  # type: ignore[attr-defined]
    async with db.session() as s:
        rows = await s.execute(select(WebSession.id).where(WebSession.person_id == person_id))
        return len(rows.all())
