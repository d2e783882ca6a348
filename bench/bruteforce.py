"""Credential guessing against one daphne process: how many guesses get checked.

What it does
  1. Starts one daphne process (bench/_support.Server: a fresh migrated SQLite
     database, development settings, /metrics open) and registers station
     ``brute01`` with a password.
  2. For --seconds (5), --connections (50) mobile WebSockets on /ws each send
     ``auth`` with a new wrong key as soon as the previous one is answered (a 429
     is waited out for at most 100 ms, so the client keeps hammering).
  3. Then for --seconds, --chargers (20) clients open OCPP handshakes to
     /ocpp/brute01 with a new wrong HTTP Basic password each time.
  4. Prints the answers by status (401 = a key checked, 429 = refused unchecked;
     for OCPP the refusal status and, from /metrics, how many passwords were
     checked: csms_auth_failures_total) and the guesses checked per second.

Run from the repository root (``--root`` serves another checkout, e.g. the code
before a change, to compare):
    .venv/bin/python bench/bruteforce.py
    .venv/bin/python bench/bruteforce.py --root /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import Server  # noqa: E402

STATION = "brute01"
PASSWORD = "the-right-password-123"


async def guess_keys(url: str, seconds: float, connections: int) -> collections.Counter:
    answers: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    async def one(n: int) -> None:
        async with websockets.connect(f"{url}/ws") as ws:
            attempt = 0
            while time.monotonic() < deadline:
                await ws.send(json.dumps({"id": attempt, "action": "auth", "params": {"apiKey": f"guess-{n}-{attempt}"}}))
                error = json.loads(await ws.recv())["error"]
                answers[error["code"]] += 1
                if error["code"] == 429:
                    await asyncio.sleep(min(error.get("retryAfterMs", 100), 100) / 1000)
                attempt += 1

    await asyncio.gather(*(one(n) for n in range(connections)))
    return answers


async def guess_passwords(url: str, seconds: float, chargers: int) -> collections.Counter:
    answers: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    async def one(n: int) -> None:
        attempt = 0
        while time.monotonic() < deadline:
            credentials = base64.b64encode(f"{STATION}:guess-{n}-{attempt}".encode()).decode()
            try:
                ws = await websockets.connect(f"{url}/ocpp/{STATION}", subprotocols=["ocpp1.6"],
                                              additional_headers={"Authorization": f"Basic {credentials}"})
                await ws.close()
                answers[101] += 1
            except websockets.InvalidStatus as refused:
                answers[refused.response.status_code] += 1
            attempt += 1

    await asyncio.gather(*(one(n) for n in range(chargers)))
    return answers


def metric(url: str, name: str, endpoint: str) -> float:
    text = urllib.request.urlopen(url.replace("ws://", "http://") + "/metrics", timeout=10).read().decode()
    match = re.search(rf'^{name}{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--chargers", type=int, default=20)
    parser.add_argument("--root", type=Path, default=None, help="the checkout to serve (default: this one)")
    args = parser.parse_args()
    server = Server(root=args.root, env={"OCPP_UNKNOWN_STATIONS": "reject"})
    try:
        server.start()
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             "from stations import services; from stations.models import Station; "
             f"Station.objects.create(pk={STATION!r}, registration_status='Accepted'); "
             f"services.set_station_password({STATION!r}, {PASSWORD!r})"],
            cwd=server.root, env=server.env, check=True,
        )
        keys = asyncio.run(guess_keys(server.url, args.seconds, args.connections))
        print(f"mobile auth, {args.connections} connections, {args.seconds:g} s: {dict(sorted(keys.items()))}; "
              f"keys checked: {keys[401]} ({keys[401] / args.seconds:.0f}/s)")
        passwords = asyncio.run(guess_passwords(server.url, args.seconds, args.chargers))
        checked = metric(server.url, "csms_auth_failures_total", "ocpp")
        checked_text = f"{checked:.0f} ({checked / args.seconds:.0f}/s)" if checked == checked else \
            f"{passwords[403]} (every refusal: no lockout)"
        print(f"OCPP basic auth, {args.chargers} clients, {args.seconds:g} s: {dict(sorted(passwords.items()))}; "
              f"passwords checked: {checked_text}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
