"""Judging a sender's pacing by the slots its limiter granted, not by when requests arrived.

Arrival times at a fake platform follow the machine's scheduling: after an event-loop stall,
sends whose slots have already passed leave together, and a platform with a small burst
answers 429 although the sender paced correctly. The limiter's slots are what our code
decides, so the stories about pacing replay them into the platform's own token bucket.
"""

from __future__ import annotations

from bot.broadcasts.limiter import Limiter, Limits
from tests.fakes.ratelimited_platform import Bucket


class RecordingLimiter(Limiter):
    """A limiter that notes each slot it grants, as (workspace, time on its clock)."""

    def __init__(self, limits: dict[str, Limits],
                 slots: list[tuple[str, float]] | None = None) -> None:
        super().__init__(limits)
        self.slots: list[tuple[str, float]] = [] if slots is None else slots

    async def acquire(self, platform: str, workspace: str, conversation: str) -> float:
        at = await super().acquire(platform, workspace, conversation)
        self.slots.append((workspace, at))
        return at


def refusals(slots: list[float], rate: float, burst: float) -> int:
    """How many of these slots a platform allowing `rate` per second and a burst of `burst`
    would refuse."""
    bucket = Bucket(rate, burst)
    return sum(1 for at in sorted(slots) if bucket.take(at))


def rate(slots: list[float]) -> float:
    """The sustained rate of these slots, per second."""
    ordered = sorted(slots)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])
