"""A background charger load for the mobile benchmarks: "measured while N chargers send their load".

Not a benchmark itself. ``push_latency.py`` and ``get_stations.py`` use it for
``--background-chargers N`` / ``--background-interval S`` (and its ``start_profiler``,
py-spy on the server, and ``server_cpu_rate``, the background load's own CPU).

One generator process, pinned to the client CPUs (``sched_setaffinity``), runs N raw
OCPP-J chargers over ``websockets`` (the frames, ``Meter`` and ``open_charger`` of
bench/side_by_side.py: no pings, no compression, no ``ocpp`` ChargePoint). Each one
connects to /ocpp/<id> (at most 50 handshakes + boots in flight, a failed one tried
again up to 3 times), sends BootNotification, then one call every ``interval`` s
(the first at a random offset within the first interval), alternating Heartbeat and
MeterValues whose reading has a timestamp unique and increasing per charger. The
process reports ready once every charger has booted (or given up) and one more
interval has passed, so the load is at its steady rate when the measurement starts.

The parent marks the measured window (``begin`` / ``end``, CLOCK_MONOTONIC, the same
clock in every process); ``end`` stops the chargers and returns what the calls sent in
the window achieved: answered calls per second against the nominal N / interval,
round trip p50/p99/max (a call unanswered after ``call_timeout`` counts as infinite
in the percentiles), timeouts, connections lost, and the generator's own event-loop
lag (if that is large, the generator, not the server, was slow).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile  # noqa: E402
from _support import percentile, proc_cpu_seconds, run_generator  # noqa: E402
from side_by_side import BOOT, Meter, close_key, failure_key, open_charger, rpc  # noqa: E402

HANDSHAKES_IN_FLIGHT = 50
ATTEMPTS = 3


async def _run(cfg: dict, ready, stop) -> dict:
    import websockets

    n, interval = cfg["count"], cfg["interval"]
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    failures: dict[str, int] = {}
    drops: dict[str, int] = {}
    calls: list[tuple[float, float, str]] = []  # (sent, CLOCK_MONOTONIC; round trip s or inf; action)
    booted = [0]
    stopping = asyncio.Event()
    sockets: list = []

    async def connect(i: int):
        for attempt in range(ATTEMPTS):
            async with gate:
                try:
                    ws = await open_charger(f"{cfg['url']}/ocpp/{cfg['ids'][i]}", cfg["connect_timeout"])
                except Exception as error:  # noqa: BLE001 - every cause is counted
                    failures[failure_key(error)] = failures.get(failure_key(error), 0) + 1
                    ws = None
                if ws is not None:
                    try:
                        kind, _ = await rpc(ws, f"b{i}", "BootNotification", BOOT, cfg["call_timeout"])
                        if kind == 3:
                            return ws
                        failures["boot:CALLERROR"] = failures.get("boot:CALLERROR", 0) + 1
                    except Exception as error:  # noqa: BLE001
                        key = f"boot:{failure_key(error)}"
                        failures[key] = failures.get(key, 0) + 1
                    ws.transport.abort()
            await asyncio.sleep(1.0 + attempt)
        return None

    async def charger(i: int) -> None:
        ws = await connect(i)
        if ws is None:
            return
        sockets.append(ws)
        booted[0] += 1
        meter, seq = Meter(), i % 2  # half the chargers start with a MeterValues
        next_at = time.monotonic() + random.uniform(0, interval)
        try:
            while True:
                delay = next_at - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stopping.wait(), delay)
                    except TimeoutError:
                        pass
                if stopping.is_set():
                    return
                seq += 1
                action = "MeterValues" if seq % 2 == 0 else "Heartbeat"
                sent = time.monotonic()
                try:
                    _, rtt = await rpc(ws, f"{i}.{seq}", action, meter.payload() if seq % 2 == 0 else {},
                                       cfg["call_timeout"])
                except TimeoutError:
                    rtt = float("inf")
                calls.append((sent, rtt, action))
                next_at += interval
        except (websockets.ConnectionClosed, OSError) as error:
            cause, _ = close_key(error)
            drops[cause] = drops.get(cause, 0) + 1

    lags: list[tuple[float, float]] = []  # (when, how late the loop ran, s)

    async def lag_monitor() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append((time.monotonic(), loop.time() - before - 0.05))

    monitor = asyncio.create_task(lag_monitor())
    began = time.monotonic()
    tasks = [asyncio.create_task(charger(i)) for i in range(n)]
    while sum(1 for t in tasks if t.done()) + booted[0] < n:  # every charger booted or given up
        await asyncio.sleep(0.1)
    boot_s = time.monotonic() - began
    await asyncio.sleep(interval)  # every booted charger has made its first call: the steady rate
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    stopping.set()
    await asyncio.wait(tasks, timeout=cfg["call_timeout"] + 2)  # the calls in flight are answered
    monitor.cancel()
    for task in tasks:
        task.cancel()
    for ws in sockets:
        ws.transport.abort()
    return {"count": n, "booted": booted[0], "boot_s": boot_s, "failures": failures, "drops": drops,
            "calls": calls, "lags": lags}


def _process(cfg: dict, ready, stop, results) -> None:
    results.put(run_generator(cfg["cpus"], lambda: _run(cfg, ready, stop), "cpu_s"))


class BackgroundChargers:
    """N chargers sending their load from their own process; ``count`` 0 does nothing."""

    def __init__(self, url: str, count: int, *, interval: float = 10.0, cpus: str | None = None,
                 ids: list[str] | None = None, prefix: str = "BG", call_timeout: float = 30.0,
                 connect_timeout: float = 20.0) -> None:
        self.count = count
        self.interval = interval
        ids = ids or [f"{prefix}{i:05d}" for i in range(count)]
        if len(ids) < count:
            raise ValueError(f"{count} chargers but only {len(ids)} station ids")
        self.cfg = {"url": url, "count": count, "interval": interval, "cpus": cpus, "ids": ids[:count],
                    "call_timeout": call_timeout, "connect_timeout": connect_timeout}
        self.ready, self.stop = mp.Event(), mp.Event()
        self.results: mp.Queue = mp.Queue()
        self.process: mp.Process | None = None
        self.window: tuple[float, float] | None = None
        self._opened = 0.0

    def start(self) -> None:
        if self.count:
            self.process = mp.Process(target=_process, args=(self.cfg, self.ready, self.stop, self.results),
                                      daemon=True)
            self.process.start()

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Until every charger booted (or gave up) and one interval passed; raises if the process died."""
        if not self.process:
            return
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if not self.process.is_alive():
                raise RuntimeError(f"the background chargers exited: {self.results.get(timeout=5)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the background chargers were not ready in {timeout:.0f} s")

    def begin(self) -> None:
        self._opened = time.monotonic()

    def end(self, closed_at: float | None = None) -> dict:
        """Stop the chargers; the figures of the calls sent in the window (``begin`` until ``closed_at``,
        a CLOCK_MONOTONIC time, or now)."""
        if not self.process:
            return {"count": 0}
        self.window = (self._opened, closed_at or time.monotonic())
        self.stop.set()
        try:
            result = self.results.get(timeout=self.cfg["call_timeout"] + 60)
        except Exception:  # noqa: BLE001 - queue.Empty
            result = {"error": "the background chargers gave no result"}
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
        if "error" in result:
            return result
        opened, closed = self.window
        in_window = [(rtt, action) for sent, rtt, action in result.pop("calls") if opened <= sent <= closed]
        rtts = [rtt for rtt, _ in in_window]
        meters = [rtt for rtt, action in in_window if action == "MeterValues"]
        lags = [lag for when, lag in result.pop("lags") if opened <= when <= closed]
        answered = sum(1 for rtt in rtts if rtt != float("inf"))
        return {**result, "window_s": closed - opened, "sent": len(rtts), "answered": answered,
                "timeouts": len(rtts) - answered, "rate": answered / max(closed - opened, 1e-9),
                "nominal_rate": result["booted"] / self.interval,
                "p50_ms": percentile(rtts, 50) * 1000, "p99_ms": percentile(rtts, 99) * 1000,
                "max_ms": max(rtts, default=float("nan")) * 1000, "meter_p99_ms": percentile(meters, 99) * 1000,
                "lag_p99_ms": percentile(lags, 99) * 1000, "lag_max_ms": max(lags, default=0.0) * 1000}


def describe(figures: dict) -> str:
    """One paragraph for a script's output."""
    if not figures.get("count"):
        return "background chargers: none"
    if "error" in figures:
        return f"background chargers: FAILED ({figures['error']})"
    text = (f"background chargers: {figures['booted']} of {figures['count']} booted in {figures['boot_s']:.1f} s; "
            f"in the {figures['window_s']:.1f} s window {figures['answered']} calls answered at "
            f"{figures['rate']:.1f}/s (nominal {figures['nominal_rate']:.1f}/s), {figures['timeouts']} timeouts; "
            f"round trip p50 {figures['p50_ms']:.1f} p99 {figures['p99_ms']:.1f} max {figures['max_ms']:.1f} ms "
            f"(MeterValues p99 {figures['meter_p99_ms']:.1f}); generator loop lag p99 {figures['lag_p99_ms']:.1f} "
            f"max {figures['lag_max_ms']:.1f} ms, CPU {figures['cpu_s']:.1f} s")
    if figures["failures"]:
        text += f"; connect/boot failures {figures['failures']}"
    if figures["drops"]:
        text += f"; connections lost {figures['drops']}"
    return text


def add_arguments(parser) -> None:
    """The options push_latency.py and get_stations.py share: where the server and the clients run, and the
    background load."""
    parser.add_argument("--server-env", action="append", default=[], metavar="K=V",
                        help="add to the server's environment (e.g. PYTHONPATH of a sitecustomize to try a patch)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the server ('' = unpinned)")
    parser.add_argument("--client-cpus", default="1", help="CPU list for every client process ('' = unpinned)")
    parser.add_argument("--background-chargers", type=int, default=0,
                        help="chargers sending their load before and during the measurement (bench/_chargers.py)")
    parser.add_argument("--background-interval", type=float, default=10.0,
                        help="seconds between two calls of one background charger")


def start_profiler(pid: int, seconds: float, out: str) -> subprocess.Popen | None:
    """py-spy on the server for ``seconds`` (None when 0): raw collapsed stacks of every thread, 100 Hz."""
    return _profile.record(pid, seconds, Path(out)) if seconds else None


def server_cpu_rate(pid: int, seconds: float) -> float:
    """A process's CPU over the next ``seconds``, in cores (the background load's own, before a measurement)."""
    before, began = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (proc_cpu_seconds(pid) - before) / (time.monotonic() - began)
