"""A connection storm: N OCPP 1.6 chargers open their sockets within a few seconds.

What it does
  1. Starts ONE server process (daphne by default, ``--asgi-server uvicorn`` for
     reference) on a fresh throwaway database, as bench/chargers_held.py does
     (bench/_support.Server: a migrated SQLite file in a temporary directory, or a
     PostgreSQL database named *bench* with --database-url; LOG_LEVEL=WARNING,
     OCPP_UNKNOWN_STATIONS=accept, DJANGO_DEBUG=false). ``--server-root`` serves
     another checkout of the code (e.g. the code before a change) with the same
     load generator. ``--server-env K=V`` adds to the server's environment.
     The server is pinned to ``--server-cpus`` and the generator to
     ``--client-cpus`` (taskset / sched_setaffinity), so that they do not compete
     for one core.
  2. One generator process opens --chargers WebSockets evenly over --window
     seconds. Each charger is a raw OCPP-J client (``websockets``, no pings, no
     compression): it connects to /ocpp/<id> with subprotocol ocpp1.6, sends one
     BootNotification (answer awaited --boot-timeout s), then a Heartbeat every
     --interval s. A failed handshake or a lost socket is retried after the
     simulator's reconnect backoff (``simulator.v16.ReconnectBackoff``:
     jittered exponential, honouring a 503's Retry-After), as ``make demo``'s
     charger does; ``--no-retry`` gives each charger one attempt.
  3. Every --sample s the parent reads how many stations the database shows
     online and how many sockets the chargers hold open. The run ends --settle s
     after every charger has booted on an open socket, or after --max-duration.

Measured
  * connected: chargers whose socket is open and booted at the end; time from the
    storm's start until the last of them booted ("all connected");
  * boot: from a charger's first attempt until its BootNotification was answered
    (retries included) p50/p99, and the BootNotification round trip itself;
  * refusals: HTTP 503 (with Retry-After), other HTTP statuses (403), handshakes
    the server dropped or that timed out, sockets lost after opening;
  * ghosts: max over the samples of (stations online in the database - sockets
    the chargers hold open), and for how many seconds it was above 0. The
    chargers count a socket once their event loop has read the server's 101, so
    this lags by up to the generator's loop lag (printed); the same against the
    server's ESTABLISHED TCP connections (/proc/net/tcp, the kernel's view, no
    lag: a TCP connection still in its handshake counts as open, so this one
    can only understate ghosts);
  * server CPU (100 % = one core) and the distinct warnings in its stderr.

Run from the repository root:
    .venv/bin/python bench/storm.py --chargers 2000 --window 5
    .venv/bin/python bench/storm.py --chargers 2000 --window 5 --server-root /tmp/base   # the code before
    .venv/bin/python bench/storm.py --chargers 2000 --window 5 --no-retry
    .venv/bin/python bench/storm.py --chargers 2000 --window 5 --server-env WS_MAX_PENDING_HANDSHAKES=50
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

from _support import (  # noqa: E402
    Server,
    cpu_set,
    ocpp_call,
    percentile,
    proc_cpu_seconds,
    raise_nofile,
    stderr_digest,
    tcp_listen_counters,
)

# Counters the generator publishes for the parent's samples.
COUNTERS = ("attempts", "open", "booted_now", "refused_503", "refused_other", "failed", "lost", "boot_timeouts",
            "lag_max_ms")


def established_to(port: int) -> int:
    """Server-side TCP connections of ``port`` in state ESTABLISHED (the kernel's view, no client lag)."""
    suffix = f":{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split(None, 4)
            if fields[3] == "01" and fields[1].endswith(suffix):
                count += 1
    return count




# --- Generator (a separate process) ------------------------------------------------------------



class Charger:
    def __init__(self, index: int) -> None:
        self.index = index
        self.first_attempt = 0.0
        self.booted_at: float | None = None  # wall clock of the last successful boot
        self.boot_rtt: float | None = None
        self.open = False
        self.attempts = 0


async def run_charger(charger: Charger, cfg: dict, row: list, failures: dict, refusal_times: list) -> None:
    import websockets
    from websockets.asyncio.client import connect

    from simulator.v16 import ReconnectBackoff, retry_after

    backoff = ReconnectBackoff()
    url = f"{cfg['url']}/ocpp/{cfg['prefix']}{charger.index:05d}"
    charger.first_attempt = time.time()
    while time.time() < cfg["stop_at"]:
        charger.attempts += 1
        row[0] += 1
        server_wait = None
        began = time.perf_counter()
        try:
            ws = await connect(url, subprotocols=["ocpp1.6"], open_timeout=cfg["connect_timeout"], ping_interval=None,
                               compression=None, proxy=None, close_timeout=1, max_queue=4)
        except websockets.InvalidStatus as refusal:
            status = refusal.response.status_code
            row[3 if status == 503 else 4] += 1
            if status == 503:
                refusal_times.append(time.perf_counter() - began)
            failures[f"HTTP {status}"] = failures.get(f"HTTP {status}", 0) + 1
            server_wait = retry_after(refusal)
        except (OSError, TimeoutError, websockets.WebSocketException) as error:
            row[5] += 1
            cause = error.__cause__ or error.__context__
            key = type(error).__name__ + (f"<-{type(cause).__name__}" if cause else "")
            failures[key] = failures.get(key, 0) + 1
        else:
            await hold(ws, charger, cfg, row, backoff)
        if not cfg["retry"]:
            return
        await asyncio.sleep(backoff.next_delay(server_wait))


async def hold(ws, charger: Charger, cfg: dict, row: list, backoff) -> None:
    import websockets

    charger.open = True
    row[1] += 1
    booted = False
    try:
        try:
            charger.boot_rtt = await ocpp_call(ws, f"b{charger.index}.{charger.attempts}", "BootNotification",
                                               {"chargePointVendor": "Bench", "chargePointModel": "Storm"},
                                               cfg["boot_timeout"], callerror_ok=True)
        except TimeoutError:
            row[7] += 1
            return  # as the simulator does: a boot that is not answered ends the connection
        charger.booted_at = time.time()
        booted = True
        row[2] += 1
        backoff.reset()
        next_at = time.time() + random.uniform(0, cfg["interval"])
        while True:
            await asyncio.sleep(max(0.0, min(next_at, cfg["stop_at"]) - time.time()))
            if time.time() >= cfg["stop_at"]:
                await asyncio.sleep(3600)  # held open until the parent ends the run
            await ocpp_call(ws, f"h{charger.index}.{int(next_at)}", "Heartbeat", {}, cfg["boot_timeout"],
                            callerror_ok=True)
            next_at += cfg["interval"]
    except (websockets.ConnectionClosed, OSError, TimeoutError):
        row[6] += 1
    finally:
        charger.open = False
        row[1] -= 1
        if booted:
            row[2] -= 1
        ws.transport.abort()


async def generator_main(cfg: dict, counters, result_queue) -> None:
    row = [0] * len(COUNTERS)
    failures: dict[str, int] = {}
    refusal_times: list[float] = []  # from the attempt to its 503
    chargers = [Charger(i) for i in range(cfg["chargers"])]

    async def publish() -> None:
        while True:
            counters[:] = row
            await asyncio.sleep(0.05)

    async def lag_monitor() -> None:  # how late the generator's own loop runs (its counts lag as much)
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            row[8] = max(row[8], int((loop.time() - before - 0.05) * 1000))

    publisher = asyncio.create_task(publish())
    monitor = asyncio.create_task(lag_monitor())
    tasks = []
    for charger in chargers:
        delay = cfg["start_at"] + charger.index * cfg["window"] / cfg["chargers"] - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(run_charger(charger, cfg, row, failures, refusal_times)))
    while not os.path.exists(cfg["report_flag"]):
        await asyncio.sleep(0.1)
    counters[:] = row
    result_queue.put({
        "failures": failures,
        "refusal_times": refusal_times,
        "chargers": [(c.first_attempt, c.booted_at, c.boot_rtt, c.open, c.attempts) for c in chargers],
    })
    while not os.path.exists(cfg["done_flag"]):
        await asyncio.sleep(0.1)
    publisher.cancel()
    monitor.cancel()
    for task in tasks:
        task.cancel()


def generator_process(cfg: dict, counters, result_queue) -> None:
    if cfg["client_cpus"]:
        os.sched_setaffinity(0, cpu_set(cfg["client_cpus"]))
    raise_nofile()
    asyncio.run(generator_main(cfg, counters, result_queue))


# --- Orchestration ------------------------------------------------------------------------------

def online_in_db(server: Server) -> int:
    return server.query("SELECT COUNT(*) FROM stations_station WHERE is_online")[0][0]


def run(args: argparse.Namespace) -> dict:
    nofile = raise_nofile()
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_set(args.client_cpus))  # the parent's sampling too
    env = dict(item.split("=", 1) for item in args.server_env)
    env.setdefault("OCPP_HEARTBEAT_INTERVAL", str(int(args.interval)))
    if args.redis_url:
        env.update(REDIS_URL=args.redis_url, CHANNEL_PREFIX=f"bench-storm-{os.getpid()}")
    root = Path(args.server_root).resolve() if args.server_root else None
    server = Server(database_url=args.database_url, env=env, root=root, cpus=args.server_cpus,
                    asgi_server=args.asgi_server, backlog=args.backlog)
    label = (f"chargers={args.chargers} window={args.window}s retry={not args.no_retry} server={args.asgi_server} "
             f"root={root or 'this checkout'} env={env} db={'postgres' if args.database_url else 'sqlite'} "
             f"layer={'redis' if args.redis_url else 'in-memory'} server-cpus={args.server_cpus} backlog={args.backlog} "
             f"client-cpus={args.client_cpus} RLIMIT_NOFILE={nofile}")
    print(f"# storm: {label}", flush=True)
    samples: list[dict] = []
    result: dict = {}
    try:
        server.start()
        print(f"# {args.asgi_server} pid={server.pid} {server.url} tmp={server.tmp}", flush=True)
        start_at = time.time() + 1.0
        cfg = {
            "url": server.url, "chargers": args.chargers, "window": args.window, "start_at": start_at,
            "stop_at": start_at + args.max_duration, "interval": args.interval, "boot_timeout": args.boot_timeout,
            "connect_timeout": args.connect_timeout, "retry": not args.no_retry, "prefix": args.prefix,
            "client_cpus": args.client_cpus,
            "report_flag": str(server.tmp / "report"), "done_flag": str(server.tmp / "done"),
        }
        counters = mp.Array("q", len(COUNTERS), lock=False)
        results: mp.Queue = mp.Queue()
        generator = mp.Process(target=generator_process, args=(cfg, counters, results), daemon=True)
        generator.start()
        cpu_before, wall_before = proc_cpu_seconds(server.pid), time.time()
        listen_before = tcp_listen_counters()
        all_booted_since = None
        next_print = start_at
        print(f"{'t(s)':>6} {'open':>5} {'booted':>6} {'503':>6} {'other':>5} {'failed':>6} {'lost':>5} "
              f"{'db online':>9} {'tcp':>5} {'ghost':>5} {'g.tcp':>5} {'srvCPU%':>7}", flush=True)
        prev_cpu, prev_wall = cpu_before, wall_before
        while True:
            time.sleep(args.sample)
            now = time.time()
            try:
                db_online = online_in_db(server)
                tcp = established_to(server.port)
            except Exception as error:  # noqa: BLE001 - a locked database is one missed sample
                print(f"# (sample skipped: {error})", flush=True)
                continue
            row = dict(zip(COUNTERS, counters[:]))
            cpu = proc_cpu_seconds(server.pid)
            sample = {"t": now - start_at, **row, "db_online": db_online, "ghost": db_online - row["open"],
                      "tcp": tcp, "ghost_tcp": db_online - tcp, "cpu": (cpu - prev_cpu) / (now - prev_wall) * 100}
            prev_cpu, prev_wall = cpu, now
            samples.append(sample)
            if now >= next_print:
                next_print += args.print_every
                print(f"{sample['t']:6.1f} {row['open']:5d} {row['booted_now']:6d} {row['refused_503']:6d} "
                      f"{row['refused_other']:5d} {row['failed']:6d} {row['lost']:5d} {db_online:9d} {tcp:5d} "
                      f"{sample['ghost']:5d} {sample['ghost_tcp']:5d} {sample['cpu']:7.1f}", flush=True)
            if row["booted_now"] == args.chargers and row["open"] == args.chargers:
                all_booted_since = all_booted_since or now
                if now - all_booted_since >= args.settle:
                    break
            else:
                all_booted_since = None
            if now > cfg["stop_at"] or not generator.is_alive():
                break
        (server.tmp / "report").touch()
        result = results.get(timeout=60)
        final_db = online_in_db(server)
        listen_after = tcp_listen_counters()
        overflows = {k: listen_after.get(k, 0) - listen_before.get(k, 0) for k in listen_after}
        server_cpu = (proc_cpu_seconds(server.pid) - cpu_before) / (time.time() - wall_before) * 100
        server_alive = server.process.poll() is None
    finally:
        (server.tmp / "done").touch()
        server.stop()
        stderr = server.stderr_text()
        if "generator" in locals():
            generator.join(15)
            if generator.is_alive():
                generator.terminate()
        server.cleanup()
    return summarize(args, label, start_at, samples, result, final_db, server_cpu, server_alive, stderr, overflows)


def summarize(args, label, start_at, samples, result, final_db, server_cpu, server_alive, stderr, overflows) -> dict:
    chargers = result["chargers"]
    connected = [c for c in chargers if c[3] and c[1] is not None]
    to_boot = [c[1] - c[0] for c in chargers if c[1] is not None]
    rtts = [c[2] for c in chargers if c[2] is not None]
    last = max((c[1] for c in connected), default=None)
    ghosts = [s["ghost"] for s in samples]
    ghost_seconds = sum(args.sample for g in ghosts if g > 0)
    ghosts_tcp = [s["ghost_tcp"] for s in samples]
    final = samples[-1] if samples else {}
    summary = {
        "connected": len(connected),
        "all_connected_s": (last - start_at) if last and len(connected) == args.chargers else None,
        "boot_p50_s": percentile(to_boot, 50), "boot_p99_s": percentile(to_boot, 99),
        "boot_rtt_p50_ms": percentile(rtts, 50) * 1000, "boot_rtt_p99_ms": percentile(rtts, 99) * 1000,
        "refused_503": final.get("refused_503", 0), "refused_other": final.get("refused_other", 0),
        "refusal_p50_ms": percentile(result["refusal_times"], 50) * 1000,
        "refusal_p99_ms": percentile(result["refusal_times"], 99) * 1000,
        "failed": final.get("failed", 0), "lost": final.get("lost", 0),
        "boot_timeouts": final.get("boot_timeouts", 0),
        "attempts_p50": percentile([c[4] for c in chargers], 50),
        "attempts_max": max(c[4] for c in chargers),
        "ghost_max": max(ghosts, default=0), "ghost_seconds": ghost_seconds,
        "ghost_tcp_max": max(ghosts_tcp, default=0),
        "ghost_tcp_seconds": sum(args.sample for g in ghosts_tcp if g > 0),
        "generator_lag_max_ms": final.get("lag_max_ms", 0),
        "db_online_end": final_db, "open_end": final.get("open", 0),
        "server_cpu_pct": server_cpu, "server_alive": server_alive,
    }
    print()
    print("=" * 78)
    print(f"SUMMARY storm  {label}")
    print("-" * 78)
    all_s = summary["all_connected_s"]
    print(f"connected     {summary['connected']} of {args.chargers} open and booted at the end; all connected after "
          + (f"{all_s:.1f} s" if all_s is not None else "- (not all)"))
    print(f"boot          from first attempt p50={summary['boot_p50_s']:.2f} s p99={summary['boot_p99_s']:.2f} s ; "
          f"BootNotification RTT p50={summary['boot_rtt_p50_ms']:.1f} ms p99={summary['boot_rtt_p99_ms']:.1f} ms")
    print(f"refusals      503={summary['refused_503']} other-HTTP={summary['refused_other']} "
          f"dropped/timed-out={summary['failed']} lost-after-open={summary['lost']} "
          f"boot-timeouts={summary['boot_timeouts']} ; attempts per charger p50={summary['attempts_p50']} "
          f"max={summary['attempts_max']}")
    print(f"  by cause:   {result['failures']} ; a 503 took p50={summary['refusal_p50_ms']:.1f} ms "
          f"p99={summary['refusal_p99_ms']:.1f} ms from the attempt")
    print(f"ghosts        max(online in DB - sockets the chargers hold open)={summary['ghost_max']} (above 0 for "
          f"{ghost_seconds:.1f} s; the chargers' count lags by up to their loop lag, max "
          f"{summary['generator_lag_max_ms']} ms)")
    print(f"              max(online in DB - server TCP connections established)={summary['ghost_tcp_max']} (above 0 "
          f"for {summary['ghost_tcp_seconds']:.1f} s) ; at the end DB online={final_db} sockets open={summary['open_end']}")
    print(f"server        CPU {server_cpu:.1f} % of one core over the run; alive at end: {server_alive} ; "
          f"listen queue (system-wide) {overflows}")
    digest = stderr_digest(stderr)
    print(f"server stderr: {len(stderr.splitlines())} lines" + (":" if digest else ""))
    for line in digest:
        print("   " + line)
    print("=" * 78)
    if args.dump_json:
        Path(args.dump_json).write_text(json.dumps({"summary": summary, "samples": samples}))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--window", type=float, default=5.0, help="all chargers open within this many seconds")
    parser.add_argument("--no-retry", action="store_true", help="one attempt per charger (no reconnect)")
    parser.add_argument("--max-duration", type=float, default=150.0, help="end the run after this long (s)")
    parser.add_argument("--settle", type=float, default=5.0, help="hold this long once all are connected (s)")
    parser.add_argument("--interval", type=float, default=60.0, help="heartbeat interval (s)")
    parser.add_argument("--boot-timeout", type=float, default=30.0, help="BootNotification answer timeout (s)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="WebSocket open timeout (s)")
    parser.add_argument("--sample", type=float, default=0.25, help="database sampling period (s)")
    parser.add_argument("--print-every", type=float, default=2.0, help="timeline line period (s)")
    parser.add_argument("--prefix", default="STORM", help="station id prefix")
    parser.add_argument("--server-root", default=None, help="serve this checkout (default: this one)")
    parser.add_argument("--server-env", action="append", default=[], metavar="K=V", help="server environment")
    parser.add_argument("--asgi-server", choices=("daphne", "uvicorn"), default="daphne")
    parser.add_argument("--backlog", type=int, default=None,
                        help="daphne's listen backlog (an endpoint -e tcp:...:backlog=N; default: daphne's 50)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the server ('' = unpinned)")
    parser.add_argument("--client-cpus", default="1", help="CPU list for the generator ('' = unpinned)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL database named *bench* (dropped/created)")
    parser.add_argument("--redis-url", default=None, help="use the Redis channel layer")
    parser.add_argument("--dump-json", default=None, help="write the summary and samples to this file")
    args = parser.parse_args()
    if not 1 <= args.chargers <= 20000 or args.max_duration > 900 or args.window <= 0:
        parser.error("bounded runs only: 1..20000 chargers, max-duration <= 900 s, window > 0")
    os.chdir(Path(__file__).resolve().parent.parent)
    summary = run(args)
    sys.exit(0 if summary["connected"] == args.chargers else 1)


if __name__ == "__main__":
    main()
