"""A per-method call budget shared by the directory fakes: over it, HTTP 429 with Retry-After."""

from __future__ import annotations

import math
import time
from collections import deque


class Budget:
    """At most `calls` requests per `window_s` seconds for each key (a method, an app)."""

    def __init__(self, calls: int, window_s: float) -> None:
        self.calls, self.window_s = calls, window_s
        self.seen: dict[str, deque[float]] = {}
        self.refused = 0

    def retry_after(self, key: str) -> int | None:
        """None when the call may go ahead (and is counted); else seconds to wait (>= 1)."""
        now = time.monotonic()
        q = self.seen.setdefault(key, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if len(q) >= self.calls:
            self.refused += 1
            return max(1, math.ceil(self.window_s - (now - q[0])))
        q.append(now)
        return None
