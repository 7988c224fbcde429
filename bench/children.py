"""Sender processes for the benches that kill them (`broadcast.py`, `pulse_round.py`).

The conductor starts a sender process ahead of time (`Child.start`); the child connects, warms up
like a running replica, says "ready" and waits (`ready_then_go`) until the conductor tells it to
go. After a SIGKILL the pre-started standby is told to go at once, as another replica would take
over; the time from the kill to the next delivery is counted against us.

A child may note what it did and when (`Trace`, monotonic seconds, comparable across processes
on one machine), so the conductor can say where each takeover's time went.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A sender process, started ahead of time and told to go."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, script: str, args: list[str]) -> Child:
        """Run `script _sender ARGS` and wait until it says it is ready."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(script).resolve()), "_sender", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        assert line.strip() == b"ready", line
        return cls(proc)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def ready_then_go(normal_priority: bool = True) -> None:
    """In the child: say "ready", wait for "go", then (by default) ask for a normal share of
    the CPU.

    A standby replica would start on its own machine; here it shares two cores with the active
    sender, so it runs at low priority (`os.nice(10)` at its start) until it takes over."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if normal_priority:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except PermissionError:
            pass


class Trace:
    """What a child did and when: lines of `monotonic-seconds pid what` appended to a file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._seen: set[str] = set()

    def note(self, what: str, once: bool = False) -> None:
        if self.path is None or (once and what in self._seen):
            return
        self._seen.add(what)
        with open(self.path, "a") as f:
            f.write(f"{time.monotonic():.6f} {os.getpid()} {what}\n")


def read_trace(path: str) -> list[tuple[float, int, str]]:
    out = []
    with open(path) as f:
        for line in f:
            at, pid, what = line.rstrip("\n").split(" ", 2)
            out.append((float(at), int(pid), what))
    return out


def takeover_gaps(killed_at: list[float], sends: list[float]) -> list[float]:
    """For each kill, the seconds until the platform saw the next delivery (`sends` sorted)."""
    import bisect

    gaps = []
    for k in killed_at:
        i = bisect.bisect_right(sends, k)
        gaps.append(sends[i] - k if i < len(sends) else float("nan"))
    return gaps
