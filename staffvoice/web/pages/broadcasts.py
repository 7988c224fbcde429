"""Broadcasts: each recent broadcast's delivery progress, and failures with their reasons
(bot/broadcasts/service.py). The change team's, as in chat.

Live while sending: the page's one script (static/live.js) follows `/app/broadcasts/live`, a
stream of Server-Sent Events with each sending broadcast's counts (numbers only, never who),
and updates the figures in place; the stream ends when nothing is sending. Without JavaScript
the page offers a reload link, and `?live=1` refreshes it every 10 seconds while something is
sending (the person chooses it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from bot.broadcasts import service as broadcasts
from bot.errors import UserError
from bot.roles import CHANGE_TEAM
from staffvoice.web.charts import bar
from staffvoice.web.dashboard import page
from staffvoice.web.site import CORE, CSP, render, secure

ROLES = frozenset({CHANGE_TEAM})
LIVE_S = 10
RECENT = 20
# The stream: how often it reads the counts, and how long one connection lasts (the browser
# reconnects by itself, and is signed in again, if something is still sending).
POLL_S = 1.0
STREAM_S = 300.0
SENDING = "sending"
# This page runs its one script, from this site only; the stream is same-origin too.
CSP_LIVE = f"{CSP}; script-src 'self'; connect-src 'self'"
STREAMS: set[asyncio.Event] = set()  # one per open stream, set to end it
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


@page("broadcasts live", "/broadcasts/live", "Live", ROLES, in_nav=False)
async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a `progress` event with a broadcast's figures whenever they change,
    for every recent broadcast that is sending (and once more when it finishes), then `done`
    when nothing is sending. Read-only."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "X-Accel-Buffering": "no"})
    secure(request, resp)
    await resp.prepare(request)
    stop = asyncio.Event()
    STREAMS.add(stop)
    try:
        await _follow(request, resp, stop)
        await resp.write_eof()
    except ConnectionError:
        pass  # the reader went away: nothing to finish
    except Exception:  # the page is already sent: end the stream, the browser tries again
        log.exception("broadcast progress stream failed")
    finally:
        STREAMS.discard(stop)
    return resp


async def _follow(request: web.Request, resp: web.StreamResponse, stop: asyncio.Event) -> None:
    core = request.app[CORE]
    await resp.write(b"retry: 5000\n\n")  # how long the browser waits before reconnecting
    shown: dict[str, dict[str, Any]] = {}
    watching: set[str] = set()
    until = time.monotonic() + STREAM_S
    while time.monotonic() < until and not stop.is_set():
        if request.transport is None or request.transport.is_closing():
            return
        recent = await broadcasts.recent(core, RECENT)
        now_sending = {b.id for b in recent if b.state == SENDING}
        for b in recent:  # those sending now, and those that were (their final figures)
            if b.id in now_sending or b.id in watching:
                f = figures(await broadcasts.status(core, b.id))
                if shown.get(b.id) != f:
                    shown[b.id] = f
                    await resp.write(_event("progress", f))
        watching = now_sending
        if not now_sending:
            await resp.write(_event("done", {}))
            return
        try:
            await asyncio.wait_for(stop.wait(), POLL_S)
        except TimeoutError:
            pass


async def stop_streams(app: web.Application) -> None:
    """At shutdown: end every open stream now, rather than keep the server waiting for them."""
    for stop in list(STREAMS):
        stop.set()


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
