"""Side by side: the CSMS against the bare ``ocpp`` library under the same load, in one table (issue 12).

What it does
  For each run (--runs, default 3; the table gives medians) and each target in turn:
    sqlite     the CSMS on daphne + SQLite (a migrated file in a temporary directory)
    postgres   the CSMS on daphne + PostgreSQL (a throwaway database csms_bench_sbs_<pid> on
               --postgres-url's server, created, migrated and dropped by the script)
    uvicorn    the CSMS on uvicorn + PostgreSQL (only with --uvicorn)
    reference  the bare ``ocpp`` 2.1 library on ``websockets``, no database (bench/reference_ocpp.py)
  it starts the server (bench/_support.Server with LOG_LEVEL=INFO, the development default; OCPP_UNKNOWN_STATIONS=accept,
  DJANGO_DEBUG=false, in-memory channel layer) pinned to --server-cpus with taskset, and a load
  generator process pinned to --client-cpus, and runs the scenarios below on that server.
  storm-known runs on a fresh server process on the same database (as after a deploy or a crash;
  --known-same-process keeps the process of storm-new instead).

  The generator is written here: raw OCPP-J frames over ``websockets`` (no pings, no compression,
  no ``ocpp`` ChargePoint), one asyncio process. A CALL from the server is answered with a
  CALLERROR NotImplemented.

Scenarios (sizes are options; --quick shrinks them all to a ~2 minute smoke run)
  burst        --chargers (100) connect and send BootNotification, then each sends calls back to
               back (the next when the previous is answered), alternating Heartbeat and MeterValues,
               --warmup s unmeasured, then --duration s measured. Each MeterValues carries one reading
               with a timestamp unique and increasing per charger (milliseconds, at least 1 ms apart:
               the CSMS stores microseconds and keeps one reading per station, connector and
               timestamp) and an increasing Energy.Active.Import.Register. Measured: calls/s answered
               in the window, round trip p50/p99 of the calls sent in it, server CPU per call (the
               process; for PostgreSQL targets also the database's backends) and, for the CSMS, the
               MeterSample rows in the database against the MeterValues that got a CALLRESULT.
  storm-new    --storm-chargers (10,000) never-seen stations connect at --rate (500/s), each sends
               BootNotification and then one call every --storm-interval (30 s, first at a random
               offset) alternating Heartbeat and MeterValues; held --hold s (60) after the ramp.
               Measured: booted, connections failed / dropped, BootNotification p99, p99 of the calls
               sent after the ramp, server RSS per connection ((RSS at the end - RSS idle before the
               ramp) / sockets open), and whether any charger got close code 4010 (the process fenced
               itself: presence declared it dead). One connection attempt per charger; with --retry a
               refused handshake is tried again after the simulator's backoff (Retry-After honoured).
  storm-known  the same stations, registered now, reconnect at --reconnect-rate (0: all at once, as
               fast as the generator opens them); the same measures. Run alone (--only storm-known),
               the stations are first registered by an unmeasured pass.

OCPP version (--ocpp 1.6, 2.0.1 or 1.6,2.0.1; default 1.6)
  The chargers speak that version: the same calls in its form (bench/_frames.py). 2.0.1's
  BootNotification {chargingStation, reason}, StatusNotification {timestamp, connectorStatus,
  evseId, connectorId}, Heartbeat, MeterValues {evseId 1, meterValue} with the value a number and
  its unit in unitOfMeasure. The burst runs no transaction in either version unless
  --in-transaction: then each charger first starts one (1.6 StartTransaction; 2.0.1 TransactionEvent
  Started with a Transaction.Begin reading, counted among the MeterValues) and its readings are the
  transaction's (1.6 MeterValues with the transactionId; 2.0.1 TransactionEvent Updated, seqNo 1, 2,
  ...). The reference speaks both (bench/reference_ocpp.py), so each ratio is to the reference of
  the same version, measured in the same run. With both versions every target runs with each (1.6 first), one column per
  target and version.

CPU
  The server's CPU is utime+stime from /proc/<pid>/stat. On PostgreSQL targets the backends of the
  bench database (pids from pg_stat_activity, polled every 0.5 s) are read the same way and
  reported separately; they cannot be pinned (the PostgreSQL server is shared), so they may run on
  either core. PostgreSQL's own background processes (WAL writer, checkpointer) are not counted.

Run from the repository root:
    .venv/bin/python bench/side_by_side.py                 # all scenarios, 3 runs, medians
    .venv/bin/python bench/side_by_side.py --quick --runs 1
    .venv/bin/python bench/side_by_side.py --only burst --targets postgres,reference
    .venv/bin/python bench/side_by_side.py --only storm-new --targets reference --runs 1
    .venv/bin/python bench/side_by_side.py --only burst --ocpp 1.6,2.0.1 --targets postgres,sqlite,reference
    .venv/bin/python bench/side_by_side.py --only burst --ocpp 1.6,2.0.1 --in-transaction

The raw results go to bench/results/side_by_side-<UTC time>.json (--json to choose).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile  # noqa: E402
from _frames import SUBPROTOCOLS, VERSIONS, Meter, boot, status_available  # noqa: E402
from _support import (  # noqa: E402
    Server,
    cpu_set,
    free_port,
    percentile,
    proc_cpu_seconds,
    proc_rss_kb,
    raise_nofile,
    run_generator,
    stderr_digest,
    system_cpu,
    tcp_listen_counters,
)

SCENARIOS = ("burst", "storm-new", "storm-known")
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {
    "postgres": {"title": "CSMS daphne + PostgreSQL", "asgi": "daphne", "postgres": True},
    "sqlite": {"title": "CSMS daphne + SQLite", "asgi": "daphne", "postgres": False},
    "uvicorn": {"title": "CSMS uvicorn + PostgreSQL", "asgi": "uvicorn", "postgres": True},
    "reference": {"title": "bare ocpp 2.1 + websockets, no DB", "asgi": "bare-ocpp", "postgres": False},
}
REFERENCE = "reference"
SETTLE_S = 10.0  # storms: calls sent this long after the ramp count as the settled state
CLOSE_FENCED = 4010  # stations/consumers.py: this process was declared dead
# Shared progress counters of the storm generator.
COUNTERS = ("attempted", "open", "booted", "failed", "dropped", "calls_ok", "calls_timeout", "fenced", "settled",
            "retries")
# settled: chargers done with connect + boot (booted, failed, or lost before the boot was answered)


# --- The load generator (runs in its own process) ------------------------------------------------

def _dumps(frame: list) -> str:
    return json.dumps(frame, separators=(",", ":"))


async def rpc(ws, uid: str, action: str, payload: dict, timeout: float) -> tuple[int, float]:
    """Send one CALL and wait for its answer: (3 for CALLRESULT or 4 for CALLERROR, round trip in s).

    Answers to other uids (a late answer to a call that timed out) are skipped; a CALL from the
    server is answered NotImplemented. Raises TimeoutError, websockets.ConnectionClosed.
    """
    kind, rtt, _ = await exchange(ws, uid, action, payload, timeout)
    return kind, rtt


async def exchange(ws, uid: str, action: str, payload: dict, timeout: float) -> tuple[int, float, list]:
    """``rpc``, with the answer's frame as the third element."""
    started = time.perf_counter()
    await ws.send(_dumps([2, uid, action, payload]))
    deadline = started + timeout
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            frame = json.loads(await ws.recv())
        if frame[0] == 2:
            await ws.send(_dumps([4, frame[1], "NotImplemented", "", {}]))
            continue
        if frame[1] == uid and frame[0] in (3, 4):
            return frame[0], time.perf_counter() - started, frame


BOOT = boot("1.6", "SideBySide")


async def open_charger(url: str, connect_timeout: float, version: str = "1.6"):
    from websockets.asyncio.client import connect

    return await connect(url, subprotocols=[SUBPROTOCOLS[version]], open_timeout=connect_timeout, ping_interval=None,
                         compression=None, proxy=None, close_timeout=1, max_queue=16, user_agent_header=None)


def failure_key(error: BaseException) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    cause = error.__cause__ or error.__context__
    return type(error).__name__ + (f"({status})" if status else "") + (f"<-{type(cause).__name__}" if cause else "")


def close_key(error: BaseException) -> tuple[str, bool]:
    """(cause, fenced) of a lost connection."""
    rcvd = getattr(error, "rcvd", None)
    if rcvd is not None:
        return f"closed({rcvd.code})", rcvd.code == CLOSE_FENCED
    return type(error).__name__, False


def bump(counts: dict, key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


async def burst_generator(cfg: dict, events: dict) -> dict:
    """Connect and boot cfg['chargers'], then back-to-back calls; the window is signalled to the parent."""
    import websockets

    n = cfg["chargers"]
    version = cfg["ocpp"]
    boot_payload = boot(version, "SideBySide")
    sockets: list = [None] * n
    meters = [Meter(version) for _ in range(n)]
    transactions: list[int | str | None] = [None] * n  # --in-transaction: each charger's transaction id
    begin_readings = [0]  # 2.0.1 Started carries a reading (Transaction.Begin), stored like a MeterValues'

    async def start_transaction(ws, i: int, meter: Meter) -> int | str:
        charger_id = f"SBSB{i:05d}-tx"
        action, payload = meter.start(charger_id)
        kind, _, frame = await exchange(ws, f"t{i}", action, payload, cfg["call_timeout"])
        if kind != 3:
            raise RuntimeError(f"{action} CALLERROR {frame[2]}")
        if version == "1.6":
            return frame[2]["transactionId"]
        begin_readings[0] += len(payload["meterValue"])
        return charger_id
    failures: dict[str, int] = {}
    drops: dict[str, int] = {}
    fenced = [0]
    gate = asyncio.Semaphore(50)

    async def connect_one(i: int) -> None:
        async with gate:
            try:
                ws = await open_charger(f"{cfg['url']}/ocpp/{cfg['prefix']}{i:05d}", cfg["connect_timeout"], version)
            except Exception as error:  # noqa: BLE001 - every cause is counted
                bump(failures, failure_key(error))
                return
            try:
                kind, _ = await rpc(ws, f"b{i}", "BootNotification", boot_payload, cfg["call_timeout"])
                if kind != 3:
                    raise RuntimeError("BootNotification CALLERROR")
                await rpc(ws, f"s{i}", "StatusNotification", status_available(version), cfg["call_timeout"])
                if cfg["in_transaction"]:
                    transactions[i] = await start_transaction(ws, i, meters[i])
            except Exception as error:  # noqa: BLE001
                bump(failures, f"boot:{failure_key(error)}")
                ws.transport.abort()
                return
            sockets[i] = ws

    await asyncio.wait_for(asyncio.gather(*(connect_one(i) for i in range(n))), cfg["connect_timeout"] + 60)
    booted = sum(1 for ws in sockets if ws is not None)
    events["ready"].set()
    window = {"open": None, "close": None, "stop": False}
    counts = {"answered": 0, "in_window": 0, "callerror": 0, "timeout": 0, "meter_acked": 0, "meter_sent": 0,
              "meter_unanswered": 0}
    counts["meter_sent"] = counts["meter_acked"] = begin_readings[0]
    rtts: dict[str, list[float]] = {"Heartbeat": [], "MeterValues": []}

    async def drive(i: int, ws) -> None:
        meter = meters[i]
        transaction_id = transactions[i]
        seq = 0
        try:
            while not window["stop"]:
                seq += 1
                # "MeterValues" is the reading call: in a transaction, 2.0.1 sends it as TransactionEvent Updated.
                action = "MeterValues" if seq % 2 == 0 else "Heartbeat"
                sent_as, payload = action, {}
                if action == "MeterValues":
                    sent_as, payload = (meter.in_transaction(transaction_id, seq // 2) if transaction_id is not None
                                        else ("MeterValues", meter.payload()))
                sent = time.perf_counter()
                if action == "MeterValues":
                    counts["meter_sent"] += 1
                try:
                    kind, rtt = await rpc(ws, f"{i}.{seq}", sent_as, payload, cfg["call_timeout"])
                except TimeoutError:
                    counts["timeout"] += 1
                    counts["meter_unanswered"] += action == "MeterValues"
                    continue
                done = sent + rtt
                counts["answered"] += 1
                if kind == 4:
                    counts["callerror"] += 1
                elif action == "MeterValues":
                    counts["meter_acked"] += 1
                opened, closed = window["open"], window["close"]
                if opened is not None and done >= opened and (closed is None or done <= closed):
                    counts["in_window"] += 1  # throughput: answers inside the window
                if opened is not None and sent >= opened and (closed is None or sent <= closed):
                    rtts[action].append(rtt)  # latency: calls sent inside it, however late their answer
        except websockets.ConnectionClosed as error:
            cause, was_fenced = close_key(error)
            bump(drops, cause)
            fenced[0] += was_fenced
            counts["meter_unanswered"] += seq % 2 == 0

    tasks = [asyncio.create_task(drive(i, ws)) for i, ws in enumerate(sockets) if ws is not None]
    await asyncio.sleep(cfg["warmup"])
    window["open"] = time.perf_counter()
    events["open"].set()
    await asyncio.sleep(cfg["duration"])
    window["close"] = time.perf_counter()
    events["close"].set()
    window["stop"] = True
    await asyncio.wait(tasks, timeout=cfg["call_timeout"] + 5)
    for task in tasks:
        task.cancel()
    for ws in sockets:
        if ws is not None:
            ws.transport.abort()
    return {"booted": booted, "failures": failures, "drops": drops, "fenced": fenced[0], "counts": counts,
            "window_s": window["close"] - window["open"], "rtts": rtts}


async def storm_generator(cfg: dict, counters, events: dict) -> dict:
    """cfg['chargers'] connect at cfg['rate'] (0: all at once), boot, then one call per cfg['interval']."""
    import websockets

    row = [0] * len(COUNTERS)
    failures: dict[str, int] = {}
    drops: dict[str, int] = {}
    from simulator.v16 import ReconnectBackoff, retry_after

    handshakes: list[float] = []
    boots: list[float] = []
    to_boot: list[float] = []  # from the first attempt (retries included) to the boot's answer
    calls: list[tuple[float, float]] = []  # (sent at, wall clock; rtt)
    sockets: list = []

    async def charger(i: int) -> None:
        row[0] += 1
        first = time.perf_counter()
        backoff = ReconnectBackoff() if cfg["retry"] else None
        while True:
            began = time.perf_counter()
            try:
                ws = await open_charger(f"{cfg['url']}/ocpp/{cfg['prefix']}{i:05d}", cfg["connect_timeout"],
                                        cfg["ocpp"])
                break
            except Exception as error:  # noqa: BLE001 - every cause is counted
                bump(failures, failure_key(error))
                delay = backoff.next_delay(retry_after(error)) if backoff else None
                if delay is None or time.time() + delay >= cfg["stop_at"]:
                    row[3] += 1
                    row[8] += 1
                    return
                row[9] += 1
                await asyncio.sleep(delay)
        handshakes.append(time.perf_counter() - began)
        sockets.append(ws)
        row[1] += 1
        meter = Meter(cfg["ocpp"])
        seq = i % 2  # half start with a MeterValues
        settled = False
        try:
            try:
                kind, rtt = await rpc(ws, f"b{i}", "BootNotification", boot(cfg["ocpp"], "SideBySide"),
                                      cfg["call_timeout"])
            except TimeoutError:
                bump(failures, "boot:timeout")
                row[3] += 1
                return
            if kind != 3:
                bump(failures, "boot:CALLERROR")
                row[3] += 1
                return
            boots.append(rtt)
            to_boot.append(time.perf_counter() - first)
            row[2] += 1
            settled = True
            row[8] += 1
            if cfg["interval"] <= 0:
                await asyncio.sleep(3600)
            next_at = time.time() + random.uniform(0, cfg["interval"])
            while True:
                await asyncio.sleep(max(0.0, min(next_at, cfg["stop_at"]) - time.time()))
                if time.time() >= cfg["stop_at"]:
                    await asyncio.sleep(3600)  # held open until the parent has read the server
                seq += 1
                action = "MeterValues" if seq % 2 == 0 else "Heartbeat"
                sent_at = time.time()
                try:
                    _, rtt = await rpc(ws, f"{i}.{seq}", action, meter.payload() if seq % 2 == 0 else {},
                                       cfg["call_timeout"])
                    calls.append((sent_at, rtt))
                    row[5] += 1
                except TimeoutError:
                    calls.append((sent_at, float("inf")))
                    row[6] += 1
                next_at += cfg["interval"]
        except (websockets.ConnectionClosed, OSError) as error:
            cause, was_fenced = close_key(error)
            bump(drops, cause)
            row[4] += 1
            row[7] += was_fenced
        finally:
            row[1] -= 1
            if not settled:
                row[8] += 1

    async def publish() -> None:
        while True:
            counters[:] = row
            await asyncio.sleep(0.2)

    lags: list[float] = []

    async def lag_monitor() -> None:  # how late this loop runs: its own figures are that late too
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)

    publisher = asyncio.create_task(publish())
    monitor = asyncio.create_task(lag_monitor())
    tasks = []
    for i in range(cfg["chargers"]):
        if cfg["rate"] > 0:
            delay = cfg["start_at"] + i / cfg["rate"] - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(charger(cfg["first"] + i)))
    spawned_at = time.time()
    while not events["report"].is_set():
        await asyncio.sleep(0.1)
    counters[:] = row
    result = {"row": dict(zip(COUNTERS, row)), "failures": failures, "drops": drops, "handshakes": handshakes,
              "boots": boots, "to_boot": to_boot, "calls": calls, "spawned_at": spawned_at,
              "lag_p99_ms": ms(percentile(lags, 99)), "lag_max_ms": ms(max(lags, default=0.0))}
    publisher.cancel()
    monitor.cancel()
    for task in tasks:
        task.cancel()
    for ws in sockets:
        ws.transport.abort()  # a network blip: no close handshake
    return result


def generator_process(kind: str, cfg: dict, counters, events: dict, results) -> None:
    main = (lambda: burst_generator(cfg, events)) if kind == "burst" else (lambda: storm_generator(cfg, counters, events))
    results.put(run_generator(cfg["client_cpus"], main, "generator_cpu_s"))


# --- PostgreSQL backends -----------------------------------------------------------------------------

class Backends:
    """CPU of the PostgreSQL backends serving one database, polled from pg_stat_activity + /proc."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[1] if url else None
        self.cpu: dict[int, float] = {}  # pid -> last CPU seconds read (pids are never removed)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.error = ""

    def start(self) -> None:
        if self.url:
            self.thread = threading.Thread(target=self._poll_loop, daemon=True)
            self.thread.start()

    def _poll_loop(self) -> None:
        import psycopg

        admin = self.url.rsplit("/", 1)[0].replace("postgres://", "postgresql://", 1) + "/postgres"
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                while not self.stopping.is_set():
                    self._poll(conn)
                    self.stopping.wait(0.5)
        except Exception as error:  # noqa: BLE001 - reported with the results
            self.error = f"{type(error).__name__}: {error}"

    def _poll(self, conn) -> None:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,))]
        with self.lock:
            for pid in pids:
                try:
                    self.cpu[pid] = proc_cpu_seconds(pid)
                except OSError:
                    pass

    def snapshot(self) -> dict[int, float]:
        with self.lock:
            for pid in list(self.cpu):  # the known ones are re-read now; new ones come with the next poll
                try:
                    self.cpu[pid] = proc_cpu_seconds(pid)
                except OSError:
                    pass
            return dict(self.cpu)

    @staticmethod
    def delta(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds between two snapshots; a backend first seen after ``before`` counts from 0."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(5)


# --- Orchestration -------------------------------------------------------------------------------------

def established_to(port: int) -> int:
    """Server-side TCP connections of ``port`` in state ESTABLISHED."""
    suffix = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        return sum(1 for line in f if (fields := line.split(None, 4))[3] == "01" and fields[1].endswith(suffix))


def start_generator(kind: str, cfg: dict):
    events = {name: mp.Event() for name in ("ready", "open", "close", "report")}
    counters = mp.Array("q", len(COUNTERS), lock=False)
    results: mp.Queue = mp.Queue()
    process = mp.Process(target=generator_process, args=(kind, cfg, counters, events, results), daemon=True)
    process.start()
    return process, events, counters, results


def finish_generator(process, results, timeout: float) -> dict:
    try:
        result = results.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty
        result = {"error": f"the generator gave no result in {timeout:.0f} s"}
    process.join(10)
    if process.is_alive():
        process.terminate()
        process.join(5)
    return result


def wait_event(event, timeout: float, what: str, process) -> None:
    deadline = time.monotonic() + timeout
    while not event.wait(0.2):
        if not process.is_alive():
            raise RuntimeError(f"the generator exited before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what} ({timeout:.0f} s)")


def ms(value_s: float | None) -> float | None:
    return None if value_s is None or value_s != value_s else round(value_s * 1000, 2)


def run_burst(server: Server, backends: Backends, target: str, args, version: str = "1.6") -> dict:
    cfg = {"url": server.url, "chargers": args.chargers, "prefix": "SBSB", "connect_timeout": args.connect_timeout,
           "call_timeout": args.call_timeout, "warmup": args.warmup, "duration": args.duration,
           "client_cpus": args.client_cpus, "ocpp": version, "in_transaction": args.in_transaction}
    process, events, _, results = start_generator("burst", cfg)
    try:
        wait_event(events["ready"], args.connect_timeout + 90, "the chargers booted", process)
        wait_event(events["open"], args.warmup + 30, "the measured window", process)
        before = (time.monotonic(), proc_cpu_seconds(server.pid), backends.snapshot(), proc_cpu_seconds(process.pid),
                  system_cpu())
        profile_path = RESULTS / f"profile-{target}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.raw"
        profiler = _profile.record(server.pid, args.duration - 1, profile_path) if args.profile else None
        wait_event(events["close"], args.duration + 30, "the end of the window", process)
        after = (time.monotonic(), proc_cpu_seconds(server.pid), backends.snapshot(), proc_cpu_seconds(process.pid),
                 system_cpu())
    except RuntimeError as error:
        process.terminate()
        return {"error": str(error)}
    result = finish_generator(process, results, args.call_timeout + 60)
    if profiler is not None:
        profiler.wait(30)
        if profile_path.exists():
            print(f"   py-spy profile of the server during the window ({profile_path}):\n"
                  + _profile.top(profile_path, 30), flush=True)
    if "error" in result:
        return result
    counts = result["counts"]
    calls = counts["in_window"]
    wall = after[0] - before[0]
    server_cpu = after[1] - before[1]
    db_cpu = Backends.delta(before[2], after[2]) if backends.url else None
    all_rtts = result["rtts"]["Heartbeat"] + result["rtts"]["MeterValues"]
    out = {
        "chargers_booted": result["booted"], "connect_failures": result["failures"], "drops": result["drops"],
        "fenced": result["fenced"] > 0, "calls_in_window": calls, "window_s": round(result["window_s"], 3),
        "calls_per_s": round(calls / result["window_s"], 1) if result["window_s"] else None,
        "p50_ms": ms(percentile(all_rtts, 50)), "p99_ms": ms(percentile(all_rtts, 99)),
        "heartbeat_p99_ms": ms(percentile(result["rtts"]["Heartbeat"], 99)),
        "meter_values_p99_ms": ms(percentile(result["rtts"]["MeterValues"], 99)),
        "server_cpu_ms_per_call": round(server_cpu / calls * 1000, 4) if calls else None,
        "db_cpu_ms_per_call": round(db_cpu / calls * 1000, 4) if calls and db_cpu is not None else None,
        "server_cpu_pct": round(server_cpu / wall * 100, 1), "db_cpu_pct": round(db_cpu / wall * 100, 1)
        if db_cpu is not None else None,
        "generator_cpu_pct": round((after[3] - before[3]) / wall * 100, 1),
        "machine_busy_pct": round((after[4][0] - before[4][0]) / max(after[4][1] - before[4][1], 1e-9)
                                  * 100 * (os.cpu_count() or 1), 1),
        "callerrors": counts["callerror"], "timeouts": counts["timeout"],
        "meter_values_sent": counts["meter_sent"], "meter_values_acked": counts["meter_acked"],
        "meter_values_unanswered": counts["meter_unanswered"],
    }
    if target != REFERENCE:
        try:
            out["meter_rows"] = server.query(
                "SELECT COUNT(*) FROM stations_metersample WHERE station_id LIKE 'SBSB%'")[0][0]
            # Events of the burst's stations by kind (seq is unique: each stored event is numbered once).
            out["events"] = dict(server.query(
                "SELECT kind, COUNT(*) FROM csms_event WHERE station_id LIKE 'SBSB%' GROUP BY kind"))
        except Exception as error:  # noqa: BLE001
            out["meter_rows_error"] = str(error)
    return out


def run_storm(server: Server, backends: Backends, args, *, rate: float, prefix: str, hold: float,
              interval: float, label: str, version: str = "1.6") -> dict:
    n = args.storm_chargers
    start_at = time.time() + 2.0
    ramp_s = n / rate if rate > 0 else 0.0
    # At once (rate 0), the storm ends when every charger has booted or failed; the hold starts then.
    absorb_s = ramp_s if rate > 0 else args.connect_timeout + args.call_timeout + 1
    stop_at = start_at + absorb_s + hold
    cfg = {"url": server.url, "chargers": n, "first": 0, "prefix": prefix, "rate": rate, "start_at": start_at,
           "stop_at": stop_at, "interval": interval, "connect_timeout": args.connect_timeout,
           "call_timeout": args.call_timeout, "client_cpus": args.client_cpus, "retry": args.retry, "ocpp": version}
    rss_idle = proc_rss_kb(server.pid)
    process, events, counters, results = start_generator("storm", cfg)
    snap = lambda: (time.time(), proc_cpu_seconds(server.pid), backends.snapshot(),  # noqa: E731
                    proc_cpu_seconds(process.pid) if process.is_alive() else 0.0, system_cpu())
    listen_before = tcp_listen_counters()
    time.sleep(max(0.0, start_at - time.time()))
    first = snap()
    ramp_end = None
    peak_rss = rss_idle
    next_print = time.time()
    # Bounded: the ramp, the hold, and (registering, hold 0) what a connect and boot may take on top.
    deadline = stop_at + (args.connect_timeout + args.call_timeout if hold <= 0 else 0) + 1
    hold_until = stop_at
    while time.time() < deadline:
        time.sleep(0.5)
        row = dict(zip(COUNTERS, counters[:]))
        alive = server.process.poll() is None
        if alive:
            peak_rss = max(peak_rss, proc_rss_kb(server.pid))
        if ramp_end is None and (time.time() >= start_at + ramp_s if rate > 0 else row["settled"] >= n):
            ramp_end = snap()
            if rate <= 0:
                hold_until = min(stop_at, ramp_end[0] + hold)
        if time.time() >= next_print:
            next_print += 5
            print(f"   {label:>11} t={time.time() - start_at:5.1f}s open={row['open']:5d} booted={row['booted']:5d} "
                  f"failed={row['failed']:5d} dropped={row['dropped']:5d} calls={row['calls_ok']:6d} "
                  f"rss={proc_rss_kb(server.pid) / 1024 if alive else 0:.0f}MB", flush=True)
        if not alive or not process.is_alive():
            break
        if time.time() >= hold_until and (hold > 0 or row["settled"] >= n):
            break
    end = snap()
    listen_after = tcp_listen_counters()
    server_alive = server.process.poll() is None
    rss_end = proc_rss_kb(server.pid) if server_alive else 0
    tcp_end = established_to(server.port)
    events["report"].set()
    result = finish_generator(process, results, 120)
    if "error" in result:
        return result
    ramp_end = ramp_end or end
    row = result["row"]
    steady_from = ramp_end[0]
    steady = [rtt for sent, rtt in result["calls"] if sent >= steady_from]
    # Settled: from SETTLE_S after the ramp, when the process has worked off the storm's backlog.
    settled = [rtt for sent, rtt in result["calls"] if sent >= steady_from + SETTLE_S]
    all_calls = [rtt for _, rtt in result["calls"]]
    open_end = row["open"]
    ramp_wall = max(ramp_end[0] - first[0], 1e-9)
    return {
        "chargers": n, "rate": rate, "hold_s": hold, "interval_s": interval,
        "booted": len(result["boots"]), "open_at_end": open_end, "server_tcp_at_end": tcp_end,
        "failed": row["failed"], "failures": result["failures"], "dropped": row["dropped"], "drops": result["drops"],
        "fenced": row["fenced"] > 0, "fenced_chargers": row["fenced"], "server_alive": server_alive,
        "handshake_p50_ms": ms(percentile(result["handshakes"], 50)),
        "handshake_p99_ms": ms(percentile(result["handshakes"], 99)),
        "boot_p50_ms": ms(percentile(result["boots"], 50)), "boot_p99_ms": ms(percentile(result["boots"], 99)),
        "retries": row["retries"], "to_boot_p50_s": round(percentile(result["to_boot"], 50), 3),
        "to_boot_p99_s": round(percentile(result["to_boot"], 99), 3),
        "steady_calls": len(steady), "steady_p50_ms": ms(percentile(steady, 50)),
        "steady_p99_ms": ms(percentile(steady, 99)), "calls_timed_out": row["calls_timeout"],
        "settled_calls": len(settled), "settled_p99_ms": ms(percentile(settled, 99)),
        "all_calls": len(all_calls), "all_calls_p99_ms": ms(percentile(all_calls, 99)),
        "rss_idle_kb": rss_idle, "rss_end_kb": rss_end, "rss_peak_kb": peak_rss,
        "kb_per_connection": round((rss_end - rss_idle) / open_end, 1) if open_end and server_alive else None,
        "ramp_s": round(ramp_end[0] - first[0], 2),
        "server_cpu_pct_ramp": round((ramp_end[1] - first[1]) / ramp_wall * 100, 1),
        "server_cpu_s": round(end[1] - first[1], 2),
        "db_cpu_s": round(Backends.delta(first[2], end[2]), 2) if backends.url else None,
        "generator_cpu_pct_ramp": round((ramp_end[3] - first[3]) / ramp_wall * 100, 1),
        "generator_cpu_s": round(result["generator_cpu_s"], 2),
        "generator_lag_p99_ms": result["lag_p99_ms"], "generator_lag_max_ms": result["lag_max_ms"],
        # How fast the generator started the connections (500/s asked: it kept up if this is about that).
        "attempts_per_s": round(n / max(result["spawned_at"] - start_at, 1e-3), 1) if rate > 0 else None,
        # The whole machine's busy CPU (200 = both cores): above server + generator, others competed.
        "machine_busy_pct_ramp": round((ramp_end[4][0] - first[4][0]) / max(ramp_end[4][1] - first[4][1], 1e-9)
                                       * 100 * (os.cpu_count() or 1), 1),
        "listen_overflows": {k: listen_after.get(k, 0) - listen_before.get(k, 0) for k in listen_after},
    }


def relaunch(server: Server) -> None:
    """A fresh server process on the same (already migrated) database, on a new port."""
    server.stop()
    own = server.own_postgres
    server.own_postgres = False  # start() would drop and create it
    server.port = free_port()
    try:
        server.start()
    finally:
        server.own_postgres = own


def run_target(target: str, scenarios: list[str], args, run_index: int, version: str = "1.6") -> dict:
    spec = TARGETS[target]
    database_url = f"{args.postgres_url.rstrip('/')}/csms_bench_sbs_{os.getpid()}" if spec["postgres"] else None
    # The development default's log level (INFO: a line per OCPP message), as issue 12 measured;
    # --server-env LOG_LEVEL=WARNING for a production-like figure.
    env = {"OCPP_HEARTBEAT_INTERVAL": str(max(1, int(args.storm_interval))), "LOG_LEVEL": "INFO"}
    env.update(item.split("=", 1) for item in args.server_env)
    server = Server(database_url=database_url, env=env, cpus=args.server_cpus or None, asgi_server=spec["asgi"],
                    backlog=args.backlog, root=Path(args.server_root) if args.server_root and target != REFERENCE
                    else None)
    backends = Backends(database_url)
    out: dict = {"target": target, "ocpp": version, "column": column_key(target, version), "run": run_index,
                 "scenarios": {}, "stderr": []}
    print(f"## run {run_index} · {target}: {spec['title']}" + (f", OCPP {version}" if version != "1.6" else ""),
          flush=True)
    try:
        server.start()
        backends.start()
        out["pid"] = server.pid
        if "burst" in scenarios:
            out["scenarios"]["burst"] = result = run_burst(server, backends, target, args, version)
            print(f"   burst: {short(result, 'chargers_booted', 'calls_per_s', 'p50_ms', 'p99_ms', 'server_cpu_ms_per_call', 'db_cpu_ms_per_call', 'meter_values_acked', 'meter_rows', 'generator_cpu_pct', 'error')}", flush=True)
        if "storm-new" in scenarios or "storm-known" in scenarios:
            new = run_storm(server, backends, args, rate=args.rate, prefix="SBSS",
                            hold=args.hold if "storm-new" in scenarios else 0.0,
                            interval=args.storm_interval if "storm-new" in scenarios else 0.0,
                            label="storm-new" if "storm-new" in scenarios else "registering", version=version)
            if "storm-new" in scenarios:
                out["scenarios"]["storm-new"] = new
                print(f"   storm-new: {short(new, *STORM_SHORT)}", flush=True)
        if "storm-known" in scenarios:
            if args.known_same_process:
                deadline = time.monotonic() + 30
                while established_to(server.port) and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(2)
            else:
                out["stderr"] += stderr_digest(server.stderr_text())
                relaunch(server)
            known = run_storm(server, backends, args, rate=args.reconnect_rate, prefix="SBSS", hold=args.hold,
                              interval=args.storm_interval, label="storm-known", version=version)
            out["scenarios"]["storm-known"] = known
            print(f"   storm-known: {short(known, *STORM_SHORT)}", flush=True)
    except Exception as error:  # noqa: BLE001 - one target failing does not end the others
        out["error"] = f"{type(error).__name__}: {error}"
        print(f"   ERROR {out['error']}", flush=True)
    finally:
        backends.stop()
        if backends.error:
            out["backends_error"] = backends.error
        server.stop()
        out["stderr"] += stderr_digest(server.stderr_text())
        out["stderr_tail"] = server.stderr_text()[-2000:] if out.get("error") else ""
        server.cleanup()
    for line in out["stderr"][:6]:
        print(f"   server stderr: {line}", flush=True)
    return out


STORM_SHORT = ("booted", "failed", "dropped", "retries", "to_boot_p99_s", "fenced", "boot_p99_ms", "steady_p99_ms", "kb_per_connection",
               "server_cpu_pct_ramp", "generator_cpu_pct_ramp", "machine_busy_pct_ramp", "attempts_per_s",
               "generator_lag_p99_ms", "failures", "error")


def short(result: dict, *keys: str) -> str:
    return " ".join(f"{k}={result[k]}" for k in keys if result.get(k) not in (None, {}, []))


# --- The table -----------------------------------------------------------------------------------------

def median_of(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    return statistics.median(numbers) if numbers else None


def fmt_number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return ""
    return f" ({value / reference:.3g}x)"


def column_key(target: str, version: str) -> str:
    """A table column: a target served to chargers of one OCPP version (1.6's keep the bare target name)."""
    return target if version == "1.6" else f"{target}@{version}"


def column_parts(column: str) -> tuple[str, str]:
    target, _, version = column.partition("@")
    return target, version or "1.6"


def is_reference(column: str) -> bool:
    return column_parts(column)[0] == REFERENCE


def reference_of(column: str) -> str:
    """The reference column of the same OCPP version: each ratio is like for like."""
    return column_key(REFERENCE, column_parts(column)[1])


def column_title(column: str, versions: list[str]) -> str:
    target, version = column_parts(column)
    return TARGETS[target]["title"] + (f", OCPP {version}" if versions != ["1.6"] else "")


def build_table(results: list[dict], targets: list[str], scenarios: list[str], args) -> tuple[str, dict]:
    """``targets``: the table's columns (column_key: a target and an OCPP version)."""
    med: dict[str, dict[str, dict]] = {}
    for target in targets:
        for scenario in scenarios:
            runs = [r["scenarios"].get(scenario, {}) for r in results if r.get("column", r["target"]) == target]
            runs = [r for r in runs if r and "error" not in r]
            keys = {k for r in runs for k in r}
            m = {k: median_of([r.get(k) for r in runs]) for k in keys}
            m["runs"] = len(runs)
            m["fenced_runs"] = sum(1 for r in runs if r.get("fenced"))
            if scenario == "burst":
                m["persisted"] = [(r.get("meter_rows"), r.get("meter_values_acked"),
                                   (r.get("events") or {}).get("meter.update")) for r in runs]
            med.setdefault(target, {})[scenario] = m

    def ref(target: str, scenario: str) -> dict:
        return med.get(reference_of(target), {}).get(scenario, {})

    def cell(target: str, scenario: str, key: str, digits: int = 0, with_ratio: bool = False) -> str:
        m = med[target][scenario]
        if not m["runs"]:
            return "failed" if any(r.get("column", r["target"]) == target for r in results) else "-"
        text = fmt_number(m.get(key), digits)
        if with_ratio and not is_reference(target) and m.get(key) is not None:
            text += ratio(m.get(key), ref(target, scenario).get(key))
        return text

    rows: list[tuple[str, list[str]]] = []
    if "burst" in scenarios:
        title = f"{args.chargers} chargers, back-to-back calls" + (" in a transaction" if args.in_transaction else "")
        rows.append((f"{title}: calls/s", [cell(t, "burst", "calls_per_s", 0, True) for t in targets]))
        rows.append(("the same: p50 / p99 ms", [
            f"{cell(t, 'burst', 'p50_ms', 1)} / {cell(t, 'burst', 'p99_ms', 1)}" for t in targets]))

        def cpu_cell(t: str) -> str:
            m = med[t]["burst"]
            if not m["runs"]:
                return "-"
            text = f"{fmt_number(m.get('server_cpu_ms_per_call'), 3)} ms"
            if m.get("db_cpu_ms_per_call") is not None:
                text += f" + {fmt_number(m.get('db_cpu_ms_per_call'), 3)} ms in PostgreSQL"
            total = (m.get("server_cpu_ms_per_call") or 0) + (m.get("db_cpu_ms_per_call") or 0)
            if not is_reference(t):
                text += ratio(total, ref(t, "burst").get("server_cpu_ms_per_call"))
            return text

        rows.append(("the same: server CPU per call", [cpu_cell(t) for t in targets]))

        def persisted(t: str) -> str:
            pairs = med[t]["burst"].get("persisted") or []
            if is_reference(t) or not pairs:
                return "(not stored)" if is_reference(t) else "-"
            return ", ".join(f"{fmt_number(n) if n is not None else '?'} of {fmt_number(m)}"
                             + (f" ({fmt_number(e)} meter.update events)" if e is not None else "")
                             for n, m, e in pairs)

        rows.append(("the same: MeterValues persisted of acknowledged (each run)", [persisted(t) for t in targets]))
        rows.append(("the same: server / generator / whole machine CPU %", [
            f"{cell(t, 'burst', 'server_cpu_pct')} / {cell(t, 'burst', 'generator_cpu_pct')} / "
            f"{cell(t, 'burst', 'machine_busy_pct')}" for t in targets]))
    for scenario, what in (("storm-new", f"{args.storm_chargers:,} new chargers at {args.rate:g}/s"),
                           ("storm-known", f"{args.storm_chargers:,} known chargers reconnecting "
                                           + (f"at {args.reconnect_rate:g}/s" if args.reconnect_rate else "at once"))):
        if scenario not in scenarios:
            continue
        what += f", one call per {args.storm_interval:g} s"
        rows.append((f"{what}: booted / failed / dropped", [
            f"{cell(t, scenario, 'booted')} / {cell(t, scenario, 'failed')} / {cell(t, scenario, 'dropped')}"
            for t in targets]))
        rows.append(("the same: boot p99 / call p99 after the ramp / the same from 10 s after it, ms", [
            f"{cell(t, scenario, 'boot_p99_ms', 1)} / {cell(t, scenario, 'steady_p99_ms', 1)} / "
            f"{cell(t, scenario, 'settled_p99_ms', 1)}" for t in targets]))
        rows.append(("the same: first attempt to boot answered, p99 s" + (" (retries)" if args.retry else ""), [
            cell(t, scenario, "to_boot_p99_s", 2) + (f" ({cell(t, scenario, 'retries')})" if args.retry else "")
            for t in targets]))
        rows.append(("the same: server RSS per connection, KB", [
            cell(t, scenario, "kb_per_connection", 1) for t in targets]))
        rows.append(("the same: fenced itself (4010), runs", [
            f"{med[t][scenario]['fenced_runs']} of {med[t][scenario]['runs']}" if med[t][scenario]["runs"] else "-"
            for t in targets]))
        rows.append(("the same, during the ramp: server / generator / whole machine CPU %", [
            f"{cell(t, scenario, 'server_cpu_pct_ramp')} / {cell(t, scenario, 'generator_cpu_pct_ramp')} / "
            f"{cell(t, scenario, 'machine_busy_pct_ramp')}" for t in targets]))
    versions = sorted({column_parts(t)[1] for t in targets})
    header = "| load | " + " | ".join(column_title(t, versions) for t in targets) + " |"
    lines = [header, "|---" * (len(targets) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines), med


# --- Main ------------------------------------------------------------------------------------------------

QUICK = {"chargers": 20, "warmup": 1.0, "duration": 4.0, "storm_chargers": 500, "rate": 250.0, "hold": 6.0,
         "storm_interval": 3.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per target; the table gives medians")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK} unless given")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--targets", default="postgres,sqlite,reference",
                        help=f"comma list of {', '.join(TARGETS)} (default: postgres,sqlite,reference)")
    parser.add_argument("--uvicorn", action="store_true", help="add the CSMS on uvicorn + PostgreSQL")
    parser.add_argument("--ocpp", default="1.6",
                        help="the chargers' OCPP version: 1.6, 2.0.1, or both (1.6,2.0.1: every target with each, "
                             "each ratio to the reference of the same version; default 1.6)")
    parser.add_argument("--chargers", type=int, default=None, help="burst: chargers (default 100)")
    parser.add_argument("--in-transaction", action="store_true",
                        help="burst: each charger starts a transaction first (1.6 StartTransaction, 2.0.1 "
                             "TransactionEvent Started); its readings are then the transaction's (1.6 MeterValues "
                             "with its transactionId, 2.0.1 TransactionEvent Updated)")
    parser.add_argument("--warmup", type=float, default=None, help="burst: unmeasured seconds first (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="burst: measured seconds (default 20)")
    parser.add_argument("--storm-chargers", type=int, default=None, help="storms: chargers (default 10000)")
    parser.add_argument("--rate", type=float, default=None, help="storm-new: connections per second (default 500)")
    parser.add_argument("--reconnect-rate", type=float, default=0.0,
                        help="storm-known: connections per second (default 0: all at once)")
    parser.add_argument("--hold", type=float, default=None, help="storms: seconds held after the ramp (default 60)")
    parser.add_argument("--storm-interval", type=float, default=None,
                        help="storms: seconds between a charger's calls (default 30)")
    parser.add_argument("--known-same-process", action="store_true",
                        help="storm-known on the process of storm-new (default: a fresh process, same database)")
    parser.add_argument("--retry", action="store_true",
                        help="storms: a refused or failed handshake is tried again after the simulator's backoff "
                             "(honouring a 503's Retry-After) until the hold ends (default: one attempt)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="WebSocket open timeout (s)")
    parser.add_argument("--call-timeout", type=float, default=30.0, help="answer timeout of a call (s)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the server ('' = unpinned)")
    parser.add_argument("--client-cpus", default="1", help="CPU list for the load generator ('' = unpinned)")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server for the throwaway csms_bench_sbs_<pid> databases")
    parser.add_argument("--server-env", action="append", default=[], metavar="K=V", help="server environment")
    parser.add_argument("--server-root", default=None,
                        help="serve the CSMS from this checkout (e.g. a worktree of the code before a change)")
    parser.add_argument("--profile", action="store_true",
                        help="burst: record the server with py-spy during the window and print its top functions")
    parser.add_argument("--backlog", type=int, default=None, help="daphne's listen backlog (default: daphne's)")
    parser.add_argument("--json", default=None, help="raw results file (default bench/results/side_by_side-<time>.json)")
    args = parser.parse_args()
    defaults = {"chargers": 100, "warmup": 3.0, "duration": 20.0, "storm_chargers": 10000, "rate": 500.0,
                "hold": 60.0, "storm_interval": 30.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else value)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.uvicorn and "uvicorn" not in targets:
        targets.insert(targets.index(REFERENCE) if REFERENCE in targets else len(targets), "uvicorn")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}: choose from {list(TARGETS)}")
    versions = [v.strip() for v in args.ocpp.split(",") if v.strip()]
    if not versions or any(v not in VERSIONS for v in versions) or len(set(versions)) < len(versions):
        parser.error(f"--ocpp: one or more of {', '.join(VERSIONS)}, comma separated")
    columns = [column_key(t, v) for v in versions for t in targets]
    scenarios = [s for s in SCENARIOS if not args.only or s in args.only]
    if not (1 <= args.runs <= 10 and 1 <= args.chargers <= 5000 and 1 <= args.storm_chargers <= 19000
            and args.duration <= 600 and args.hold <= 600 and args.rate > 0 and args.reconnect_rate >= 0):
        parser.error("bounded runs only: runs 1..10, chargers 1..5000, storm-chargers 1..19000, "
                     "duration and hold <= 600 s, rate > 0")
    os.chdir(Path(__file__).resolve().parent.parent)
    available = os.sched_getaffinity(0)
    for option in ("server_cpus", "client_cpus"):
        if getattr(args, option) and not cpu_set(getattr(args, option)) <= available:
            print(f"# --{option.replace('_', '-')} {getattr(args, option)} is not among this machine's CPUs "
                  f"{sorted(available)}: unpinned", flush=True)
            setattr(args, option, "")
    nofile = raise_nofile()
    needed = args.storm_chargers + 200 if {"storm-new", "storm-known"} & set(scenarios) else args.chargers + 200
    if nofile < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile} and cannot be raised; {needed} are needed "
                         "(fewer --storm-chargers, or raise the hard limit)")
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_set(args.client_cpus))  # this process's sampling runs beside the generator
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    started = dt.datetime.now(dt.UTC)
    meta = {
        "started": started.isoformat(timespec="seconds"), "commit": commit + ("+uncommitted" if dirty else ""),
        "python": platform.python_version(), "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_before": os.getloadavg(), "rlimit_nofile": nofile,
        "args": vars(args), "targets": targets, "ocpp": versions, "scenarios": scenarios,
    }
    ocpp = f" ocpp={','.join(versions)}" if versions != ["1.6"] else ""
    print(f"# side_by_side: targets={targets}{ocpp} scenarios={scenarios} runs={args.runs} "
          f"server-cpus={args.server_cpus!r} "
          f"client-cpus={args.client_cpus!r} RLIMIT_NOFILE={nofile} commit={meta['commit']} "
          f"load={os.getloadavg()[0]:.2f}", flush=True)
    print("# PostgreSQL backends are not pinned (the PostgreSQL server is shared): their CPU is read from /proc "
          "and reported apart from the server process's.", flush=True)
    results = []
    for run_index in range(1, args.runs + 1):
        for version in versions:
            for target in targets:
                results.append(run_target(target, scenarios, args, run_index, version))
    table, medians = build_table(results, columns, scenarios, args)
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["load_average_after"] = os.getloadavg()
    print()
    print(f"Medians of {args.runs} run(s), {meta['started']} to {meta['finished']}, commit {meta['commit']}, "
          f"server on CPU {args.server_cpus or 'any'}, generator on CPU {args.client_cpus or 'any'}; "
          "ratios to the reference in parentheses.")
    print()
    print(table)
    print()
    path = Path(args.json) if args.json else Path("bench/results") / f"side_by_side-{started:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "runs": results, "medians": medians, "table": table}, indent=1,
                               default=str))
    print(f"raw results: {path}")
    failed = [r for r in results if r.get("error") or any("error" in s for s in r["scenarios"].values())]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
