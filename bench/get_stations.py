"""getStations round trip with --stations stations x --connectors connectors.

Starts one daphne process on a fresh database (SQLite unless --database-url),
fills it with online stations and their connectors (mixed statuses), opens
--clients mobile connections on /ws and sends --requests getStations from each,
one after another per connection; reports the round trip as a client sees it
(request sent -> full reply received and parsed) and the reply size.

The server is pinned to --server-cpus (taskset) and the clients and background
chargers to --client-cpus ('' = unpinned). --server-env K=V adds to the
server's environment.

--background-chargers N (default 0: none) adds N raw OCPP-J chargers
(bench/_chargers.py) that connect and boot before the measurement, then send one
call every --background-interval s (default 10), alternating Heartbeat and
MeterValues, before and during it: the round trip is then "measured while N
chargers send their load"; the output adds their achieved call rate against the
nominal N / interval and their round trip p99 over the measured window. They are
stations of their own (BG00000...), so getStations lists --stations + N of them;
with --background-among-stations they are the first N filled stations instead
(N <= --stations), so the list stays at --stations. The server's CPU per
getStations is given with the background load's own CPU (read for
--baseline-seconds, 5, just before and just after the requests) taken off; it
holds only if the server got all the CPU it asked for (on a shared machine it
may not: then it comes out too small, even negative). --profile-seconds S runs
py-spy on the server for S seconds from the start of the measurement.

Run from the repository root:
    .venv/bin/python bench/get_stations.py --stations 1000 --connectors 4 --requests 300
    .venv/bin/python bench/get_stations.py --clients 10 --requests 50
    .venv/bin/python bench/get_stations.py --stations 1000 --connectors 4 --requests 300 --background-chargers 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import websockets  # noqa: E402
from _chargers import BackgroundChargers, add_arguments, describe, server_cpu_rate, start_profiler  # noqa: E402
from _support import ROOT, Server, cpu_set, percentile, proc_cpu_seconds, raise_nofile, stderr_digest  # noqa: E402

API_KEY = "bench-stations-key"

FILL = """
import random
from django.utils import timezone
from stations.models import Connector, Station
now = timezone.now()
statuses = ["Available"] * 6 + ["Charging", "Preparing", "Faulted", "Unavailable"]
Station.objects.bulk_create([Station(id=f"st{n:05d}", name=f"Station {n}", is_online=n % 10 != 0, last_activity=now,
                                     vendor="Bench", model="B") for n in range(STATIONS)])
Connector.objects.bulk_create([Connector(station_id=f"st{n:05d}", number=c, status=random.choice(statuses),
                                         updated_at=now) for n in range(STATIONS) for c in range(CONNECTORS + 1)])
"""


async def client(url: str, requests: int, latencies: list[float], sizes: list[int], counts: list[int]) -> None:
    async with websockets.connect(f"{url}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"id": "a", "action": "auth", "params": {"apiKey": API_KEY}}))
        assert "result" in json.loads(await ws.recv())
        for n in range(requests):
            began = time.perf_counter()
            await ws.send(json.dumps({"id": n, "action": "getStations"}))
            text = await ws.recv()
            reply = json.loads(text)
            latencies.append(time.perf_counter() - began)
            sizes.append(len(text))
            counts.append(len(reply["result"]))
            assert reply["id"] == n and isinstance(reply["result"], list), str(reply)[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--connectors", type=int, default=4)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300, help="per client")
    parser.add_argument("--database-url", help="PostgreSQL URL of a throwaway database whose name contains 'bench'")
    add_arguments(parser)
    parser.add_argument("--background-among-stations", action="store_true",
                        help="the background chargers are the first N filled stations (not N more)")
    parser.add_argument("--baseline-seconds", type=float, default=5.0,
                        help="server CPU of the background load alone is read this long before the requests")
    parser.add_argument("--profile-seconds", type=float, default=0, help="py-spy the server this long (0: no)")
    parser.add_argument("--profile-out", default="/tmp/get_stations.raw", help="py-spy's raw output")
    args = parser.parse_args()
    if args.background_among_stations and args.background_chargers > args.stations:
        parser.error("--background-among-stations needs --background-chargers <= --stations")
    raise_nofile()
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_set(args.client_cpus))  # the client processes inherit it
    server = Server(database_url=args.database_url, cpus=args.server_cpus or None,
                    env={"MOBILE_WS_RATE_LIMIT": "100000/1", "MOBILE_IDLE_TIMEOUT": "3600", **dict(item.split("=", 1) for item in args.server_env)})
    background = None
    try:
        server.start()
        print(f"server pid {server.pid} on cpus {args.server_cpus or 'any'}, clients on {args.client_cpus or 'any'}")
        subprocess.run([sys.executable, "manage.py", "createapikey", "--name", "bench", "--key", API_KEY],
                       cwd=ROOT, env=server.env, check=True, capture_output=True)
        subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        FILL.replace("STATIONS", str(args.stations)).replace("CONNECTORS", str(args.connectors))],
                       cwd=ROOT, env=server.env, check=True)
        ids = [f"st{n:05d}" for n in range(args.background_chargers)] if args.background_among_stations else None
        background = BackgroundChargers(server.url, args.background_chargers, interval=args.background_interval,
                                        cpus=args.client_cpus or None, ids=ids)
        background.start()
        background.wait_ready()
        asyncio.run(client(server.url, 20, [], [], []))  # warm up
        background_rate = server_cpu_rate(server.pid, args.baseline_seconds) if background.count else 0.0
        latencies: list[float] = []
        sizes: list[int] = []
        counts: list[int] = []
        profiler = start_profiler(server.pid, args.profile_seconds, args.profile_out)
        background.begin()
        cpu_before, began = proc_cpu_seconds(server.pid), time.monotonic()

        async def run_all() -> None:
            await asyncio.gather(*(client(server.url, args.requests, latencies, sizes, counts)
                                   for _ in range(args.clients)))

        asyncio.run(run_all())
        wall = time.monotonic() - began
        cpu = proc_cpu_seconds(server.pid) - cpu_before
        closed_at = time.monotonic()
        after_rate = server_cpu_rate(server.pid, args.baseline_seconds) if background.count else 0.0
        figures = background.end(closed_at)
        if profiler is not None:
            profiler.wait(args.profile_seconds + 60)
        print(f"{args.stations} stations x {args.connectors} connectors filled; {args.clients} client(s) x "
              f"{args.requests} getStations; reply {sizes[0] / 1024:.0f} KiB, {counts[0]} stations listed")
        print(f"round trip ms: p50 {percentile(latencies, 50) * 1000:.1f}  p90 {percentile(latencies, 90) * 1000:.1f}"
              f"  p99 {percentile(latencies, 99) * 1000:.1f}  max {max(latencies) * 1000:.1f}")
        print(f"throughput {len(latencies) / wall:.0f} replies/s; server CPU {cpu:.1f} s over {wall:.1f} s")
        own = cpu - (background_rate + after_rate) / 2 * wall
        print(f"server CPU per getStations {1000 * own / len(latencies):.2f} ms" + (
            f" (the background load's own taken off: the mean of {100 * background_rate:.0f}% and "
            f"{100 * after_rate:.0f}% of a core, read over the {args.baseline_seconds:.0f} s before and after)"
            if background.count else ""))
        print(describe(figures))
        for line in stderr_digest(server.stderr_text(), 5):
            print(f"server stderr: {line}")
        print("(the machine may be shared: read wall-clock figures with the load average "
              f"{os.getloadavg()[0]:.1f} in mind)")
    finally:
        if background is not None and background.process is not None and background.process.is_alive():
            background.process.terminate()
        server.cleanup()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
