"""Push latency: charger MeterValues -> mobile meter event, with N subscribed mobile connections.

Starts one daphne process on a fresh database (SQLite unless --database-url),
creates an API key, opens --mobiles WebSocket connections to --endpoint (auth +
subscribe to the station's meter events), connects one charger that starts a
transaction, then sends --events MeterValues, --interval seconds apart. Each
mobile connection stamps the arrival of each meter event; latency is arrival
minus the moment the charger sent the MeterValues frame (CLOCK_MONOTONIC,
comparable across processes). The mobile connections are spread over
--client-procs processes so the receiving side is not the bottleneck.

The server is pinned to --server-cpus (taskset) and everything else (this
process, the mobile client processes, the background chargers) to
--client-cpus, so that they do not compete for one core ('' = unpinned).
--server-env K=V adds to the server's environment.

--background-chargers N (default 0: none) adds N raw OCPP-J chargers
(bench/_chargers.py) that connect and boot before the mobile connections
subscribe, then send one call every --background-interval s (default 10),
alternating Heartbeat and MeterValues, before and during the measurement: the
push figure is then "measured while N chargers send their load". The output adds
their achieved call rate against the nominal N / interval and their round trip
p99 over the measured window, and the server's CPU is split: the background
load's own share is read for --baseline-seconds (5) before the mobiles connect,
again once they have subscribed (the difference: handing the chargers' events to
subscribers that do not want them) and after the events, and the rest of the CPU
over the measurement (until the last push arrived) is given per event. That
split holds only if the server got all the CPU it asked for (on a shared machine
it may not: then the push share comes out too small, even negative, and the
latencies grow with a backlog). --profile-seconds S runs py-spy on the server
for S seconds from the first MeterValues (raw collapsed stacks to
--profile-out).

Run from the repository root:
    .venv/bin/python bench/push_latency.py --mobiles 1000 --events 100
    .venv/bin/python bench/push_latency.py --endpoint /mobile-client
    .venv/bin/python bench/push_latency.py --mobiles 1000 --events 100 --background-chargers 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import websockets  # noqa: E402
from _chargers import BackgroundChargers, add_arguments, describe, server_cpu_rate, start_profiler  # noqa: E402
from _support import ROOT, Server, cpu_set, percentile, proc_cpu_seconds, proc_rss_kb, raise_nofile  # noqa: E402

STATION = "bench01"
API_KEY = "bench-push-key"


async def receive_meter_events(url: str, endpoint: str, count: int, ready, go, results, expected: int) -> None:
    """One client process: ``count`` mobile connections recording (energy, arrival) per meter event."""
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(f"{url}{endpoint}", max_size=None, open_timeout=60)
        await ws.send(json.dumps({"id": "a", "action": "auth", "params": {"apiKey": API_KEY}}))
        assert "result" in json.loads(await ws.recv())
        await ws.send(json.dumps({"id": "s", "action": "subscribe",
                                  "params": {"stationId": STATION, "events": ["meter.*"]}}))
        assert "result" in json.loads(await ws.recv())
        sockets.append(ws)
    ready.set()
    arrivals: list[tuple[float, float]] = []

    async def listen(ws) -> None:
        got = 0
        try:
            while got < expected:
                text = await asyncio.wait_for(ws.recv(), 30)
                now = time.monotonic()
                message = json.loads(text)
                if message.get("event") in ("meter.update", "meter.values.delta"):
                    data = message.get("data", message)
                    marker = data.get("energy") if "energy" in data else data.get("total")
                    arrivals.append((marker, now))
                    got += 1
        except (TimeoutError, websockets.ConnectionClosed):
            pass

    go.wait()
    await asyncio.gather(*(listen(ws) for ws in sockets))
    results.put(arrivals)
    for ws in sockets:
        await ws.close()


def client_process(url, endpoint, count, ready, go, results, expected) -> None:
    raise_nofile()
    asyncio.run(receive_meter_events(url, endpoint, count, ready, go, results, expected))


async def run_charger(url: str, events: int, interval: float, endpoint: str) -> dict[float, float]:
    """Boot, start a transaction, send MeterValues; return marker -> send time."""
    ws = await websockets.connect(f"{url}/ocpp/{STATION}", subprotocols=["ocpp1.6"])
    counter = 0

    async def call(action: str, payload: dict) -> dict:
        nonlocal counter
        counter += 1
        await ws.send(json.dumps([2, str(counter), action, payload]))
        while True:
            reply = json.loads(await ws.recv())
            if reply[1] == str(counter):
                return reply[2]

    await call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B"})
    await call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    meter_start = 1_000_000
    start = await call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": meter_start,
                                            "timestamp": "2026-01-01T00:00:00Z"})
    transaction_id = start["transactionId"]
    sent: dict[float, float] = {}
    for n in range(1, events + 1):
        energy = meter_start + n * 10
        values = [{"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{n % 1000:03d}Z",
                   "sampledValue": [{"value": str(energy), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                                    {"value": "22000", "measurand": "Power.Active.Import", "unit": "W"}]}]
        marker = float(energy - meter_start)  # the session energy both dialects show
        sent[marker] = time.monotonic()
        await call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": values})
        await asyncio.sleep(interval)
    await ws.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mobiles", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between MeterValues")
    parser.add_argument("--endpoint", default="/ws", choices=["/ws", "/mobile-client"])
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--database-url", help="PostgreSQL URL of a throwaway database whose name contains 'bench'")
    add_arguments(parser)
    parser.add_argument("--baseline-seconds", type=float, default=5.0,
                        help="server CPU of the background load alone is read this long before the events")
    parser.add_argument("--profile-seconds", type=float, default=0, help="py-spy the server this long (0: no)")
    parser.add_argument("--profile-out", default="/tmp/push_latency.raw", help="py-spy's raw output")
    args = parser.parse_args()
    raise_nofile()
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_set(args.client_cpus))  # the client processes inherit it

    server = Server(database_url=args.database_url, cpus=args.server_cpus or None,
                    env={"MOBILE_WS_RATE_LIMIT": "100000/1", "MOBILE_CLIENT_RATE_LIMIT": "100000/1",
                         "MOBILE_IDLE_TIMEOUT": "3600", **dict(item.split("=", 1) for item in args.server_env)})
    background = None
    try:
        server.start()
        print(f"server pid {server.pid} on cpus {args.server_cpus or 'any'}, clients on {args.client_cpus or 'any'}")
        subprocess.run([sys.executable, "manage.py", "createapikey", "--name", "bench", "--key", API_KEY],
                       cwd=ROOT, env=server.env, check=True, capture_output=True)
        background = BackgroundChargers(server.url, args.background_chargers, interval=args.background_interval,
                                        cpus=args.client_cpus or None)
        background.start()
        background.wait_ready()
        alone_rate = server_cpu_rate(server.pid, args.baseline_seconds) if background.count else 0.0
        ready_events, processes = [], []
        go = multiprocessing.Event()
        results = multiprocessing.Queue()
        share = [args.mobiles // args.client_procs + (i < args.mobiles % args.client_procs)
                 for i in range(args.client_procs)]
        # Connect the charger first so the station exists for subscribe.
        boot = asyncio.run(_connect_station(server.url))
        for count in share:
            ready = multiprocessing.Event()
            process = multiprocessing.Process(
                target=client_process, args=(server.url, args.endpoint, count, ready, go, results, args.events))
            process.start()
            ready_events.append(ready)
            processes.append(process)
        began = time.monotonic()
        for ready in ready_events:
            ready.wait(300)
        print(f"{args.mobiles} mobile connections on {args.endpoint} subscribed in {time.monotonic() - began:.1f} s")
        background_rate = server_cpu_rate(server.pid, args.baseline_seconds) if background.count else 0.0
        go.set()
        profiler = start_profiler(server.pid, args.profile_seconds, args.profile_out)
        background.begin()
        cpu_before, wall_before = proc_cpu_seconds(server.pid), time.monotonic()
        sent = asyncio.run(run_charger(server.url, args.events, args.interval, args.endpoint))
        # Until the last push arrived (or the clients gave up): a backlog drained later is push work too.
        arrivals = [item for _ in processes for item in results.get(timeout=300)]
        cpu = proc_cpu_seconds(server.pid) - cpu_before
        wall = time.monotonic() - wall_before
        closed_at = time.monotonic()
        after_rate = server_cpu_rate(server.pid, args.baseline_seconds) if background.count else 0.0
        figures = background.end(closed_at)
        for process in processes:
            process.join(30)
        if profiler is not None:
            profiler.wait(args.profile_seconds + 60)
        report(args, sent, arrivals, cpu, wall, server, boot)
        if background.count:
            push_cpu = cpu - (background_rate + after_rate) / 2 * wall
            print(f"server CPU of the background load: {100 * alone_rate:.0f}% of a core before the mobiles "
                  f"connected, {100 * background_rate:.0f}% with them subscribed (idle), {100 * after_rate:.0f}% "
                  f"after the events (the mobiles closing), each over {args.baseline_seconds:.0f} s; the rest of the "
                  f"measurement's, {push_cpu:.1f} s (the mean of the last two taken off), is "
                  f"{1000 * push_cpu / args.events:.1f} ms per event ({args.mobiles} pushes each)")
        else:
            print(f"server CPU {1000 * cpu / args.events:.1f} ms per event ({args.mobiles} pushes each)")
        print(describe(figures))
        print("(the machine may be shared: read wall-clock figures with the load average "
              f"{os.getloadavg()[0]:.1f} in mind)")
    finally:
        if background is not None and background.process is not None and background.process.is_alive():
            background.process.terminate()
        server.cleanup()


async def _connect_station(url: str) -> str:
    ws = await websockets.connect(f"{url}/ocpp/{STATION}", subprotocols=["ocpp1.6"])
    await ws.send(json.dumps([2, "1", "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B"}]))
    reply = json.loads(await ws.recv())
    await ws.close()
    return reply[2]["status"]


def report(args, sent, arrivals, cpu, wall, server, boot) -> None:
    latencies = [arrival - sent[marker] for marker, arrival in arrivals if marker in sent]
    per_event: dict[float, list[float]] = {}
    for marker, arrival in arrivals:
        if marker in sent:
            per_event.setdefault(marker, []).append(arrival - sent[marker])
    expected = args.mobiles * args.events
    print(f"boot {boot}; server CPU {cpu:.1f} s over {wall:.1f} s ({100 * cpu / wall:.0f}% of a core); "
          f"RSS {proc_rss_kb(server.pid) / 1024:.0f} MiB")
    print(f"delivered {len(latencies)} of {expected} pushes ({args.events} events x {args.mobiles} connections)")
    print("push latency (MeterValues sent -> event received), ms: "
          f"p50 {percentile(latencies, 50) * 1000:.1f}  p90 {percentile(latencies, 90) * 1000:.1f}  "
          f"p99 {percentile(latencies, 99) * 1000:.1f}  max {max(latencies, default=float('nan')) * 1000:.1f}")
    firsts = [min(v) for v in per_event.values()]
    lasts = [max(v) for v in per_event.values()]
    print(f"per event: first subscriber p50 {percentile(firsts, 50) * 1000:.1f} ms, "
          f"last subscriber p50 {percentile(lasts, 50) * 1000:.1f} ms, p99 {percentile(lasts, 99) * 1000:.1f} ms")
    digest = [line for line in server.stderr_text().splitlines() if "ERROR" in line or "Traceback" in line]
    print(f"server errors: {len(digest)}" + (f" (first: {digest[0][:200]})" if digest else ""))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
