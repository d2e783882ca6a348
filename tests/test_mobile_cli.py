"""manage.py mobile_client: the smoke scenario against a real daphne, as support staff run it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from simulator.v16 import ChargerState, SimulatedCharger, connect
from tests.conftest import ROOT, server_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "mobile_client", "--url", url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
        env={**os.environ, "DATABASE_URL": server_database_url()},
    )


@pytest.mark.parametrize("endpoint", ["/ws", "/mobile-client"])
async def test_mobile_client_runs_the_smoke_scenario(daphne_process, keys, endpoint):
    url, _ = daphne_process({"MOBILE_WS_RATE_LIMIT": "100/1"})
    ws = await connect(f"{url}/ocpp", "fora072")
    charger = SimulatedCharger(ChargerState.new("fora072", 4, meter_interval=0.5), ws)
    serving = asyncio.create_task(charger.start())
    await charger.boot()
    try:
        done = await asyncio.to_thread(run_cli, url, "--api-key", keys["full"], "--endpoint", endpoint)
    finally:
        serving.cancel()
        await ws.close()
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("auth", "subscribe", "getStations", "ping", "startCharging", "transaction.started",
                 "getConnectorStatus", "stopCharging", "transaction.stopped", "getMySessions"):
        assert f"] {step}: " in done.stdout, step
    assert "Smoke scenario passed." in done.stdout


async def test_mobile_client_reports_a_bad_key(daphne_process):
    url, _ = daphne_process()
    done = await asyncio.to_thread(run_cli, url, "--api-key", "wrong", "--no-charge")
    assert done.returncode == 1 and "Invalid apiKey" in done.stderr


async def test_daphne_answers_413_rather_than_dropping_a_large_ws_message(daphne_process, keys):
    """daphne's own limit (1 MiB by default) used to cut the connection before the app's 413."""
    from mobileapi.client import MobileClient

    url, _ = daphne_process()
    client = await MobileClient.connect(url, "/ws", keys["full"])
    try:
        await client.send({"id": "big", "action": "ping", "params": {"pad": "x" * (1024 * 1024 + 10)}})
        reply = await client.receive()
        assert reply["error"]["code"] == 413
        assert (await client.result("ping"))["pong"] is True
    finally:
        await client.close()
