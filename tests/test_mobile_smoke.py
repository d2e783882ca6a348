"""The documents' smoke scenario, step by step, on both endpoints, over real sockets."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from stations.models import Tariff
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVENT_ID = re.compile(r"^evt-\d{13}-\d+$")


@pytest.fixture
async def fora072(charger_factory):
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    charger = await charger_factory("fora072", connectors=4, meter_interval=0.3)
    return charger


async def test_smoke_scenario_ws(mobile, fora072, server):
    from mobileapi.client import MobileClient

    # Step 1: connect and auth (the document's exact exchange).
    client = await MobileClient.connect(server, "/ws")
    await client.send({"id": "auth-001", "action": "auth", "params": {"apiKey": "test-mobile-key-123"}})
    auth = await client.reply_to("auth-001")
    assert set(auth) == {"id", "result"}
    assert re.fullmatch(r"sess-\d{13}", auth["result"].pop("sessionId"))
    assert auth == {"id": "auth-001", "result": {"status": "ok", "scopes": ["read:stations", "write:charging"]}}

    # Step 2: subscribe to everything, then getStations.
    subscribed = (await client.request("subscribe", {"events": ["all"]}))["result"]
    assert re.fullmatch(r"sub-\d{13}-001", subscribed["subscriptionId"])
    stations = await client.result("getStations")
    assert subscribed["snapshot"] == {"stations": stations}
    (station,) = stations
    assert station == {
        "id": "fora072",
        "name": "fora072",
        "status": "Available",
        "isOnline": True,
        "lastActivity": station["lastActivity"],
        "connectors": [
            {"id": n, "status": "Available", "transactionId": None, "errorCode": None,
             "updatedAt": station["connectors"][n - 1]["updatedAt"]}
            for n in (1, 2, 3, 4)
        ],
    }
    assert ISO.match(station["lastActivity"]) and all(ISO.match(c["updatedAt"]) for c in station["connectors"])

    # Step 3: start charging on connector 2: pending at once, then the events.
    start = await client.request("startCharging", {"stationId": "fora072", "connectorId": 2, "idTag": "MOBILE_TEST_USER"})
    assert start["result"]["status"] == "pending"
    correlation_id = start["result"]["correlationId"]
    assert re.fullmatch(r"corr-\d{13}-fora072-2", correlation_id)
    result = await client.event("remote.start.result", correlationId=correlation_id)
    assert result["data"]["status"] == "Accepted" and result["data"]["stationId"] == "fora072"
    started = await client.event("transaction.started", correlationId=correlation_id)
    assert set(started) == {"eventId", "event", "ts", "data"} and EVENT_ID.match(started["eventId"])
    data = started["data"]
    tx_id = data["transactionId"]
    assert isinstance(tx_id, int)
    assert data == {
        "transactionId": tx_id, "stationId": "fora072", "connectorId": 2, "idTag": "MOBILE_TEST_USER",
        "startTime": data["startTime"], "meterStart": data["meterStart"], "correlationId": correlation_id,
    }
    assert ISO.match(data["startTime"])

    # Step 4: monitor, then stop.
    meter = await client.event("meter.update", transactionId=tx_id)
    assert set(meter["data"]) == {"stationId", "connectorId", "transactionId", "timestamp", "energy", "power",
                                  "current", "voltage", "soc"}
    assert meter["data"]["power"] > 0 and meter["data"]["voltage"] == 400.0
    await client.event("connector.status.changed", connectorId=2, status="Charging")
    status = await client.result("getConnectorStatus", {"stationId": "fora072", "connectorId": 2})
    assert status["status"] == "Charging" and status["transactionId"] == tx_id
    assert status["power"] > 0 and status["current"] > 0 and status["voltage"] == 400.0 and status["energy"] >= 0
    assert (await client.result("getStations"))[0]["status"] == "Charging"

    stop = await client.result("stopCharging", {"transactionId": tx_id})
    assert stop["status"] == "pending" and stop["correlationId"].startswith("corr-stop-")
    stopped = await client.event("transaction.stopped", transactionId=tx_id)
    assert stopped["data"]["reason"] == "Remote" and stopped["data"]["energy"] > 0
    assert stopped["data"]["cost"] == round(stopped["data"]["energy"] / 1000 * 0.10 + 1e-9, 2)
    assert {"stopTime", "duration", "totalKWh"} <= set(stopped["data"])
    assert (await client.event("remote.stop.result", transactionId=tx_id))["data"]["status"] == "Accepted"

    sessions = await client.result("getMySessions")
    assert sessions[0]["transactionId"] == tx_id and sessions[0]["status"] == "completed"
    assert sessions[0]["energy"] == stopped["data"]["energy"] and sessions[0]["cost"] == stopped["data"]["cost"]

    # Step 5: ping.
    await client.send({"id": "ping-001", "action": "ping"})
    pong = await client.reply_to("ping-001")
    assert pong["result"]["pong"] is True and isinstance(pong["result"]["ts"], int)
    for event in client.events:
        json.dumps(event)
    await client.close()


async def test_smoke_scenario_mobile_client(mobile, fora072):
    client = await mobile("/mobile-client")
    subscribed = await client.result("subscribe", {"stationId": "fora072", "events": ["transaction.*", "connector.*",
                                                                                      "meter.*", "remote.*"]})
    assert [s["id"] for s in subscribed["snapshot"]["stations"]] == ["fora072"]

    start = await client.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "MOBILE"})
    # Answered once the charger has: Accepted, not pending.
    assert start["result"]["status"] == "Accepted"
    correlation_id = start["result"]["correlationId"]
    started = await client.event("transaction.started", correlationId=correlation_id)
    assert "data" not in started and EVENT_ID.match(started["eventId"]) and isinstance(started["ts"], int)
    assert isinstance(started["transactionId"], str) and started["stationId"] == "fora072"
    assert started["idTag"] == "MOBILE" and started["connectorId"] == 1
    tx_id = started["transactionId"]

    delta = await client.event("meter.values.delta", transactionId=tx_id)
    assert set(delta) == {"eventId", "event", "ts", "stationId", "connectorId", "transactionId", "timestamp",
                          "delta", "total", "unit"}
    assert delta["unit"] == "Wh" and delta["delta"] > 0 and delta["total"] >= delta["delta"]
    assert (await client.event("remote.start.result", correlationId=correlation_id))["status"] == "Accepted"

    status = await client.result("getConnectorStatus", {"stationId": "fora072", "connectorId": 1})
    assert status["transactionId"] == tx_id and status["status"] == "Charging"
    recent = await client.result("getRecentTransactions", {"limit": 10})
    assert recent[0]["transactionId"] == tx_id and recent[0]["status"] == "Active"

    # The Dart guide stops with stationId, a string transactionId and connectorId.
    stop = await client.result("stopCharging", {"stationId": "fora072", "transactionId": tx_id, "connectorId": 1})
    assert stop["status"] == "Accepted" and stop["transactionId"] == tx_id
    stopped = await client.event("transaction.stopped", transactionId=tx_id)
    assert stopped["totalKWh"] == round(stopped["energy"] / 1000, 3) and stopped["cost"] is not None
    assert (await client.event("remote.stop.result", transactionId=tx_id))["status"] == "Accepted"

    recent = await client.result("getRecentTransactions", {"limit": 10})
    assert recent[0]["status"] == "Completed" and recent[0]["totalKWh"] == stopped["totalKWh"]
    values = await client.result("getMeterValuesRecent", {"stationId": "fora072", "limit": 10})
    assert 1 <= len(values) <= 10 and values[-1]["transactionId"] in (tx_id, None)
    assert [v["timestamp"] for v in values] == sorted(v["timestamp"] for v in values)
    assert (await client.result("ping"))["pong"] is True


async def test_snapshot_of_a_station_and_station_filter(mobile, fora072, charger_factory):
    await charger_factory("other01", connectors=1)
    client = await mobile("/ws")
    subscribed = await client.result("subscribe", {"stationId": "other01", "events": ["connector.status.changed"]})
    assert [s["id"] for s in subscribed["snapshot"]["stations"]] == ["other01"]
    await fora072.cp.send_status(3, "Faulted")
    await (await charger_factory("other01", connectors=1, boot=False)).cp.send_status(1, "Unavailable")
    event = await client.event("connector.status.changed")
    assert event["data"]["stationId"] == "other01" and event["data"]["status"] == "Unavailable"

    async def nothing_for_fora():
        return not any(e["data"]["stationId"] == "fora072" for e in client.events)

    assert await eventually(nothing_for_fora)
