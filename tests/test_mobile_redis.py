"""The mobile API across two real daphne processes sharing Redis (and the test database)."""

from __future__ import annotations

import asyncio

import pytest

from csms.events import call_service
from mobileapi import services
from mobileapi.client import MobileClient
from mobileapi.models import ApiKey
from simulator.v16 import ChargerState, SimulatedCharger, connect
from tests.conftest import REDIS_TEST_URL
from tests.test_mobile_events import status_burst

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def sequence(event: dict) -> int:
    return int(event["eventId"].rsplit("-", 1)[1])


@pytest.fixture
def two_processes(redis_layer, daphne_process):
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer, "MOBILE_SESSION_CHECK_SECONDS": "1",
           "MOBILE_WS_RATE_LIMIT": "1000/1"}
    (url_a, _), (url_b, _) = daphne_process(env), daphne_process(env)
    return url_a, url_b


@pytest.fixture
async def charger_on_a(two_processes):
    url_a, _ = two_processes
    ws = await connect(f"{url_a}/ocpp", "fora072")
    cp = SimulatedCharger(ChargerState.new("fora072", 2, meter_interval=0.3), ws)
    task = asyncio.create_task(cp.start())
    await cp.boot()
    yield cp
    task.cancel()
    for t in list(cp.tasks):
        t.cancel()
    await ws.close()


async def test_start_on_b_reaches_charger_on_a_and_pushes_fan_out(two_processes, charger_on_a, keys):
    _, url_b = two_processes
    watchers = [await MobileClient.connect(url_b, "/ws" if n % 2 else "/mobile-client", keys["full"]) for n in range(20)]
    try:
        for client in watchers:
            await client.result("subscribe", {"stationId": "fora072"})
        app = watchers[0]  # a /mobile-client: answered after the charger on A accepted
        start = await app.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "U1"})
        assert start["status"] == "Accepted"
        for client in watchers:
            started = await client.event("transaction.started", correlationId=start["correlationId"])
            tx_id = client.field(started, "transactionId")
            meter_name = "meter.update" if client.dialect == "ws" else "meter.values.delta"
            first = await client.event(meter_name)
            second = await client.event(meter_name)
            assert sequence(first) < sequence(second)  # in order
        # B's cached getStations follows what A's charger reports.
        stations = await watchers[1].result("getStations")
        assert stations[0]["status"] == "Charging"
        assert stations[0]["connectors"][0]["transactionId"] == int(tx_id)
        stop = await app.result("stopCharging", {"transactionId": str(tx_id)})
        assert stop["status"] == "Accepted"
        for client in watchers:
            stopped = await client.event("transaction.stopped")
            assert str(client.field(stopped, "transactionId")) == str(tx_id)
        # Events written by A are replayed by B.
        page = await watchers[1].result("getEventsSince", {"eventId": "evt-0-0", "limit": 1000})
        kinds = [e["eventType"] for e in page["events"]]
        assert kinds.index("station.connected") < kinds.index("transaction.started") < kinds.index(
            "transaction.stopped")
    finally:
        for client in watchers:
            await client.close()


async def test_burst_across_processes_reaches_every_subscriber(two_processes, keys):
    _, url_b = two_processes
    clients = [await MobileClient.connect(url_b, "/ws", keys["full"]) for _ in range(20)]
    try:
        for client in clients:
            await client.result("subscribe", {"events": ["connector.status.changed"]})
        await call_service(status_burst, "A", 300)  # raised in this (third) process
        for client in clients:
            numbers = []
            while len(numbers) < 300:
                numbers.append((await client.event("connector.status.changed", timeout=10))["data"]["n"])
            assert numbers == list(range(300))
    finally:
        for client in clients:
            await client.close()


async def test_deactivating_a_key_ends_sessions_on_both_processes(two_processes, keys):
    url_a, url_b = two_processes
    clients = [await MobileClient.connect(url, "/ws", keys["full"]) for url in (url_a, url_b)]
    key = await ApiKey.objects.aget(name="App")
    await call_service(services.set_key_active, key.pk, False)
    for client in clients:
        expired = await client.event("session.expired", timeout=5)
        assert expired["data"]["reason"] == "revoked"
        await asyncio.wait_for(client.ws.wait_closed(), 5)
        assert client.ws.close_code == 4003
