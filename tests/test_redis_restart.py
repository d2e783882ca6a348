"""A Redis restart is survived without restarting the CSMS.

Two real daphne processes share a redis-server that this test starts itself
on a free port (no persistence, as deployed here), so killing and restarting
it loses every key: queued messages and the push hubs' ``events.all``
memberships. A charger is held by process A, a ``/ws`` app by A and a
``/mobile-client`` app by B. Redis is killed for a few seconds and restarted
on the same port. A startCharging sent during the outage must fail at once
with the documented 503 on both dialects (not hang, not crash); afterwards
every socket must still be open, new handshakes must work at once, pushes must resume within seconds, a
startCharging from B must reach the charger on A again, the events emitted
during the outage must be in the event log, and neither daphne may have
logged "Exception inside application".
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, connect
from tests.conftest import IN_CI, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

OUTAGE_SECONDS = 5.0
RESUME_WITHIN = 5.0  # seconds from Redis answering again to pushes arriving again


class OwnRedis:
    """A redis-server of this test's own, on a free port, with no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no goodbye to the clients
        self.process.wait(10)
        self.process = None

    def _answers(self) -> bool:
        try:
            out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, timeout=2)
        except subprocess.TimeoutExpired:
            return False
        return out.stdout.strip() == b"PONG"


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true: tests that need it fail rather than skip)")
        pytest.skip("redis-server is not installed")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    if redis.process is not None:
        redis.kill()


def daphne_log(process: subprocess.Popen) -> str:
    # The fixture sends daphne's stderr to an unlinked temporary file: read it through /proc.
    return Path(f"/proc/{process.pid}/fd/2").read_text(errors="replace")


def metric(http_url: str, name: str) -> float:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def attach_charger(url: str, station_id: str) -> tuple[SimulatedCharger, asyncio.Task]:
    cp = SimulatedCharger(ChargerState.new(station_id, 2, meter_interval=60), await connect(f"{url}/ocpp", station_id))
    task = asyncio.create_task(cp.start())
    await cp.boot()
    return cp, task


async def detach_charger(cp: SimulatedCharger, task: asyncio.Task) -> None:
    task.cancel()
    for t in list(cp.tasks):
        t.cancel()
    await cp._connection.close()


async def test_redis_restart_is_survived(own_redis, daphne_process, keys):
    env = {"REDIS_URL": own_redis.url, "CHANNEL_PREFIX": "csms-restart", "MOBILE_WS_RATE_LIMIT": "1000/1",
           "MOBILE_SESSION_CHECK_SECONDS": "1"}
    (url_a, process_a), (url_b, process_b) = daphne_process(env), daphne_process(env)
    cp, cp_task = await attach_charger(url_a, "rr01")
    ws_app = await MobileClient.connect(url_a, "/ws", keys["full"])
    dart_app = await MobileClient.connect(url_b, "/mobile-client", keys["full"])
    apps = (ws_app, dart_app)
    extra: list = []
    try:
        for app in apps:
            await app.result("subscribe", {"stationId": "rr01"})
        await cp.send_status(2, "Unavailable")
        for app in apps:
            before = await app.event("connector.status.changed", connectorId=2, status="Unavailable")
        last_seen = before["eventId"]

        own_redis.kill()
        killed_at = time.monotonic()
        # During the outage the charger is still answered, and its event is logged.
        await asyncio.wait_for(cp.send_status(2, "Available"), 10)
        # A remote command cannot reach the charger's process: a clear 503, at once,
        # on /ws too (not "pending" and then a push that cannot come).
        for app in apps:
            began = time.monotonic()
            reply = await app.request("startCharging", {"stationId": "rr01", "connectorId": 1, "idTag": "U1"})
            assert reply["error"]["code"] == 503, reply
            assert "Redis" in reply["error"]["message"]
            assert time.monotonic() - began < 3
        for app in apps:
            assert (await app.result("ping"))  # the sockets stay usable
        # An app can connect and authenticate during the outage.
        await (await asyncio.wait_for(MobileClient.connect(url_b, "/ws", keys["other"]), 5)).close()
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed_at)))

        own_redis.start()
        back_at = time.monotonic()
        # New handshakes work right away, on both processes.
        newcomer, newcomer_task = await asyncio.wait_for(attach_charger(url_b, "rr02"), 5)
        extra.append((newcomer, newcomer_task))
        for url in (url_a, url_b):
            late_app = await asyncio.wait_for(MobileClient.connect(url, "/ws", keys["other"]), 5)
            await late_app.close()

        # Pushes resume within seconds: the hubs re-joined events.all on their own.
        statuses = iter(["Unavailable", "Available"] * 20)
        resumed = False
        while not resumed:
            assert time.monotonic() - back_at < RESUME_WITHIN, "pushes did not resume"
            status = next(statuses)
            await cp.send_status(2, status)
            try:
                for app in apps:
                    await app.event("connector.status.changed", timeout=0.5, connectorId=2, status=status)
                resumed = True
            except (AssertionError, TimeoutError):  # not yet: send the next one
                continue
        resumed_after = time.monotonic() - back_at

        # A remote command from B reaches the charger on A again.
        start = await dart_app.result("startCharging", {"stationId": "rr01", "connectorId": 1, "idTag": "U1"})
        assert start["status"] == "Accepted"
        await ws_app.event("transaction.started", correlationId=start["correlationId"])

        # What was not pushed during the outage is in the event log.
        page = await dart_app.result("getEventsSince", {"eventId": last_seen, "limit": 100})
        missed = [(e["event"], e.get("connectorId"), e.get("status")) for e in page["events"]]
        assert missed[0] == ("connector.status.changed", 2, "Available"), missed

        # Nobody was disconnected and no consumer crashed.
        assert cp._connection.close_code is None
        for app in apps:
            assert app.ws.close_code is None
            await app.result("ping")
        for process in (process_a, process_b):
            assert process.poll() is None
            assert "Exception inside application" not in daphne_log(process)
        for url in (url_a, url_b):
            assert metric(url.replace("ws://", "http://"), "csms_channel_layer_reconnects_total") >= 1
        print(f"pushes resumed {resumed_after:.2f} s after Redis answered again")
    finally:
        for charger in [(cp, cp_task), *extra]:
            await detach_charger(*charger)
        for app in apps:
            await app.close()
