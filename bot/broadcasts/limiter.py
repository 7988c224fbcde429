"""Pacing: stay within each platform's documented send limits, per workspace and conversation.

One `Limiter` per sender process. Each (platform, workspace) has its own budget, so a 429 from
one Slack workspace pauses only that workspace while the others keep going.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """Sustained rates for one platform; `burst` is how many sends may go back to back."""

    workspace_per_s: float
    conversation_per_s: float
    burst: float = 1.0
    max_in_flight: int = 16


# Slack: chat.postMessage about 1/s per channel, workspace cap "several hundred per minute".
# Teams: 7/s per conversation (1,800/h), about 30/s per app per tenant.
DEFAULTS: dict[str, Limits] = {
    "slack": Limits(workspace_per_s=5.0, conversation_per_s=1.0),
    "teams": Limits(workspace_per_s=30.0, conversation_per_s=7.0),
    # Local platforms (console, in-memory fake) have no limit worth pacing for.
    "console": Limits(workspace_per_s=1000.0, conversation_per_s=1000.0, burst=50.0),
    "fake": Limits(workspace_per_s=1000.0, conversation_per_s=1000.0, burst=50.0),
}
FALLBACK = Limits(workspace_per_s=20.0, conversation_per_s=5.0)


def parse_limits(spec: str) -> dict[str, Limits]:
    """'teams:workspace=30,conversation=7,burst=2;slack:workspace=5' -> limits by platform."""
    out = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        platform, _, rest = part.partition(":")
        base = out.get(platform.strip(), FALLBACK)
        values = {"workspace": base.workspace_per_s, "conversation": base.conversation_per_s,
                  "burst": base.burst, "in_flight": float(base.max_in_flight)}
        for kv in filter(None, (x.strip() for x in rest.split(","))):
            key, _, val = kv.partition("=")
            if key.strip() not in values:
                raise ValueError(f"unknown limit '{key.strip()}' in '{part}'")
            values[key.strip()] = float(val)
        out[platform.strip()] = Limits(values["workspace"], values["conversation"],
                                       values["burst"], int(values["in_flight"]))
    return out


@dataclass
class _Gate:
    """Generic cell rate algorithm: the earliest moment the next send may start."""

    interval: float
    tolerance: float
    next_free: float = 0.0

    def earliest(self, now: float) -> float:
        return max(now, self.next_free - self.tolerance)

    def take(self, at: float) -> None:
        self.next_free = max(self.next_free, at) + self.interval


@dataclass
class _Workspace:
    limits: Limits
    gate: _Gate
    paused_until: float = 0.0
    conversations: dict[str, _Gate] = field(default_factory=dict)


class Limiter:
    """`await acquire(platform, workspace, conversation)` returns when a send may start."""

    def __init__(
        self,
        limits: dict[str, Limits] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or dict(DEFAULTS)
        self.clock = clock
        self.sleep = sleep
        self._ws: dict[tuple[str, str], _Workspace] = {}

    def limits_for(self, platform: str) -> Limits:
        return self.limits.get(platform, FALLBACK)

    def _workspace(self, platform: str, workspace: str) -> _Workspace:
        key = (platform, workspace)
        ws = self._ws.get(key)
        if ws is None:
            lim = self.limits_for(platform)
            interval = 1.0 / lim.workspace_per_s
            ws = _Workspace(lim, _Gate(interval, interval * (lim.burst - 1)))
            self._ws[key] = ws
        return ws

    async def acquire(self, platform: str, workspace: str, conversation: str) -> float:
        """Wait for a slot in the workspace's and the conversation's budget, take it, and
        return the slot's time on `clock` (tests judge the pacing by it, not by arrivals)."""
        ws = self._workspace(platform, workspace)
        while True:
            now = self.clock()
            conv = ws.conversations.get(conversation)
            if conv is None:
                iv = 1.0 / ws.limits.conversation_per_s
                conv = ws.conversations[conversation] = _Gate(iv, iv * (ws.limits.burst - 1))
            at = max(ws.gate.earliest(now), conv.earliest(now), ws.paused_until)
            ws.gate.take(at)
            conv.take(at)
            if at > now:
                await self.sleep(at - now)
            # A 429 may have paused the workspace while we slept: then queue again.
            if ws.paused_until <= self.clock():
                self._prune(ws)
                return at

    def pause(self, platform: str, workspace: str, seconds: float) -> None:
        """The platform said 429: nothing more to this workspace for `seconds`."""
        ws = self._workspace(platform, workspace)
        until = self.clock() + max(0.0, seconds)
        ws.paused_until = max(ws.paused_until, until)
        # Restart pacing after the pause rather than bursting the backlog.
        ws.gate.next_free = max(ws.gate.next_free, ws.paused_until)

    def pause_all(self, seconds: float) -> None:
        """Company Communicator's policy (for comparison only): any 429 stops every workspace."""
        for platform, workspace in list(self._ws):
            self.pause(platform, workspace, seconds)

    def paused_for(self, platform: str, workspace: str) -> float:
        ws = self._ws.get((platform, workspace))
        return max(0.0, ws.paused_until - self.clock()) if ws else 0.0

    def _prune(self, ws: _Workspace) -> None:
        # DMs are one conversation each: forget gates long idle so memory stays flat.
        if len(ws.conversations) > 1000:
            cutoff = self.clock() - 5.0
            for k in [k for k, g in ws.conversations.items() if g.next_free < cutoff]:
                del ws.conversations[k]
