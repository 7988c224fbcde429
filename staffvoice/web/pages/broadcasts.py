"""Broadcasts: each recent broadcast's delivery progress, and failures with their reasons
(bot/broadcasts/service.py). The change team's, as in chat.

Live while sending: the page's one script (static/live.js) follows `/app/broadcasts/live`, a
stream of Server-Sent Events with each sending broadcast's counts (numbers only, never who),
and updates the figures in place; the stream ends when nothing is sending. One reader per
process feeds every open stream (staffvoice/web/feed.py), streams are capped per process and
per session, and each checks now and then that its viewer may still see it. Without JavaScript
the page offers a reload link, and `?live=1` refreshes it every 10 seconds while something is
sending (the person chooses it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import service as broadcasts
from bot.core import Core
from bot.errors import UserError
from bot.roles import CHANGE_TEAM
from staffvoice.web import sessions
from staffvoice.web.charts import bar
from staffvoice.web.dashboard import page
from staffvoice.web.feed import Feed, Full, Subscription
from staffvoice.web.site import CORE, CSP, SESSION, Session, render, secure
from staffvoice.web.views import viewed

ROLES = frozenset({CHANGE_TEAM})
LIVE_S = 10
RECENT = 20
# The stream: how often the process reads the counts (once for every open stream), how long one
# connection lasts (the browser reconnects by itself, and is signed in again, if something is
# still sending), and how often an open stream checks its viewer is still signed in and allowed.
POLL_S = 1.0
STREAM_S = 300.0
CHECK_S = 15.0
# At most this many open streams per process and per sign-in session; beyond, 503 or 429 and
# "try again in RETRY_S seconds". The trail records a session's viewing once per AUDIT_EVERY.
MAX_STREAMS = 200
MAX_PER_SESSION = 4
RETRY_S = 30
AUDIT_EVERY = timedelta(hours=1)
SENDING = "sending"
ID = re.compile(r"[0-9A-Za-z_-]{1,32}")  # a broadcast id (storage.base.new_id), as asked for
# This page runs its one script, from this site only; the stream is same-origin too.
CSP_LIVE = f"{CSP}; script-src 'self'; connect-src 'self'"
log = logging.getLogger("staffvoice.web")


def figures(st: broadcasts.Status) -> dict[str, Any]:
    """A broadcast's delivery counts as the page and the stream show them: numbers only."""
    c = st.counts
    return {"id": st.broadcast.id, "state": st.broadcast.state, "settled": st.settled,
            "total": st.total, "percent": round(100 * st.settled / st.total) if st.total else 100,
            "sent": c["sent"], "queued": c["queued"] - st.waiting, "waiting": st.waiting,
            "sending": c["sending"], "retrying": c["failed"], "failed": c["final_failed"],
            "skipped": c["skipped"], "celebrations": st.celebrations}


@page("broadcasts", "/broadcasts", "Broadcasts", ROLES)
async def listing(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(await broadcasts.recent(core, RECENT)):
        st = await broadcasts.status(core, b.id)
        rows.append({"st": st, "f": figures(st), "bar": bar(st.settled, st.total, f"progress-{i}",
                                                          f"Delivery progress of {b.title}")})
    sending = any(r["st"].broadcast.state in ("sending", "scheduled") for r in rows)
    live = request.query.get("live") == "1" and sending
    streaming = any(r["st"].broadcast.state == SENDING for r in rows)
    resp = render(request, "broadcasts.html", title="Broadcasts", rows=rows, live=live,
                  live_s=LIVE_S, sending=sending, streaming=streaming)
    resp.headers["Content-Security-Policy"] = CSP_LIVE
    return resp


@dataclass(frozen=True)
class Reading:
    """One read of the progress, shared by every open stream."""

    sending: dict[str, dict[str, Any]]  # the figures of each recent broadcast sending now
    final: dict[str, dict[str, Any]]  # the last figures of recent ones that stopped while followed


class Progress:
    """What the process's one poller reads (staffvoice/web/feed.py)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.final: dict[str, dict[str, Any]] = {}
        self.watching: set[str] = set()

    async def read(self) -> Reading:
        recent = await broadcasts.recent(self.core, RECENT)
        sending: dict[str, dict[str, Any]] = {}
        for b in recent:  # those sending now, and those that were (their final figures)
            if b.state == SENDING or b.id in self.watching:
                f = figures(await broadcasts.status(self.core, b.id))
                if b.state == SENDING:
                    sending[b.id] = f
                else:
                    self.final[b.id] = f
        ids = {b.id for b in recent}
        self.final = {k: v for k, v in self.final.items() if k in ids}
        self.watching = set(sending)
        return Reading(sending, dict(self.final))


FEED = web.AppKey("broadcast_feed", Feed[Reading])


def setup(app: web.Application) -> None:
    """The process's one progress feed, ended at shutdown."""
    app[FEED] = Feed(Progress(app[CORE]).read, POLL_S)

    async def close(app: web.Application) -> None:
        app[FEED].close()

    app.on_shutdown.append(close)


@page("broadcasts live", "/broadcasts/live", "Live", ROLES, in_nav=False, audit=False)
async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a `progress` event with a broadcast's figures whenever they change,
    for every recent broadcast that is sending (and once more when it finishes; at the start,
    the final figures of those the page asks about with `?follow=` that finished), then `done`
    when nothing is sending, or `stopped` when the viewer signed out or lost the role. Read-only.
    Too many open streams: 503 (this process) or 429 (this session), with Retry-After, which
    the page's script waits (at most two minutes) before it tries again by itself."""
    session = request[SESSION]
    assert session is not None  # the guard let only the change team in
    asked = _asked(request)
    try:
        sub = request.app[FEED].subscribe(session.token_id, limit=MAX_STREAMS,
                                          per_session=MAX_PER_SESSION)
    except Full as e:
        return web.Response(status=e.status, text=e.message, headers={"Retry-After": str(RETRY_S)})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "X-Accel-Buffering": "no"})
    try:
        await _audit_once(request, session)
        secure(request, resp)
        await resp.prepare(request)
        await _follow(request, resp, sub, session, asked)
        request.app[FEED].unsubscribe(sub)  # room for the next stream before this one's end is read
        await resp.write_eof()
    except ConnectionError:
        pass  # the reader went away: nothing to finish
    except Exception:
        if not resp.prepared:
            raise
        log.exception("broadcast progress stream failed")  # already sent: the browser tries again
    finally:
        request.app[FEED].unsubscribe(sub)
    return resp


async def _audit_once(request: web.Request, session: Session) -> None:
    """The trail records a session's viewing of the stream once per AUDIT_EVERY, not each of
    the browser's reconnects, whichever replica serves them (claimed on the session's row, in
    the entry's transaction: a process killed on the way leaves neither)."""
    now = request.app[CORE].clock.now()

    async def claim(s: AsyncSession) -> bool:
        return await sessions.claim_stream_audit(s, session.token_id, now, AUDIT_EVERY)

    await viewed(request, "broadcasts live", only_if=claim)


def _asked(request: web.Request) -> set[str]:
    """The broadcasts the page still shows as sending (`?follow=id,id`): a new stream sends
    the final figures of those that finished while no stream was open. Anything that is not
    a broadcast id is ignored; at most RECENT are asked about."""
    ids = request.query.get("follow", "").split(",")
    return {i for i in ids if ID.fullmatch(i)} if len(ids) <= RECENT else set()


async def _finished(core: Core, asked: set[str], reading: Reading) -> list[dict[str, Any]]:
    """The final figures of the recent broadcasts in `asked` that are not sending now."""
    if not asked - reading.sending.keys():
        return []
    out = []
    for b in await broadcasts.recent(core, RECENT):
        if b.id in asked and b.id not in reading.sending and b.state != SENDING:
            out.append(reading.final.get(b.id) or figures(await broadcasts.status(core, b.id)))
    return out


async def _follow(request: web.Request, resp: web.StreamResponse, sub: Subscription[Reading],
                  session: Session, asked: set[str]) -> None:
    await resp.write(b"retry: 5000\n\n")  # how long the browser waits before reconnecting
    shown: dict[str, dict[str, Any]] = {}
    now = time.monotonic()
    until, check_at = now + STREAM_S, now + CHECK_S
    while now < until and not sub.closed:
        if request.transport is None or request.transport.is_closing():
            return
        if now >= check_at:
            if not await _still_allowed(request, session):
                await resp.write(_event("stopped", {}))
                return
            check_at = now + CHECK_S
        reading = await sub.next(min(until, check_at) - now)
        now = time.monotonic()
        if reading is None:
            continue
        if asked:  # once, at the first reading: what finished while the page had no stream
            for f in await _finished(request.app[CORE], asked, reading):
                shown[f["id"]] = f
                await resp.write(_event("progress", f))
            asked = set()
        for bid, f in reading.sending.items():
            if shown.get(bid) != f:
                shown[bid] = f
                await resp.write(_event("progress", f))
        for bid, f in reading.final.items():  # one this stream showed has finished
            if bid in shown and shown[bid] != f:
                shown[bid] = f
                await resp.write(_event("progress", f))
        if not reading.sending:
            await resp.write(_event("done", {}))
            return


async def _still_allowed(request: web.Request, session: Session) -> bool:
    """The viewer is still signed in and still in the change team (checked every CHECK_S)."""
    now = await sessions.recheck(request, session.token_id)
    return now is not None and bool(ROLES & now.roles)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@page("broadcast failures", "/broadcasts/{broadcast_id}/failures.csv", "Failures", ROLES, in_nav=False)
async def failures(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    bid = request.match_info["broadcast_id"]
    try:
        await broadcasts.status(core, bid)
    except UserError:
        raise web.HTTPNotFound() from None
    return web.Response(text=await broadcasts.failures_csv(core, bid), content_type="text/csv",
                        charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="broadcast-{bid}-failures.csv"'})
