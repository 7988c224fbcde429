"""A fake chat platform API that enforces rate limits the way Slack and Teams do.

A real aiohttp server on an ephemeral port. Per workspace and per conversation token buckets;
over the limit it answers HTTP 429 with `Retry-After` (fractional seconds, so a time-scaled run
works). It can also fail with 5xx, answer 403 "user blocked", inject extra 429s (another app
using the tenant's budget), and it records every delivery so a test can count duplicates.
It does NOT deduplicate by idempotency key: a key sent twice is delivered twice, and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Bucket:
    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0 if a token was taken, else seconds until one is available."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class Delivery:
    key: str
    workspace: str
    conversation: str
    message_id: str
    text: str
    at: float
    deleted: bool = False


@dataclass
class PlatformConfig:
    workspace_rate: float = 30.0
    conversation_rate: float = 7.0
    burst: float = 3.0
    # Probabilities per send request.
    fail_5xx: float = 0.0
    extra_429: float = 0.0
    extra_429_retry_after: float = 1.0
    latency_s: float = 0.0
    seed: int = 7


@dataclass
class RateLimitedPlatform:
    """The server's state; `start()` returns its base URL."""

    config: PlatformConfig = field(default_factory=PlatformConfig)
    blocked: set[str] = field(default_factory=set)  # user ids (and their DM conversation ids)
    deliveries: list[Delivery] = field(default_factory=list)
    rejected_429: int = 0
    rejected_keyed_429: int = 0  # 429s answered to broadcast sends (they carry a key)
    # When each 429 was answered (monotonic) and whether it was injected (not over the limit).
    rejections: list[tuple[float, bool]] = field(default_factory=list)
    failed_5xx: int = 0
    requests: int = 0
    fail_next: int = 0  # the next N sends answer 503 (a deterministic outage for tests)
    # Once this many keyed deliveries are in, further sends wait (in flight) until `release()`:
    # a deterministic moment to kill a sender with requests outstanding.
    hold_after: int | None = None
    held: int = 0

    def __post_init__(self) -> None:
        self._ws: dict[str, Bucket] = {}
        self._conv: dict[tuple[str, str], Bucket] = {}
        self._ids = itertools.count(1)
        self._by_key: dict[tuple[str, str], Delivery] = {}
        self._by_id: dict[str, Delivery] = {}
        self._rng = random.Random(self.config.seed)
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()
        self.url = ""

    def release(self) -> None:
        self.hold_after = None
        self._released.set()

    # -- what tests read -----------------------------------------------------------------

    def keyed(self) -> list[Delivery]:
        """Deliveries sent with an idempotency key (broadcast rows, not ordinary replies)."""
        return [d for d in self.deliveries if not d.key.startswith("nokey-")]

    def live(self) -> list[Delivery]:
        """Keyed deliveries not deleted."""
        return [d for d in self.keyed() if not d.deleted]

    def duplicates(self) -> int:
        counts = Counter(d.key for d in self.keyed())
        return sum(n - 1 for n in counts.values() if n > 1)

    def keys(self) -> set[str]:
        return {d.key for d in self.keyed()}

    # -- server ----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/send", self._send)
        app.router.add_post("/find", self._find)
        app.router.add_post("/update", self._update)
        app.router.add_post("/delete", self._delete)
        app.router.add_post("/open_dm", self._open_dm)
        app.router.add_post("/lookup", self._lookup)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _limit(self, workspace: str, conversation: str) -> float:
        c = self.config
        now = time.monotonic()
        ws = self._ws.setdefault(workspace, Bucket(c.workspace_rate, c.burst))
        conv = self._conv.setdefault((workspace, conversation), Bucket(c.conversation_rate, c.burst))
        wait = ws.take(now)
        if wait:
            return wait
        wait = conv.take(now)
        if wait:
            ws.tokens += 1.0  # refused requests do not use the workspace's budget
        return wait

    async def _send(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.requests += 1
        if self.hold_after is not None and len(self.keyed()) >= self.hold_after:
            self.held += 1
            await self._released.wait()
        if self.config.latency_s:
            import asyncio

            await asyncio.sleep(self.config.latency_s)
        ws, conv = body["workspace"], body["conversation"]
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed_5xx += 1
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        wait = self._limit(ws, conv)
        if wait:
            self.rejected_429 += 1
            self.rejected_keyed_429 += bool(body.get("key"))
            self.rejections.append((time.monotonic(), False))
            return _too_many(wait)
        roll = self._rng.random()
        if roll < self.config.extra_429:
            self.rejected_429 += 1
            self.rejections.append((time.monotonic(), True))
            return _too_many(self.config.extra_429_retry_after)
        if roll < self.config.extra_429 + self.config.fail_5xx:
            self.failed_5xx += 1
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if conv in self.blocked or conv.removeprefix("D-") in self.blocked:
            return web.json_response({"ok": False, "error": "user_blocked"}, status=403)
        d = Delivery(body.get("key") or f"nokey-{next(self._ids)}", ws, conv,
                     f"M{next(self._ids)}", body.get("text", ""), time.monotonic())
        self.deliveries.append(d)
        self._by_key[(conv, d.key)] = d
        self._by_id[d.message_id] = d
        return web.json_response({"ok": True, "message_id": d.message_id})

    async def _find(self, request: web.Request) -> web.Response:
        body = await request.json()
        d = self._by_key.get((body["conversation"], body["key"]))
        if d is None:
            return web.json_response({"ok": False, "error": "not_found"}, status=404)
        return web.json_response({"ok": True, "message_id": d.message_id})

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        d = self._by_id.get(body["message_id"])
        if d is None or d.deleted:
            return web.json_response({"ok": False, "error": "message_not_found"}, status=404)
        d.text = body.get("text", d.text)
        return web.json_response({"ok": True})

    async def _delete(self, request: web.Request) -> web.Response:
        body = await request.json()
        wait = self._limit(body["workspace"], body["conversation"])
        if wait:
            self.rejected_429 += 1
            return _too_many(wait)
        d = self._by_id.get(body["message_id"])
        if d is None or d.deleted:
            return web.json_response({"ok": False, "error": "message_not_found"}, status=404)
        d.deleted = True
        return web.json_response({"ok": True})

    async def _open_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["user_id"] in self.blocked:
            return web.json_response({"ok": False, "error": "user_blocked"}, status=403)
        return web.json_response({"ok": True, "conversation": f"D-{body['user_id']}"})

    async def _lookup(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": True, "user_id": f"U-{body['email']}"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "delivered": len(self.keys()), "deliveries": len(self.deliveries),
            "duplicates": self.duplicates(), "rejected_429": self.rejected_429,
            "failed_5xx": self.failed_5xx, "requests": self.requests,
            "first": self.deliveries[0].at if self.deliveries else None,
            "last": self.deliveries[-1].at if self.deliveries else None,
        })


def _too_many(wait: float) -> web.Response:
    return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                             headers={"Retry-After": f"{wait:.3f}"})
