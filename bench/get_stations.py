"""getStations round trip with --stations stations x --connectors connectors.

Starts one daphne process on a fresh database (SQLite unless --database-url),
fills it with online stations and their connectors (mixed statuses), opens
--clients mobile connections on /ws and sends --requests getStations from each,
one after another per connection; reports the round trip as a client sees it
(request sent -> full reply received and parsed) and the reply size.

Run from the repository root:
    .venv/bin/python bench/get_stations.py --stations 1000 --connectors 4 --requests 300
    .venv/bin/python bench/get_stations.py --clients 10 --requests 50
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
from _support import ROOT, Server, percentile, proc_cpu_seconds, raise_nofile  # noqa: E402

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


async def client(url: str, requests: int, latencies: list[float], sizes: list[int]) -> None:
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
            assert reply["id"] == n and isinstance(reply["result"], list), str(reply)[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--connectors", type=int, default=4)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300, help="per client")
    parser.add_argument("--database-url", help="PostgreSQL URL of a throwaway database whose name contains 'bench'")
    args = parser.parse_args()
    raise_nofile()
    server = Server(database_url=args.database_url,
                    env={"MOBILE_WS_RATE_LIMIT": "100000/1", "MOBILE_IDLE_TIMEOUT": "3600"})
    try:
        server.start()
        subprocess.run([sys.executable, "manage.py", "createapikey", "--name", "bench", "--key", API_KEY],
                       cwd=ROOT, env=server.env, check=True, capture_output=True)
        subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        FILL.replace("STATIONS", str(args.stations)).replace("CONNECTORS", str(args.connectors))],
                       cwd=ROOT, env=server.env, check=True)
        asyncio.run(client(server.url, 20, [], []))  # warm up
        latencies: list[float] = []
        sizes: list[int] = []
        cpu_before, began = proc_cpu_seconds(server.pid), time.monotonic()

        async def run_all() -> None:
            await asyncio.gather(*(client(server.url, args.requests, latencies, sizes) for _ in range(args.clients)))

        asyncio.run(run_all())
        wall = time.monotonic() - began
        cpu = proc_cpu_seconds(server.pid) - cpu_before
        print(f"{args.stations} stations x {args.connectors} connectors; {args.clients} client(s) x "
              f"{args.requests} getStations; reply {sizes[0] / 1024:.0f} KiB")
        print(f"round trip ms: p50 {percentile(latencies, 50) * 1000:.1f}  p90 {percentile(latencies, 90) * 1000:.1f}"
              f"  p99 {percentile(latencies, 99) * 1000:.1f}  max {max(latencies) * 1000:.1f}")
        print(f"throughput {len(latencies) / wall:.0f} replies/s; server CPU {cpu:.1f} s over {wall:.1f} s")
    finally:
        server.cleanup()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
