"""One 1.6 charger and one 2.0.1 station on the same server, one mobile app that sees both alike: the same
reply shapes and events for a start and a stop, the same station and connector rows, on both endpoints."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations.models import Station, Tariff
from tests.conftest import REDIS_TEST_URL
from tests.ocpp201 import Station201, connect201, energy

pytestmark = pytest.mark.django_db(transaction=True)


def _shape(client: Any, event: dict[str, Any]) -> tuple[set[str], set[str]]:
    """An event's envelope keys and its fields' keys (whichever the dialect nests them in)."""
    fields = event["data"] if "data" in event else event
    return set(event), set(fields)


async def _charge_201(cp: Station201, client: Any, correlation_id: str) -> None:
    """The 2.0.1 station does what the 1.6 simulator does by itself: starts, meters (and later ends)."""
    request = await cp.wait_for("RequestStartTransaction")
    await cp.transaction_event("Started", "TX-MIX", trigger_reason="RemoteStart", token=request["id_token"]["id_token"],
                               remote_start_id=request["remote_start_id"], charging_state="Charging",
                               meter_value=[energy(10_000)])
    await asyncio.sleep(0.05)
    await cp.transaction_event("Updated", "TX-MIX", trigger_reason="MeterValuePeriodic",
                               meter_value=[energy(10_250)])


async def _stop_201(cp: Station201) -> None:
    await cp.wait_for("RequestStopTransaction")
    await cp.transaction_event("Ended", "TX-MIX", trigger_reason="RemoteStop", stopped_reason="Remote",
                               meter_value=[energy(10_500, context="Transaction.End")])


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_one_app_sees_a_16_and_a_201_station_alike(charger_factory, station201, mobile, path) -> None:
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    await charger_factory("cp16", connectors=1, meter_interval=0.2)
    cp = await station201("cs201")
    await cp.status(1, "Available")
    assert {row.pk: row.ocpp_version async for row in Station.objects.all()} == {"cp16": "1.6", "cs201": "2.0.1"}
    client = await mobile(path)
    meter_event = "meter.update" if path == "/ws" else "meter.values.delta"
    await client.result("subscribe", {"events": ["transaction.*", "remote.*", "meter.*", "connector.*"]})

    stations = {row["id"]: row for row in await client.result("getStations", {})}
    assert set(stations["cp16"]) == set(stations["cs201"])
    assert stations["cp16"]["status"] == stations["cs201"]["status"] == "Available"
    assert set(stations["cp16"]["connectors"][0]) == set(stations["cs201"]["connectors"][0])

    seen: dict[str, dict[str, Any]] = {}
    for station_id in ("cp16", "cs201"):
        start = await client.result("startCharging", {"stationId": station_id, "connectorId": 1, "idTag": "APP-1"})
        correlation_id = start["correlationId"]
        if station_id == "cs201":
            await _charge_201(cp, client, correlation_id)
        result = await client.event("remote.start.result", correlationId=correlation_id)
        started = await client.event("transaction.started", correlationId=correlation_id)
        tx_id = client.field(started, "transactionId")
        meter = await client.event(meter_event, transactionId=tx_id)
        status = await client.result("getConnectorStatus", {"stationId": station_id, "connectorId": 1})
        assert status["status"] == "Charging" and status["transactionId"] == tx_id
        stop = await client.result("stopCharging", {"transactionId": tx_id})
        if station_id == "cs201":
            await _stop_201(cp)
        stop_result = await client.event("remote.stop.result", transactionId=tx_id)
        stopped = await client.event("transaction.stopped", transactionId=tx_id)
        seen[station_id] = {"start": start, "result": result, "started": started, "meter": meter,
                            "status": status, "stop": stop, "stop_result": stop_result, "stopped": stopped}
        assert client.field(result, "status") == client.field(stop_result, "status") == "Accepted"
        assert client.field(stopped, "cost") is not None

    one, other = seen["cp16"], seen["cs201"]
    assert set(one["start"]) == set(other["start"]) and one["start"]["status"] == other["start"]["status"]
    assert set(one["stop"]) == set(other["stop"]) and one["stop"]["status"] == other["stop"]["status"]
    assert set(one["status"]) == set(other["status"])
    for name in ("result", "started", "meter", "stop_result", "stopped"):
        assert _shape(client, one[name]) == _shape(client, other[name]), name
    # The integer transactionId of the mobile API for both (a string on /mobile-client), never the 2.0.1 id.
    ids = [client.field(seen[station]["started"], "transactionId") for station in ("cp16", "cs201")]
    assert all(isinstance(value, int if path == "/ws" else str) for value in ids) and "TX-MIX" not in ids
    assert client.field(other["stopped"], "reason") == client.field(one["stopped"], "reason") == "Remote"


@pytest.fixture
def two_processes(redis_layer: str, daphne_process: Any) -> tuple[str, str]:
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer, "MOBILE_WS_RATE_LIMIT": "1000/1",
           "OCPP_COMMAND_TIMEOUT": "10"}
    (url_a, _), (url_b, _) = daphne_process(env), daphne_process(env)
    return url_a, url_b


async def test_across_two_processes_a_16_and_a_201_station_are_driven_alike(two_processes, keys) -> None:
    """Both stations on process A, the app on process B (Redis between them): a start and a stop reach each."""
    url_a, url_b = two_processes
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    ws16 = await connect(f"{url_a}/ocpp", "cp16")
    cp16 = SimulatedCharger(ChargerState.new("cp16", 1, meter_interval=0.3), ws16)
    ws201 = await connect201(f"{url_a}/ocpp", "cs201")
    cp = Station201("cs201", ws201)
    tasks = [asyncio.create_task(cp16.start()), asyncio.create_task(cp.start())]
    app = await MobileClient.connect(url_b, "/mobile-client", keys["full"])
    try:
        await cp16.boot()
        await cp.boot()
        await cp.status(1, "Available")
        await app.result("subscribe", {"events": ["transaction.*"]})
        for station_id in ("cp16", "cs201"):
            start = await app.result("startCharging", {"stationId": station_id, "connectorId": 1, "idTag": "APP-2"})
            assert start["status"] == "Accepted"
            if station_id == "cs201":
                await _charge_201(cp, app, start["correlationId"])
            started = await app.event("transaction.started", correlationId=start["correlationId"])
            stop = await app.result("stopCharging", {"transactionId": started["transactionId"]})
            if station_id == "cs201":
                await _stop_201(cp)
            assert stop["status"] == "Accepted"
            stopped = await app.event("transaction.stopped", transactionId=started["transactionId"])
            assert stopped["reason"] == "Remote" and stopped["stationId"] == station_id
    finally:
        await app.close()
        for task in [*tasks, *cp16.tasks]:
            task.cancel()
        await ws16.close()
        await ws201.close()
