"""Supporting probe: ORM-thread time of the service calls behind one charger connect + boot.

Not one of the two benchmarks; it explains their ramp ceiling. In one process (no
server, no socket), on a fresh migrated database, it times ``call_service`` of the
services a charger's WebSocket connect and BootNotification run on the server, for
--stations new station ids, in two modes:
  * DB_CONN_MAX_AGE=0: every call_service opens and closes its own DB connection
    (what csms/settings.py did before DB_CONN_MAX_AGE existed: conn_max_age=0);
  * the settings' default (DB_CONN_MAX_AGE unset: a persistent connection in the ORM thread).
It adapts to the service names present: ``open_station_session`` (one hop per
handshake), ``check_station_connect`` before the accept + ``station_connected``
after it (two hops), or the oldest ``check_station_connect`` + ``registration_status``
+ ``station_connected`` (three hops). Nothing in the repository is changed.

Run from the repository root:
    .venv/bin/python bench/db_hop_probe.py
    .venv/bin/python bench/db_hop_probe.py --database-url postgres://postgres@127.0.0.1:5432/csms_bench_probe
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import create_postgres_db, drop_postgres_db, percentile  # noqa: E402


def calls_for(services, sid: str) -> list[tuple[str, tuple]]:
    if hasattr(services, "open_station_session"):
        connect = [("open_station_session", (services.open_station_session, sid, None, f"chan-{sid}"))]
    elif "registration_status" in services.ConnectDecision.__dataclass_fields__:
        # Two hops: credentials before the accept, online after it (bench/storm.py).
        connect = [
            ("check_station_connect", (services.check_station_connect, sid, None)),
            ("station_connected", (services.station_connected, sid, f"chan-{sid}")),
        ]
    else:
        connect = [
            ("check_station_connect", (services.check_station_connect, sid, None)),
            ("registration_status", (services.registration_status, sid)),
            ("station_connected", (services.station_connected, sid, f"chan-{sid}")),
        ]
    boot = services.BootInfo(vendor="V") if hasattr(services, "BootInfo") else {"charge_point_vendor": "V"}
    return connect + [("record_boot", (services.record_boot, sid, boot))]


def child(database_url: str, persistent: bool, stations: int) -> None:
    """Runs in a fresh interpreter: time the services, print one JSON line."""
    import django
    from django.conf import settings

    django.setup()
    from csms.events import call_service
    from stations import services

    print(f"# CONN_MAX_AGE={settings.DATABASES['default'].get('CONN_MAX_AGE')}", file=sys.stderr)

    async def run() -> dict:
        times: dict[str, list[float]] = {}
        for i in range(stations):
            sid = f"P{'p' if persistent else 'n'}{i:05d}"
            for name, call in calls_for(services, sid):
                times.setdefault(name, [])
                t = time.perf_counter()
                await call_service(*call)
                times[name].append(time.perf_counter() - t)
        return times

    print(json.dumps(asyncio.run(run())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="PostgreSQL database named *bench* (dropped/created)")
    parser.add_argument("--child", choices=["0", "1"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(os.environ["DATABASE_URL"], args.child == "1", args.stations)
        return
    if not 1 <= args.stations <= 5000:
        parser.error("1..5000 stations")
    tmp = Path(tempfile.mkdtemp(prefix="csms-probe-"))
    url = args.database_url or f"sqlite:///{tmp / 'probe.sqlite3'}"
    env = {**{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHANNEL_PREFIX")},
           "DJANGO_SETTINGS_MODULE": "csms.settings", "DATABASE_URL": url, "LOG_LEVEL": "WARNING",
           "LOG_DIR": str(tmp / "logs"), "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
           "OCPP_UNKNOWN_STATIONS": "accept"}
    try:
        if args.database_url:
            create_postgres_db(url)
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
        print(f"db={'postgres' if args.database_url else 'sqlite'} stations={args.stations} (ms per call_service)")
        for persistent in ("0", "1"):
            child_env = dict(env)
            if persistent == "0":
                child_env["DB_CONN_MAX_AGE"] = "0"
            else:
                child_env.pop("DB_CONN_MAX_AGE", None)
            out = subprocess.run([sys.executable, __file__, "--child", persistent, "--stations", str(args.stations)],
                                 cwd=ROOT, env=child_env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"probe child failed:\n{out.stderr[-3000:]}")
            out = out.stdout
            times = json.loads(out.strip().splitlines()[-1])
            label = "settings default" if persistent == "1" else "DB_CONN_MAX_AGE=0"
            total = sum(percentile(v, 50) for v in times.values()) * 1000
            print(f"{label:<18} sum of p50 = {total:6.2f} ms per connect+boot")
            for name, values in times.items():
                print(f"    {name:<24} p50 {percentile(values, 50) * 1000:6.2f}  p99 {percentile(values, 99) * 1000:6.2f} ms")
    finally:
        if args.database_url:
            drop_postgres_db(url)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
