"""What holds a server's event loop still, measured inside it (`bench/load.py --stalls`).

Three records, written as JSON lines to a file with `time.monotonic()` stamps (one clock for
every process on the machine, so the conductor can cut them into its phases):

- `late`: a heartbeat timer asks to wake every `EVERY` seconds; how late it woke is how long
  the loop could not run anything new (one long callback, or a turn with many callbacks:
  the queue). Only lateness of at least `LATE_MIN` is written; the number of beats is counted.
- `gc`: each collection of the cyclic garbage collector (generation, pause, objects collected),
  from `gc.callbacks`. The collector holds the whole process still while it runs.
- `req`: one HTTP request, timed in the loop thread's CPU from the arrival of its first bytes
  (aiohttp's `data_received`) to its handler's start (`wait`: the loop work it queued behind)
  and to its answer being ready (`answer`: its own work and all that ran meanwhile). CPU, not
  wall clock: another process on the machine adds nothing to either, so main and a branch
  can be compared on a busy machine; how the loop orders its work shows directly.
- `slow`: one loop callback (a task's step, a timer, an I/O callback) that ran for at least
  `SLOW` seconds, with the collector's time inside it, the task it belongs to and a stack
  sampled by a watchdog thread while it was still running (what was actually on the CPU).

Pauses and callbacks are timed twice: wall clock, and the loop thread's own CPU time, which
other processes on a busy machine do not inflate (a callback preempted for 20 ms is 20 ms
late, but used no more CPU). Heartbeat lateness is wall clock only. Instrumentation, not
production code: each callback pays four clock reads more.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

EVERY = 0.005  # heartbeat period, seconds
LATE_MIN = 0.002  # lateness written from this much on
# A callback this long is written (LOAD_SLOW_MS: lower on a fast machine, where few steps
# reach 5 ms of CPU but a queue of 2-4 ms ones still makes the p99).
SLOW = float(os.environ.get("LOAD_SLOW_MS", "5")) / 1000
SAMPLE_AFTER = SLOW * 0.8  # the watchdog samples the stack of a callback running this long
# Steps counted by task when they use this much CPU or more (`steps`: the longest steps).
STEP_BINS_MS = (1.0, 2.0, 4.0)
ROOT = str(Path(__file__).resolve().parent.parent) + os.sep


class Probe:
    def __init__(self, path: str) -> None:
        self.out: TextIO = open(path, "w", buffering=1 << 16)  # noqa: SIM115 - lives with the process
        self.gc_s = 0.0  # collector time so far
        self._gc_start = (0.0, 0.0)
        self._gc_objects = 0
        self.current: tuple[float, Any] | None = None  # (start, handle) of the running callback
        self.stacks: dict[int, str] = {}  # id(handle) -> stack sampled while it ran
        self.beats = 0
        self.bg_cpu = 0.0  # loop CPU so far in steps of background tasks (`background`)
        # what -> [steps of >= each of STEP_BINS_MS, CPU ms in those of >= the first, most]
        self.steps: dict[str, list[float]] = {}
        self.loop_thread = threading.get_ident()

    def write(self, **record: Any) -> None:
        self.out.write(json.dumps(record) + "\n")

    # -- the collector ----------------------------------------------------------------------

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":  # the objects this collection walks (before its clock starts)
            self._gc_objects = sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1))
            self._gc_start = (time.perf_counter(), time.thread_time())
            return
        now = (time.perf_counter(), time.thread_time())
        pause = now[0] - self._gc_start[0]
        self.gc_s += pause
        self.write(k="gc", t=time.monotonic(), gen=info["generation"], ms=round(pause * 1000, 3),
                   cpu_ms=round((now[1] - self._gc_start[1]) * 1000, 3), collected=info["collected"],
                   objects=self._gc_objects)

    # -- callbacks ----------------------------------------------------------------------------

    def install(self) -> None:
        gc.callbacks.append(self.on_gc)
        probe = self
        run = asyncio.events.Handle._run

        def timed(handle: asyncio.events.Handle) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            gc0 = probe.gc_s
            probe.current = (start, handle)
            try:
                run(handle)
            finally:
                probe.current = None
                took = time.perf_counter() - start
                used = time.thread_time() - cpu
                if took >= SLOW:
                    probe.slow(handle, took, used, probe.gc_s - gc0)
                if used * 1000 >= STEP_BINS_MS[0]:
                    probe.step(handle, used * 1000)
                if background(handle):
                    probe.bg_cpu += used

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
        threading.Thread(target=self.watch, name="loop-probe", daemon=True).start()
        self.install_requests()

    def install_requests(self) -> None:
        """Stamp each request's arrival and its handler's start and end in loop CPU (`req`)."""
        try:
            from aiohttp import web_protocol
        except ImportError:
            return
        handler_class = web_protocol.RequestHandler
        received, handle = handler_class.data_received, handler_class._handle_request
        lost = handler_class.connection_lost
        probe = self
        # id(connection) -> (loop CPU, background CPU) when its request began
        arrivals: dict[int, tuple[float, float]] = {}

        def data_received(proto: Any, data: bytes) -> None:
            # The rest of a body that arrives while its handler runs is no new request.
            if id(proto) not in arrivals and not proto._request_in_progress:
                arrivals[id(proto)] = (time.thread_time(), probe.bg_cpu)
            received(proto, data)

        def connection_lost(proto: Any, exc: BaseException | None) -> None:
            arrivals.pop(id(proto), None)
            lost(proto, exc)

        async def handle_request(proto: Any, request: Any, *args: Any) -> Any:
            # The next bytes on this connection begin a new request.
            arrived = arrivals.pop(id(proto), None)
            start, bg_at_start = time.thread_time(), probe.bg_cpu
            try:
                return await handle(proto, request, *args)
            finally:
                if arrived is not None:
                    end = time.thread_time()
                    probe.write(k="req", t=time.monotonic(), path=request.path,
                                wait=round((start - arrived[0]) * 1000, 3),
                                answer=round((end - arrived[0]) * 1000, 3),
                                bg=round((bg_at_start - arrived[1]) * 1000, 3))

        handle_request.__qualname__ = "RequestHandler._handle_request"  # foreground, as it wraps
        handler_class.data_received = data_received  # type: ignore[method-assign,assignment]
        handler_class.connection_lost = connection_lost  # type: ignore[method-assign,assignment]
        handler_class._handle_request = handle_request  # type: ignore[method-assign,assignment]

    def step(self, handle: asyncio.events.Handle, cpu_ms: float) -> None:
        what = describe(handle) + (" (background)" if background(handle) else "")
        row = self.steps.get(what)
        if row is None:
            row = self.steps[what] = [0.0] * (len(STEP_BINS_MS) + 2)
        for i, ms in enumerate(STEP_BINS_MS):
            if cpu_ms >= ms:
                row[i] += 1
        row[-2] += cpu_ms
        row[-1] = max(row[-1], cpu_ms)

    def slow(self, handle: asyncio.events.Handle, took: float, cpu: float, gc_s: float) -> None:
        self.write(k="slow", t=time.monotonic(), ms=round(took * 1000, 3), cpu_ms=round(cpu * 1000, 3),
                   gc_ms=round(gc_s * 1000, 3), what=describe(handle),
                   stack=self.stacks.pop(id(handle), ""))

    def watch(self) -> None:
        """Sample the loop thread's stack once per long callback, while it still runs."""
        sampled: Any = None
        while True:
            time.sleep(SAMPLE_AFTER / 2)
            current = self.current
            if current is None or current[1] is sampled:
                continue
            start, handle = current
            if time.perf_counter() - start < SAMPLE_AFTER:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if self.current is not current or frame is None:
                continue
            sampled = handle
            self.stacks[id(handle)] = stack_of(frame)

    # -- heartbeat ----------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = loop.time()
        while True:
            due = loop.time() + EVERY
            await asyncio.sleep(EVERY)
            now = loop.time()
            self.beats += 1
            late = now - due
            if late >= LATE_MIN:
                self.write(k="late", t=time.monotonic(), ms=round(late * 1000, 3))
            if now - last_flush >= 1.0:
                self.write(k="beats", t=time.monotonic(), n=self.beats, **turns_given())
                self.write(k="steps", t=time.monotonic(),
                           steps={w: [round(x, 3) for x in r] for w, r in self.steps.items()})
                self.steps = {}  # counted per second, summed over a phase
                self.out.flush()
                last_flush = now


def turns_given() -> dict[str, int]:
    """Background turns given so far on this loop (bot/background.py): after a poll, and at
    once to work past its MAX_WAIT_S (ageing); none in a server without turns."""
    background = sys.modules.get("bot.background")
    if background is None:
        return {}
    state = background.turns()
    return {"given": state.given, "aged": state.aged}


# Tasks that answer a request: the connection's reader, the handler, a Slack form's core
# work (SlackAdapter.on_submit), and the probe's own heartbeat. Every other task's steps are
# background work (Slack's after an ack, the scheduler, the router workers and flushers).
# Accepting a connection and writing an outbound request's body are counted with neither.
FOREGROUND = {"RequestHandler.start", "RequestHandler._handle_request", "Core.handle",
              "Probe.heartbeat", "BaseSelectorEventLoop._accept_connection2",
              "ClientRequest.write_bytes"}


def background(handle: asyncio.events.Handle) -> bool:
    """The callback steps a task that answers no request (I/O callbacks and timers are not)."""
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(task, asyncio.Task):
        return False
    return getattr(task.get_coro(), "__qualname__", "") not in FOREGROUND


def describe(handle: asyncio.events.Handle) -> str:
    """The task a callback steps (its coroutine's name), else the callback itself."""
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
    return f"callback {getattr(cb, '__qualname__', repr(cb))[:120]}"


def stack_of(frame: Any, depth: int = int(os.environ.get("LOAD_STACK_DEPTH", "14"))) -> str:
    """The innermost frames, outermost first, with paths shortened (site-packages, the repo)."""
    frames: list[str] = []
    while frame is not None and len(frames) < depth:
        code = frame.f_code
        path = code.co_filename
        path = path.split("site-packages" + os.sep, 1)[-1].removeprefix(ROOT)
        frames.append(f"{path}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " < ".join(frames)


def start(path: str) -> Probe:
    """Install the probe in this process (from inside its running event loop)."""
    probe = Probe(path)
    probe.install()
    asyncio.get_running_loop().create_task(probe.heartbeat(), name="loop-probe")
    return probe


# -- the conductor's side ---------------------------------------------------------------------

def summarise(path: str, t0: float, t1: float) -> dict[str, Any]:
    """What the probe saw between monotonic times t0 and t1."""
    late: list[float] = []
    gcs: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    beats = []
    reqs: dict[str, tuple[list[float], list[float], list[float]]] = {}
    steps: dict[str, list[float]] = {}
    for line in Path(path).read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by the process's end
        if r["k"] == "beats":
            beats.append((r["t"], r["n"], r))
        if not t0 <= r["t"] <= t1:
            continue
        if r["k"] == "late":
            late.append(r["ms"])
        elif r["k"] == "gc":
            gcs.append(r)
        elif r["k"] == "slow":
            slow.append(r)
        elif r["k"] == "steps":
            for what, row in r["steps"].items():
                total = steps.setdefault(what, [0.0] * len(row))
                total[:-1] = [a + b for a, b in zip(total[:-1], row[:-1], strict=True)]
                total[-1] = max(total[-1], row[-1])
        elif r["k"] == "req":
            wait, answer, bg = reqs.setdefault(r["path"], ([], [], []))
            wait.append(r["wait"])
            answer.append(r["answer"])
            bg.append(r.get("bg", 0.0))
    inside = [n for t, n, _ in beats if t0 <= t <= t1]
    turns = [r for t, _, r in beats if t0 <= t <= t1 and "given" in r]
    where = Counter(r["what"] for r in slow if r["cpu_ms"] > 10)
    over10 = [r for r in slow if r["cpu_ms"] > 10]
    return {
        "seconds": t1 - t0,
        "beats": (inside[-1] - inside[0]) if len(inside) > 1 else 0,
        "turns": ({k: turns[-1][k] - turns[0][k] for k in ("given", "aged")}
                  if len(turns) > 1 else {}),
        "late_over": {ms: sum(1 for x in late if x > ms) for ms in (5, 10, 25, 50)},
        "late_max": max(late, default=0.0),
        "gc_count": {g: sum(1 for r in gcs if r["gen"] == g) for g in (0, 1, 2)},
        "gc_cpu_ms": {g: round(sum(r["cpu_ms"] for r in gcs if r["gen"] == g), 1) for g in (0, 1, 2)},
        "gc_max_cpu": max((r["cpu_ms"] for r in gcs), default=0.0),
        "gc_over_10": sum(1 for r in gcs if r["cpu_ms"] > 10),
        "gc_objects": {g: max((r["objects"] for r in gcs if r["gen"] == g), default=0) for g in (0, 1, 2)},
        "gc_mean_objects": {g: sum(r["objects"] for r in gcs if r["gen"] == g)
                            // max(1, sum(1 for r in gcs if r["gen"] == g)) for g in (0, 1, 2)},
        "cpu_over": {ms: sum(1 for r in slow if r["cpu_ms"] > ms) for ms in (5, 10, 25)},
        "wall_over": {ms: sum(1 for r in slow if r["ms"] > ms) for ms in (5, 10, 25)},
        "gc_share": sum(r["gc_ms"] for r in over10) / max(1e-9, sum(r["ms"] for r in over10)),
        "where": where.most_common(6),
        "heaviest": sorted(slow, key=lambda r: -r["cpu_ms"])[:5],
        "steps": sorted(steps.items(), key=lambda kv: -kv[1][-2])[:8],
        "requests": {path: {"n": len(w), "wait": (_pct(w, 50), _pct(w, 99)),
                            "answer": (_pct(a, 50), _pct(a, 99)),
                            "bg": (_pct(b, 50), _pct(b, 99), sum(1 for x in b if x > 0) / len(b))}
                     for path, (w, a, b) in sorted(reqs.items())},
    }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(name: str, s: dict[str, Any], out: TextIO = sys.stdout) -> None:
    lo, co, wo = s["late_over"], s["cpu_over"], s["wall_over"]
    n, ms = s["gc_count"], s["gc_cpu_ms"]
    print(f"  {name} ({s['seconds']:.0f} s, {s['beats']} heartbeats of {EVERY * 1000:.0f} ms):\n"
          f"    heartbeat late > 5 / 10 / 25 / 50 ms: {lo[5]} / {lo[10]} / {lo[25]} / {lo[50]}, "
          f"longest {s['late_max']:.1f} ms (wall clock)\n"
          f"    one callback using > 5 / 10 / 25 ms of CPU: {co[5]} / {co[10]} / {co[25]} "
          f"(wall clock: {wo[5]} / {wo[10]} / {wo[25]}; the collector's share of those "
          f"over 10 ms CPU: {s['gc_share']:.0%})\n"
          f"    collections gen0 / 1 / 2: {n[0]} / {n[1]} / {n[2]}, CPU {ms[0]} / {ms[1]} / {ms[2]} ms, "
          f"longest {s['gc_max_cpu']:.1f} ms, {s['gc_over_10']} over 10 ms\n"
          f"    objects walked per collection gen0 / 1 / 2, mean (most): "
          + " / ".join(f"{s['gc_mean_objects'][g]} ({s['gc_objects'][g]})" for g in (0, 1, 2)),
          file=out)
    if s["turns"]:
        t = s["turns"]
        print(f"    background turns (bot/background.py): {t['given']} after a poll, {t['aged']} "
              f"at once past MAX_WAIT_S ({t['aged'] / max(1, t['given'] + t['aged']):.0%})",
              file=out)
    for path, r in s["requests"].items():
        print(f"    {path:14} {r['n']:5d} requests, loop CPU from arrival (ms, p50 / p99): to the "
              f"handler's start {r['wait'][0]:5.1f} / {r['wait'][1]:5.1f}, to the answer "
              f"{r['answer'][0]:5.1f} / {r['answer'][1]:5.1f}; background work run before its "
              f"handler started {r['bg'][0]:4.1f} / {r['bg'][1]:5.1f} ms (for {r['bg'][2]:.0%} "
              "of them)", file=out)
    if s["steps"]:
        bins = " / ".join(f"{ms:g}" for ms in STEP_BINS_MS)
        print(f"    steps of the loop using >= {bins} ms of CPU, by task (CPU in those of >= "
              f"{STEP_BINS_MS[0]:g} ms, the longest):", file=out)
        for what, row in s["steps"]:
            counts = " / ".join(f"{int(n)}" for n in row[:len(STEP_BINS_MS)])
            print(f"      {counts:>16}  {row[-2]:8.0f} ms, {row[-1]:5.1f} ms  {what}", file=out)
    for what, count in s["where"]:
        print(f"    {count:5d} x {what}", file=out)
    for r in s["heaviest"]:
        print(f"    {r['cpu_ms']:7.1f} ms CPU ({r['ms']:.1f} wall, gc {r['gc_ms']:.1f}) {r['what']}: "
              f"{r['stack'] or '(not sampled)'}", file=out)
