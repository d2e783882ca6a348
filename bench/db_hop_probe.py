"""Supporting probe: ORM-thread time of the service calls behind one charger connect + boot.

Not one of the two benchmarks; it explains their ramp ceiling. In one process (no
server, no socket), on a fresh migrated database, it times ``call_service`` of the
four services a charger's connect and BootNotification run on the server
(check_station_connect, registration_status, station_connected, record_boot) for
--stations new station ids, once with the settings as they are (conn_max_age=0 in
csms/settings.py: every call opens and closes its own DB connection) and once with
CONN_MAX_AGE=None set in this process only (one persistent connection in the ORM thread).
Nothing in the repository is changed.

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

SERVICES = ("check_station_connect", "registration_status", "station_connected", "record_boot")


def child(database_url: str, persistent: bool, stations: int) -> None:
    """Runs in a fresh interpreter: time the services, print one JSON line."""
    import django
    from django.conf import settings

    django.setup()
    if persistent:
        settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    from csms.events import call_service
    from stations import services

    async def run() -> dict:
        times: dict[str, list[float]] = {name: [] for name in SERVICES}
        for i in range(stations):
            sid = f"P{'p' if persistent else 'n'}{i:05d}"
            for name, call in (
                ("check_station_connect", (services.check_station_connect, sid, None)),
                ("registration_status", (services.registration_status, sid)),
                ("station_connected", (services.station_connected, sid, f"chan-{sid}")),
                ("record_boot", (services.record_boot, sid, {"charge_point_vendor": "V"})),
            ):
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
        print(f"{'mode':<28} " + " ".join(f"{name:>22}" for name in SERVICES) + f" {'sum p50':>8}")
        for persistent in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--child", persistent, "--stations", str(args.stations)],
                                 cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
            times = json.loads(out.strip().splitlines()[-1])
            label = "CONN_MAX_AGE=None (probe)" if persistent == "1" else "conn_max_age=0 (as shipped)"
            cells = [f"p50 {percentile(times[n], 50) * 1000:5.2f} p99 {percentile(times[n], 99) * 1000:5.1f}"
                     for n in SERVICES]
            total = sum(percentile(times[n], 50) for n in SERVICES) * 1000
            print(f"{label:<28} " + " ".join(f"{c:>22}" for c in cells) + f" {total:8.2f}")
    finally:
        if args.database_url:
            drop_postgres_db(url)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
