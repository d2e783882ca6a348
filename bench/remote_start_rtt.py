"""Round-trip time of a RemoteStartTransaction as a caller of the command service sees it.

What it does
  1. Starts one daphne process (the server) with the Redis channel layer
     (REDIS_URL, default redis://127.0.0.1:6379/12, and a CHANNEL_PREFIX unique to this
     run) on a fresh database: a migrated SQLite file in a temporary directory, or
     with --database-url a PostgreSQL database named *bench* (dropped, created,
     migrated, dropped at the end).
  2. In this process, sets the same DATABASE_URL / REDIS_URL / CHANNEL_PREFIX before
     importing Django, then connects --chargers simulated chargers
     (simulator.v16.SimulatedCharger, ChargerState.new(id, connectors=2)) to the
     server and boots them. The chargers run in this process's event loop, as the
     callers do; the server is the other process, reached over the socket (chargers)
     and over Redis (commands), exactly as a mobile-API or admin process would.
  3. Measures, first sequentially (one call in flight) and then with --concurrency
     callers in flight:
       * ``commands.send_command(station, "ClearCache")``: no DB precondition on the
         server side, one DB read here - the bare command path
         (caller -> Redis -> consumer -> charger -> consumer -> Redis -> caller);
       * ``commands.remote_start(station, 1, "BENCH", correlation_id=...)``: the above
         plus prepare_remote_start (checks, RemoteStartRequest row) before and a
         ``remote.start.result`` event after. Time from call to return = the RTT.
         After each start, the script waits until the charger's StartTransaction is
         recorded (and its session runs), calls ``commands.remote_stop(station_id=...,
         connector_id=1)`` and waits until the connector is free again (Available, no
         current transaction, in the DB and in the simulator) before that connector
         is used again; those waits are not part of the RTT, but reported too
         (time to transaction, stop RTT, full cycle).
     --iterations (default 200) of each; the concurrent RemoteStart callers each own a
     connector (charger w % K, connector 1, then connector 2), so the starts never
     collide. A few warm-up calls are not counted.
  4. Prints p50/p90/p99/max in ms and throughput, server and bench CPU per phase,
     stops the chargers, kills the server, removes the temp dir and this run's Redis keys.

Run from the repository root:
    .venv/bin/python bench/remote_start_rtt.py
    .venv/bin/python bench/remote_start_rtt.py --chargers 10 --iterations 200 --concurrency 10
    .venv/bin/python bench/remote_start_rtt.py --database-url postgres://postgres@127.0.0.1:5432/csms_bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import Server, proc_cpu_seconds, raise_nofile, stderr_digest, summary_ms  # noqa: E402

WAIT_LIMIT = 15.0  # s: any single wait for a state change


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rtt: list[float] = []  # the measured call
        self.to_tx: list[float] = []  # call -> StartTransaction recorded
        self.stop: list[float] = []  # remote_stop call
        self.cycle: list[float] = []  # start -> connector free again
        self.errors: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.wall = 0.0
        self.server_cpu = 0.0
        self.bench_cpu = 0.0

    def error(self, error: BaseException) -> None:
        key = f"{type(error).__name__}: {str(error)[:120]}"
        self.errors[key] = self.errors.get(key, 0) + 1


async def wait_until(check, what: str, interval: float) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {WAIT_LIMIT:g} s")
        await asyncio.sleep(interval)


async def bench(args: argparse.Namespace, server: Server) -> list[Phase]:
    from channels.layers import get_channel_layer

    from simulator.v16 import ChargerState, SimulatedCharger, connect
    from stations import commands
    from stations.models import Connector, Station

    # --- Chargers ---------------------------------------------------------------------
    chargers: list[tuple[SimulatedCharger, object, asyncio.Task]] = []
    station_ids = [f"RS{i:03d}" for i in range(args.chargers)]
    for station_id in station_ids:
        state = ChargerState.new(station_id, connectors=2)
        ws = await connect(f"{server.url}/ocpp", station_id)
        cp = SimulatedCharger(state, ws)
        task = asyncio.create_task(cp.start())
        status = await cp.boot()
        if status != "Accepted":
            raise RuntimeError(f"{station_id} boot answered {status}")
        chargers.append((cp, ws, task))
    by_id = {cp.state.station_id: cp for cp, _, _ in chargers}
    for station_id in station_ids:
        await wait_until(lambda: Station.objects.filter(pk=station_id, is_online=True).aexists(), "online", 0.01)
    print(f"# {len(chargers)} chargers connected and booted", flush=True)

    async def charging(station_id: str, number: int) -> bool:
        local = by_id[station_id].state.connectors[number]
        if local.session is None or local.meter_task is None:  # the simulator's session runs
            return False
        return await Connector.objects.filter(
            station_id=station_id, number=number, current_transaction__isnull=False
        ).aexists()

    async def free(station_id: str, number: int) -> bool:
        local = by_id[station_id].state.connectors[number]
        if local.session is not None or local.status != "Available":
            return False
        return await Connector.objects.filter(
            station_id=station_id, number=number, current_transaction__isnull=True, status="Available"
        ).aexists()

    async def start_cycle(phase: Phase | None, station_id: str, number: int) -> None:
        started = time.perf_counter()
        try:
            status = await commands.remote_start(
                station_id, number, "BENCH", correlation_id=f"bench-{uuid.uuid4().hex[:12]}",
                timeout=args.timeout,
            )
        except Exception as error:  # noqa: BLE001 - counted
            if phase:
                phase.error(error)
            await wait_until(lambda: free(station_id, number), "free after a failed start", 0.01)
            return
        rtt = time.perf_counter() - started
        if phase:
            phase.rtt.append(rtt)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
        if status != "Accepted":
            return
        await wait_until(lambda: charging(station_id, number), "transaction started", 0.005)
        if phase:
            phase.to_tx.append(time.perf_counter() - started)
        stop_started = time.perf_counter()
        try:
            await commands.remote_stop(station_id=station_id, connector_id=number, timeout=args.timeout)
            if phase:
                phase.stop.append(time.perf_counter() - stop_started)
        except Exception as error:  # noqa: BLE001
            if phase:
                phase.error(error)
        await wait_until(lambda: free(station_id, number), "connector free", 0.005)
        if phase:
            phase.cycle.append(time.perf_counter() - started)

    async def clear_cache(phase: Phase | None, station_id: str) -> None:
        started = time.perf_counter()
        try:
            answer = await commands.send_command(station_id, "ClearCache", timeout=args.timeout)
        except Exception as error:  # noqa: BLE001
            if phase:
                phase.error(error)
            return
        if phase:
            phase.rtt.append(time.perf_counter() - started)
            phase.statuses[answer.get("status", "?")] = phase.statuses.get(answer.get("status", "?"), 0) + 1

    async def measured(phase: Phase, work) -> Phase:
        cpu0, times0, t0 = proc_cpu_seconds(server.pid), os.times(), time.perf_counter()
        await work()
        phase.wall = time.perf_counter() - t0
        times1 = os.times()
        phase.server_cpu = proc_cpu_seconds(server.pid) - cpu0
        phase.bench_cpu = (times1.user + times1.system) - (times0.user + times0.system)
        print(f"# {phase.name}: done in {phase.wall:.1f} s", flush=True)
        return phase

    n, k, c = args.iterations, len(station_ids), args.concurrency

    # Warm-up: connections, caches, the Redis receive loop.
    for i in range(10):
        await clear_cache(None, station_ids[i % k])
    for i in range(min(k, 3)):
        await start_cycle(None, station_ids[i], 1)

    phases = []

    async def seq_clear() -> None:
        for i in range(n):
            await clear_cache(phase, station_ids[i % k])

    phase = Phase("ClearCache sequential")
    phases.append(await measured(phase, seq_clear))

    async def seq_start() -> None:
        for i in range(n):
            await start_cycle(phase, station_ids[i % k], 1)

    phase = Phase("RemoteStart sequential")
    phases.append(await measured(phase, seq_start))

    async def conc_clear() -> None:
        counter = iter(range(n))

        async def worker(w: int) -> None:
            for i in counter:
                await clear_cache(phase, station_ids[i % k])

        await asyncio.gather(*(worker(w) for w in range(c)))

    phase = Phase(f"ClearCache concurrency={c}")
    phases.append(await measured(phase, conc_clear))

    async def conc_start() -> None:
        counter = iter(range(n))

        async def worker(w: int) -> None:
            station_id, number = station_ids[w % k], 1 + (w // k)
            for _ in counter:
                await start_cycle(phase, station_id, number)

        await asyncio.gather(*(worker(w) for w in range(c)))

    phase = Phase(f"RemoteStart concurrency={c}")
    phases.append(await measured(phase, conc_start))

    # --- Stop the chargers ---------------------------------------------------------------
    for cp, ws, task in chargers:
        task.cancel()
        for t in list(cp.tasks):
            t.cancel()
        await ws.close()
    layer = get_channel_layer()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()
    return phases


def delete_redis_keys(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        deleted += client.delete(key)
    client.close()
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=200, help="calls per phase")
    parser.add_argument("--concurrency", type=int, default=10, help="callers in flight (<= 2 x chargers)")
    parser.add_argument("--timeout", type=float, default=10.0, help="command timeout (s)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL of a database named *bench* (dropped and created); default: temp SQLite")
    args = parser.parse_args()
    if not (1 <= args.chargers <= 200 and 1 <= args.iterations <= 10000 and 1 <= args.concurrency <= 2 * args.chargers):
        parser.error("bounded runs only: 1..200 chargers, 1..10000 iterations, concurrency <= 2 x chargers")
    os.chdir(Path(__file__).resolve().parent.parent)
    raise_nofile()

    prefix = f"bench-rs-{uuid.uuid4().hex[:8]}"
    server = Server(database_url=args.database_url,
                    env={"REDIS_URL": args.redis_url, "CHANNEL_PREFIX": prefix, "OCPP_HEARTBEAT_INTERVAL": "300"})
    print(f"# remote_start_rtt: chargers={args.chargers} iterations={args.iterations} concurrency={args.concurrency} "
          f"db={'postgres' if args.database_url else 'sqlite'} redis={args.redis_url} prefix={prefix}", flush=True)
    phases: list[Phase] = []
    try:
        server.start()
        print(f"# daphne pid={server.pid} {server.url} tmp={server.tmp}", flush=True)
        # This process is a second CSMS process: same database, same Redis, same prefix.
        for name in ("DATABASE_URL", "REDIS_URL", "CHANNEL_PREFIX", "DJANGO_SECRET_KEY", "DJANGO_DEBUG",
                     "OCPP_UNKNOWN_STATIONS", "LOG_LEVEL"):
            os.environ[name] = server.env[name]
        os.environ["LOG_DIR"] = str(server.tmp / "bench-logs")
        os.environ["DJANGO_SETTINGS_MODULE"] = "csms.settings"
        import django

        django.setup()
        phases = asyncio.run(bench(args, server))
        server_alive = server.process.poll() is None
    finally:
        server.stop()
        stderr = server.stderr_text()
        server.cleanup()
        try:
            removed = delete_redis_keys(args.redis_url, prefix)
        except Exception as error:  # noqa: BLE001
            removed = f"failed: {error}"

    print()
    print("=" * 78)
    print(f"SUMMARY remote_start_rtt  chargers={args.chargers} iterations={args.iterations} "
          f"concurrency={args.concurrency} db={'postgres' if args.database_url else 'sqlite'} layer=redis")
    print("-" * 78)
    for phase in phases:
        ok = len(phase.rtt)
        print(f"{phase.name}")
        print(f"  RTT            {summary_ms(phase.rtt)}  statuses={phase.statuses}")
        if phase.to_tx:
            print(f"  to transaction {summary_ms(phase.to_tx)}")
            print(f"  remote_stop    {summary_ms(phase.stop)}")
            print(f"  full cycle     {summary_ms(phase.cycle)}")
        unit = "start/stop cycles" if phase.to_tx else "calls"
        print(f"  throughput     {ok / phase.wall:.1f} {unit}/s ({ok} in {phase.wall:.2f} s)"
              f"  errors={sum(phase.errors.values())}")
        for key, count in phase.errors.items():
            print(f"     {count} x {key}")
        print(f"  CPU            server {phase.server_cpu / phase.wall * 100:.0f}% "
              f"bench {phase.bench_cpu / phase.wall * 100:.0f}% (of one core)")
    print(f"server alive at end: {locals().get('server_alive')}; redis keys removed: {removed}")
    digest = stderr_digest(stderr)
    print(f"server stderr: {len(stderr.splitlines())} lines" + (":" if digest else ""))
    for line in digest:
        print("   " + line)
    print("=" * 78)


if __name__ == "__main__":
    main()
