"""How many OCPP 1.6 (or, with --ocpp 2.0.1, 2.0.1) chargers one daphne process holds, each heartbeating every 30 s.

What it does
  1. Starts ONE daphne process (``python -m daphne -b 127.0.0.1 -p <free port>
     csms.asgi:application``) on a fresh throwaway database: a SQLite file in a
     temporary directory, migrated first with ``manage.py migrate`` (or, with
     --database-url, a PostgreSQL database whose name contains "bench", which the
     script drops, creates, migrates and drops again). Server env: LOG_LEVEL=WARNING,
     OCPP_UNKNOWN_STATIONS=accept, DJANGO_DEBUG=false, OCPP_HEARTBEAT_INTERVAL=--interval,
     in-memory channel layer unless --redis-url is given, daphne defaults otherwise.
  2. In separate generator process(es) (--procs, default 1; multiprocessing), ramps
     --chargers WebSocket connections at --rate per second. Each is a raw OCPP-J client
     (``websockets``, no ocpp ChargePoint, no WebSocket pings, no compression): it
     connects to /ocpp/<id> with subprotocol ocpp1.6 (--ocpp 2.0.1: ocpp2.0.1), sends one
     BootNotification (in its version's form: bench/_frames.py), waits a random offset in
     [0, --interval) and then sends ``[2, uid, "Heartbeat", {}]`` every --interval seconds,
     waiting at most --timeout s for the answer.
  3. Holds the load for --duration seconds after the nominal end of the ramp
     (chargers/rate), then stops, kills the server and prints a summary.

Measured
  * connections attempted / established / failed (by cause) / dropped later;
  * handshake latency (TCP connect + HTTP upgrade + the consumer's connect(), which
    does three DB service calls) and BootNotification round trip;
  * Heartbeat round trip, all and in the steady state (heartbeats sent from
    ramp end + --settle until the end), sent / answered / timed out, and the worst
    10 s window;
  * server RSS (VmRSS), fds, threads, CPU% (utime+stime of the daphne process; 100% =
    one core) over the steady state, generator CPU% and event-loop lag, machine CPU
    busy, and the kernel's ListenOverflows/ListenDrops counters (accept queue full).

Run from the repository root:
    .venv/bin/python bench/chargers_held.py --chargers 2000
    .venv/bin/python bench/chargers_held.py --chargers 4000 --rate 200 --duration 120 --procs 1
    .venv/bin/python bench/chargers_held.py --chargers 2000 \
        --database-url postgres://postgres@127.0.0.1:5432/csms_bench
    .venv/bin/python bench/chargers_held.py --chargers 2000 --ocpp 2.0.1 [--asgi-server bare-ocpp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _frames import SUBPROTOCOLS, VERSIONS, boot  # noqa: E402
from _support import (  # noqa: E402
    Server,
    cpu_set,
    ocpp_call,
    percentile,
    proc_cpu_seconds,
    proc_fds,
    proc_rss_kb,
    proc_threads,
    raise_nofile,
    stderr_digest,
    summary_ms,
    system_cpu,
    tcp_listen_counters,
)

# Progress counters shared with the parent, one row per worker (no cross-process races).
INFLIGHT = [0]  # heartbeats awaiting their answer in this worker
COUNTERS = ("attempted", "established", "failed", "dropped", "hb_sent", "hb_ok", "hb_timeout")


# --- Generator (runs in worker processes) ---------------------------------------------------

class WorkerStats:
    def __init__(self) -> None:
        self.handshake: list[float] = []
        self.boot: list[float] = []
        self.heartbeats: list[tuple[float, float | None]] = []  # (sent at, wall clock; rtt or None)
        self.failures: dict[str, int] = {}
        self.drops: dict[str, int] = {}
        self.boot_failures: dict[str, int] = {}
        self.loop_lag: list[float] = []
        self.examples: dict[str, str] = {}




async def charger(index: int, cfg: dict, stats: WorkerStats, row: list, sem_ok: list) -> None:
    import websockets
    from websockets.asyncio.client import connect

    station_id = f"{cfg['prefix']}{index:05d}"
    row[0] += 1  # attempted
    started = time.perf_counter()
    try:
        ws = await connect(
            f"{cfg['url']}/ocpp/{station_id}", subprotocols=[SUBPROTOCOLS[cfg["ocpp"]]],
            open_timeout=cfg["connect_timeout"],
            ping_interval=None, compression=None, proxy=None, close_timeout=1, max_queue=4,
            user_agent_header=None,
        )
    except Exception as error:  # noqa: BLE001 - every cause is counted
        name = type(error).__name__
        status = getattr(getattr(error, "response", None), "status_code", None)
        key = f"{name}({status})" if status else name
        stats.failures[key] = stats.failures.get(key, 0) + 1
        if key not in stats.examples:
            cause = error.__cause__ or error.__context__
            stats.examples[key] = f"{error}" + (f" <- {type(cause).__name__}: {cause}" if cause else "")
        row[2] += 1
        return
    stats.handshake.append(time.perf_counter() - started)
    row[1] += 1
    sem_ok.append(ws)
    seq = 0
    try:
        try:
            rtt = await ocpp_call(ws, f"b{index}", "BootNotification", boot(cfg["ocpp"], "Raw"), cfg["timeout"])
            stats.boot.append(rtt)
        except (TimeoutError, RuntimeError) as error:
            stats.boot_failures[type(error).__name__] = stats.boot_failures.get(type(error).__name__, 0) + 1
        next_at = time.time() + random.uniform(0, cfg["interval"])
        while True:
            delay = next_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.time() >= cfg["stop_at"]:
                return
            seq += 1
            sent_at = time.time()
            row[4] += 1
            INFLIGHT[0] += 1
            try:
                rtt = await ocpp_call(ws, f"h{index}.{seq}", "Heartbeat", {}, cfg["timeout"])
                stats.heartbeats.append((sent_at, rtt))
                row[5] += 1
            except TimeoutError:
                stats.heartbeats.append((sent_at, None))
                row[6] += 1
            finally:
                INFLIGHT[0] -= 1
            next_at += cfg["interval"]
    except websockets.ConnectionClosed as error:
        code = error.rcvd.code if error.rcvd else "no-close-frame"
        key = f"ConnectionClosed({code})"
        stats.drops[key] = stats.drops.get(key, 0) + 1
        row[3] += 1
    except OSError as error:
        stats.drops[type(error).__name__] = stats.drops.get(type(error).__name__, 0) + 1
        row[3] += 1


async def lag_monitor(stats: WorkerStats, stop_at: float) -> None:
    loop = asyncio.get_running_loop()
    while time.time() < stop_at:
        before = loop.time()
        await asyncio.sleep(0.05)
        stats.loop_lag.append(loop.time() - before - 0.05)


async def generator_main(worker: int, cfg: dict, counters, result_queue) -> None:
    stats = WorkerStats()
    row = [0] * len(COUNTERS)
    sockets: list = []

    async def publish_counters() -> None:
        while True:
            for i, value in enumerate(row):
                counters[worker * len(COUNTERS) + i] = value
            await asyncio.sleep(0.5)

    publisher = asyncio.create_task(publish_counters())
    monitor = asyncio.create_task(lag_monitor(stats, cfg["stop_at"]))
    mine = list(range(worker, cfg["chargers"], cfg["procs"]))  # interleaved share
    tasks = []
    for n, index in enumerate(mine):
        target = cfg["start_at"] + (index / cfg["rate"])
        delay = target - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(charger(index, cfg, stats, row, sockets)))
    # Let the chargers run until the end, then give in-flight heartbeats their timeout.
    await asyncio.sleep(max(0.0, cfg["stop_at"] - time.time()))
    grace_end = time.time() + cfg["timeout"] + 1
    while time.time() < grace_end and INFLIGHT[0] > 0:
        await asyncio.sleep(0.2)
    cpu = os.times()
    for i, value in enumerate(row):
        counters[worker * len(COUNTERS) + i] = value
    result_queue.put(
        {
            "worker": worker,
            "handshake": stats.handshake,
            "boot": stats.boot,
            "heartbeats": stats.heartbeats,
            "failures": stats.failures,
            "examples": stats.examples,
            "drops": stats.drops,
            "boot_failures": stats.boot_failures,
            "loop_lag": stats.loop_lag,
            "cpu_s": cpu.user + cpu.system,
            "still_open": sum(1 for ws in sockets if ws.state.name == "OPEN"),
        }
    )
    # Wait until the parent has killed the server, then drop the sockets without a close handshake.
    while not cfg_done(cfg):
        await asyncio.sleep(0.2)
    publisher.cancel()
    monitor.cancel()
    for task in tasks:
        task.cancel()
    for ws in sockets:
        ws.transport.abort()


def cfg_done(cfg: dict) -> bool:
    return os.path.exists(cfg["done_flag"])


def generator_process(worker: int, cfg: dict, counters, result_queue) -> None:
    raise_nofile()
    asyncio.run(generator_main(worker, cfg, counters, result_queue))


# --- Orchestration (parent process) -------------------------------------------------------------

def fmt_ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def run(args: argparse.Namespace) -> int:
    nofile = raise_nofile()
    env = {"OCPP_HEARTBEAT_INTERVAL": str(int(args.interval))}
    if args.redis_url:
        env.update(REDIS_URL=args.redis_url, CHANNEL_PREFIX=f"bench-held-{os.getpid()}")
    server = Server(database_url=args.database_url, env=env, asgi_server=args.asgi_server,
                    root=Path(args.server_root).resolve() if args.server_root else None, cpus=args.server_cpus)
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_set(args.client_cpus))  # the generators inherit it
    print(f"# chargers_held: chargers={args.chargers} rate={args.rate}/s interval={args.interval}s "
          f"duration={args.duration}s procs={args.procs} timeout={args.timeout}s "
          + (f"ocpp={args.ocpp} " if args.ocpp != "1.6" else "") +
          f"db={'postgres' if args.database_url else 'sqlite'} layer={'redis' if args.redis_url else 'in-memory'} "
          f"RLIMIT_NOFILE={nofile}", flush=True)
    results: list[dict] = []
    try:
        server.start()
        pid = server.pid
        print(f"# daphne pid={pid} {server.url} tmp={server.tmp}", flush=True)
        ramp_s = args.chargers / args.rate
        start_at = time.time() + 1.0
        stop_at = start_at + ramp_s + args.duration
        steady_from = start_at + ramp_s + args.settle
        cfg = {
            "url": server.url, "chargers": args.chargers, "rate": args.rate, "interval": args.interval,
            "timeout": args.timeout, "connect_timeout": args.connect_timeout, "procs": args.procs,
            "start_at": start_at, "stop_at": stop_at, "prefix": args.prefix,
            "done_flag": str(server.tmp / "done"), "ocpp": args.ocpp,
        }
        counters = mp.Array("q", len(COUNTERS) * args.procs, lock=False)
        result_queue: mp.Queue = mp.Queue()
        ctx_workers = [mp.Process(target=generator_process, args=(w, cfg, counters, result_queue), daemon=True)
                       for w in range(args.procs)]
        baseline_rss = proc_rss_kb(pid)
        listen_before = tcp_listen_counters()
        for worker in ctx_workers:
            worker.start()

        # Sample the server every --sample seconds; remember the steady-state window.
        timeline = []
        prev = (time.time(), proc_cpu_seconds(pid), system_cpu(), sum(proc_cpu_seconds(w.pid) for w in ctx_workers))
        steady_start = steady_end = None
        peak_rss = baseline_rss
        print(f"{'t(s)':>6} {'estab':>6} {'fail':>5} {'drop':>5} {'hb_sent':>8} {'hb_ok':>8} {'hb_to':>6} "
              f"{'srvCPU%':>8} {'genCPU%':>8} {'sysCPU%':>8} {'RSS MB':>7} {'fds':>6}", flush=True)
        while time.time() < stop_at:
            now = time.time()
            wake = min(now + args.sample, stop_at)
            if steady_start is None and wake > steady_from >= now:
                wake = steady_from
            time.sleep(max(0.0, wake - now))
            now = time.time()
            cpu = proc_cpu_seconds(pid)
            sysc = system_cpu()
            gen = sum(proc_cpu_seconds(w.pid) for w in ctx_workers if w.is_alive())
            rss = proc_rss_kb(pid)
            peak_rss = max(peak_rss, rss)
            wall = now - prev[0]
            totals = [sum(counters[w * len(COUNTERS) + i] for w in range(args.procs)) for i in range(len(COUNTERS))]
            sample = {
                "t": now - start_at, "cpu": (cpu - prev[1]) / wall * 100, "gen": (gen - prev[3]) / wall * 100,
                "sys": (sysc[0] - prev[2][0]) / max(sysc[1] - prev[2][1], 1e-9) * 100 * os.cpu_count(),
                "rss": rss, "fds": proc_fds(pid), **dict(zip(COUNTERS, totals)),
            }
            timeline.append(sample)
            print(f"{sample['t']:6.0f} {sample['established']:6d} {sample['failed']:5d} {sample['dropped']:5d} "
                  f"{sample['hb_sent']:8d} {sample['hb_ok']:8d} {sample['hb_timeout']:6d} {sample['cpu']:8.1f} "
                  f"{sample['gen']:8.1f} {sample['sys']:8.1f} {rss / 1024:7.1f} {sample['fds']:6d}", flush=True)
            if steady_start is None and now >= steady_from - 0.05:
                steady_start = (now, cpu, sysc)
            prev = (now, cpu, sysc, gen)
        steady_end = (time.time(), proc_cpu_seconds(pid), system_cpu())
        rss_end = proc_rss_kb(pid)
        threads_end = proc_threads(pid)
        fds_end = proc_fds(pid)
        for _ in ctx_workers:
            results.append(result_queue.get(timeout=args.timeout + 60))
        listen_after = tcp_listen_counters()
        try:
            db_rows = server.query("SELECT COUNT(*), SUM(CASE WHEN is_online THEN 1 ELSE 0 END) FROM stations_station")[0]
        except Exception as error:  # noqa: BLE001
            db_rows = (f"query failed: {error}", None)
        server_alive = server.process.poll() is None
    finally:
        (server.tmp / "done").touch()
        server.stop()
        stderr = server.stderr_text()
        if args.save_stderr and stderr:
            Path(args.save_stderr).write_text(stderr)
        for worker in locals().get("ctx_workers", []):
            worker.join(10)
            if worker.is_alive():
                worker.terminate()
        server.cleanup()

    # --- Summary ------------------------------------------------------------------------
    handshake = [x for r in results for x in r["handshake"]]
    boot = [x for r in results for x in r["boot"]]
    heartbeats = [x for r in results for x in r["heartbeats"]]
    lag = [x for r in results for x in r["loop_lag"]]
    failures: dict[str, int] = {}
    drops: dict[str, int] = {}
    boot_failures: dict[str, int] = {}
    for r in results:
        for src, dst in ((r["failures"], failures), (r["drops"], drops), (r["boot_failures"], boot_failures)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
    hb_all = [rtt for _, rtt in heartbeats if rtt is not None]
    steady = [(t, rtt) for t, rtt in heartbeats if t >= steady_from]
    hb_steady = [rtt for _, rtt in steady if rtt is not None]
    hb_timeouts = sum(1 for _, rtt in heartbeats if rtt is None)
    steady_timeouts = sum(1 for _, rtt in steady if rtt is None)
    established = len(handshake)
    failed = sum(failures.values())
    still_open = sum(r["still_open"] for r in results)
    steady_wall = steady_end[0] - steady_start[0] if steady_start else float("nan")
    steady_cpu = (steady_end[1] - steady_start[1]) / steady_wall * 100 if steady_start else float("nan")
    steady_sys = ((steady_end[2][0] - steady_start[2][0]) / max(steady_end[2][1] - steady_start[2][1], 1e-9)
                  * 100 * os.cpu_count()) if steady_start else float("nan")
    gen_cpu_s = sum(r["cpu_s"] for r in results)
    # Worst 10 s window of heartbeat RTT (by send time), anywhere in the run.
    windows: dict[int, list[float]] = {}
    for t, rtt in heartbeats:
        windows.setdefault(int((t - start_at) // 10), []).append(rtt if rtt is not None else args.timeout)
    worst = max(windows.items(), key=lambda kv: percentile(kv[1], 99)) if windows else None
    ramp_cpu = [s["cpu"] for s in timeline if s["t"] <= ramp_s]
    steady_samples = [s for s in timeline if s["t"] >= ramp_s + args.settle]

    print()
    print("=" * 78)
    print(f"SUMMARY chargers_held  chargers={args.chargers} rate={args.rate}/s interval={args.interval}s "
          + (f"ocpp={args.ocpp} " if args.ocpp != "1.6" else "") +
          f"hold={args.duration}s procs={args.procs} db={'postgres' if args.database_url else 'sqlite'}"
          f" layer={'redis' if args.redis_url else 'in-memory'}")
    print("-" * 78)
    print(f"connections   attempted={args.chargers} established={established} failed={failed} "
          f"dropped-later={sum(drops.values())} open-at-end={still_open}")
    if failures:
        print(f"  failures by cause: {failures}")
        examples = {k: v for r in results for k, v in r["examples"].items()}
        for key, text in examples.items():
            print(f"  e.g. {key}: {text[:200]}")
    if drops:
        print(f"  drops by cause:    {drops}")
    print(f"handshake     {summary_ms(handshake)}")
    print(f"boot RTT      {summary_ms(boot)}" + (f"  failures={boot_failures}" if boot_failures else ""))
    print(f"heartbeat all sent={len(heartbeats)} answered={len(hb_all)} timed-out(>{args.timeout:g}s)={hb_timeouts}")
    print(f"              {summary_ms(hb_all)}")
    print(f"heartbeat steady (sent >= ramp end + {args.settle:g}s) sent={len(steady)} answered={len(hb_steady)} "
          f"timed-out={steady_timeouts}")
    print(f"              {summary_ms(hb_steady)}")
    if worst:
        print(f"worst 10s window t={worst[0] * 10}-{worst[0] * 10 + 10}s n={len(worst[1])} "
              f"p99={fmt_ms(percentile(worst[1], 99))} ms max={fmt_ms(max(worst[1]))} ms (timeouts counted as {args.timeout:g}s)")
    print(f"server        RSS baseline={baseline_rss / 1024:.1f} MB end={rss_end / 1024:.1f} MB peak={peak_rss / 1024:.1f} MB "
          f"(+{(rss_end - baseline_rss) / max(established, 1):.1f} KB/connection) threads={threads_end} fds={fds_end}")
    print(f"server CPU    steady={steady_cpu:.1f}% (of one core, over {steady_wall:.0f}s) "
          f"ramp avg={sum(ramp_cpu) / max(len(ramp_cpu), 1):.1f}% ramp max={max(ramp_cpu, default=float('nan')):.1f}% "
          f"steady max sample={max((s['cpu'] for s in steady_samples), default=float('nan')):.1f}%")
    print(f"machine CPU   steady busy={steady_sys:.1f}% of {os.cpu_count() * 100}% ; generator CPU total={gen_cpu_s:.1f}s "
          f"over {stop_at - start_at:.0f}s ; generator loop lag p99={fmt_ms(percentile(lag, 99))} ms max={fmt_ms(max(lag, default=0))} ms")
    print(f"listen queue  ListenOverflows +{listen_after.get('ListenOverflows', 0) - listen_before.get('ListenOverflows', 0)} "
          f"ListenDrops +{listen_after.get('ListenDrops', 0) - listen_before.get('ListenDrops', 0)} (system-wide)")
    print(f"database      stations registered={db_rows[0]} is_online={db_rows[1]} vs sockets open at end={still_open}")
    print(f"server alive at end: {server_alive}")
    digest = stderr_digest(stderr)
    print(f"server stderr: {len(stderr.splitlines())} lines" + (":" if digest else ""))
    for line in digest:
        print("   " + line)
    print("=" * 78)
    if args.dump_json:
        Path(args.dump_json).write_text(json.dumps({
            "args": vars(args), "start_at": start_at, "ramp_s": ramp_s, "timeline": timeline,
            "heartbeats": [(round(t - start_at, 3), rtt) for t, rtt in heartbeats],
            "handshake": handshake, "boot": boot,
        }))
    ok = failed == 0 and hb_timeouts == 0 and not drops
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="new connections per second (ramp)")
    parser.add_argument("--interval", type=float, default=30.0, help="heartbeat interval (s)")
    parser.add_argument("--duration", type=float, default=120.0, help="hold time after the nominal ramp end (s)")
    parser.add_argument("--settle", type=float, default=10.0, help="steady state starts this long after the ramp (s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="heartbeat / boot answer timeout (s)")
    parser.add_argument("--connect-timeout", type=float, default=15.0, help="WebSocket open timeout (s)")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    parser.add_argument("--sample", type=float, default=5.0, help="server sampling period (s)")
    parser.add_argument("--prefix", default="BENCH", help="station id prefix")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL of a database named *bench* (dropped and created); default: temp SQLite")
    parser.add_argument("--server-root", default=None, help="serve this checkout (default: this one), to compare")
    parser.add_argument("--server-cpus", default=None, help="pin the server (taskset -c), e.g. 0")
    parser.add_argument("--asgi-server", default="daphne", choices=["daphne", "uvicorn", "bare-ocpp"],
                        help="bare-ocpp: the reference server (the ocpp library alone, bench/reference_ocpp.py)")
    parser.add_argument("--client-cpus", default=None, help="pin the load generators, e.g. 1")
    parser.add_argument("--dump-json", default=None, help="write the raw samples to this JSON file")
    parser.add_argument("--save-stderr", default=None, help="copy the server's stderr to this file")
    parser.add_argument("--ocpp", default="1.6", choices=VERSIONS,
                        help="the chargers' OCPP version (default 1.6): subprotocol and BootNotification's form")
    parser.add_argument("--redis-url", default=None, help="use the Redis channel layer (e.g. redis://127.0.0.1:6379/12)")
    args = parser.parse_args()
    if args.chargers < 1 or args.chargers > 30000 or args.duration > 900 or args.procs < 1:
        parser.error("bounded runs only: 1..30000 chargers, duration <= 900 s, procs >= 1")
    os.chdir(Path(__file__).resolve().parent.parent)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
