"""G Availability for OCPP 2.0.1 stations over real sockets: ChangeAvailability for the station, an EVSE or
one connector (TC_G_*_CSMS), StatusNotification, and the station status the mobile API derives from them."""

from __future__ import annotations

from typing import Any

import pytest

from csms.models import Event
from stations import commands
from stations.errors import InvalidValue
from stations.models import Connector
from tests.conftest import eventually, http_json
from tests.ocpp201 import Station201

pytestmark = pytest.mark.django_db(transaction=True)


async def _ready(station201: Any, evses: int = 2) -> Station201:
    cp = await station201("cs201")
    for evse in range(1, evses + 1):
        await cp.status(evse, "Available")
    return cp


async def _station_status(client: Any, station_id: str = "cs201") -> str:
    stations = await client.result("getStations", {})
    return next(row["status"] for row in stations if row["id"] == station_id)


@pytest.mark.parametrize("params, expected", [
    # TC_G_05_CSMS / TC_G_06_CSMS: the whole station, no evse.
    ({"connector": 0, "type": "Inoperative"}, {"operational_status": "Inoperative"}),
    ({"connector": 0, "type": "Operative"}, {"operational_status": "Operative"}),
    # TC_G_03_CSMS / TC_G_04_CSMS: an EVSE, no connectorId.
    ({"connector": 2, "type": "Inoperative"}, {"operational_status": "Inoperative", "evse": {"id": 2}}),
    ({"connector": 2, "type": "Operative"}, {"operational_status": "Operative", "evse": {"id": 2}}),
    # TC_G_07_CSMS / TC_G_08_CSMS: one connector of an EVSE.
    ({"connector": 1, "connectorId": 1, "type": "Inoperative"},
     {"operational_status": "Inoperative", "evse": {"id": 1, "connector_id": 1}}),
])
async def test_tc_g_03_to_08_change_availability(station201, server, keys, params, expected) -> None:
    cp = await _ready(station201)
    status, answer = await http_json(server, "POST", "/api/stations/cs201/commands/change_availability",
                                     keys["operator"], params)
    assert (status, answer) == (200, {"status": "Accepted"})
    assert await cp.wait_for("ChangeAvailability") == expected


async def test_a_connector_id_needs_an_evse(station201) -> None:
    cp = await _ready(station201)
    with pytest.raises(InvalidValue, match="connectorId needs an EVSE"):
        await commands.operate("cs201", "change_availability", {"connector": 0, "type": "Inoperative",
                                                                 "connector_id": 1}, actor="test")
    assert not [name for name, _ in cp.received if name == "ChangeAvailability"]


async def test_tc_g_03_inoperative_evse_reported_unavailable_in_the_mobile_api(station201, mobile) -> None:
    """TC_G_03_CSMS: Accepted, then the station reports the EVSE's connector Unavailable: the app sees the
    connector Unavailable (connector.status.changed) and the station PartiallyAvailable."""
    cp = await _ready(station201)
    client = await mobile("/ws")
    await client.result("subscribe", {"stationId": "cs201", "events": ["connector.*"]})
    assert await _station_status(client) == "Available"
    assert await commands.operate("cs201", "change_availability", {"connector": 2, "type": "Inoperative"},
                                  actor="test") == {"status": "Accepted"}
    await cp.status(2, "Unavailable")
    changed = await client.event("connector.status.changed", connectorId=2)
    assert changed["data"]["status"] == "Unavailable"
    assert await _station_status(client) == "PartiallyAvailable"
    status = await client.result("getConnectorStatus", {"stationId": "cs201", "connectorId": 2})
    assert status["status"] == "Unavailable" and status["transactionId"] is None
    # The whole station Inoperative (TC_G_05_CSMS): every connector Unavailable.
    await commands.operate("cs201", "change_availability", {"connector": 0, "type": "Inoperative"}, actor="test")
    await cp.status(1, "Unavailable")
    await client.event("connector.status.changed", connectorId=1)
    assert await _station_status(client) == "Unavailable"


async def test_tc_g_11_scheduled_while_charging(station201, mobile) -> None:
    """TC_G_11_CSMS: Inoperative during a transaction is Scheduled; the connector shows the transaction's
    chargingState until it ends, then Unavailable."""
    cp = await _ready(station201, evses=1)
    client = await mobile("/mobile-client")
    await cp.transaction_event("Started", "TX-G11", token="CARD", charging_state="Charging")
    cp.answers["ChangeAvailability"] = {"status": "Scheduled"}
    answer = await commands.operate("cs201", "change_availability", {"connector": 1, "type": "Inoperative"},
                                    actor="test")
    assert answer == {"status": "Scheduled"}

    async def shows(status: str) -> bool:
        return await _station_status(client) == status

    await eventually(lambda: shows("Charging"))
    await cp.transaction_event("Ended", "TX-G11", trigger_reason="StopAuthorized", stopped_reason="Local")
    await cp.status(1, "Unavailable")
    await eventually(lambda: shows("Unavailable"))


@pytest.mark.parametrize("statuses, expected", [
    (("Available", "Available"), "Available"),
    (("Occupied", "Available"), "PartiallyAvailable"),  # plugged in, not charging: not available
    (("Occupied", "Occupied"), "Unavailable"),
    (("Reserved", "Available"), "PartiallyAvailable"),
    (("Faulted", "Unavailable"), "Unavailable"),
])
async def test_tc_g_01_status_notification_and_the_derived_station_status(station201, mobile, statuses,
                                                                          expected) -> None:
    """TC_G_01_CSMS: each StatusNotification (per EVSE and connector) is stored; the app's station status
    is derived from them as for 1.6 (2.0.1's Occupied counts as not available, like 1.6's Preparing)."""
    cp = await _ready(station201)
    client = await mobile("/ws")
    for evse, status in enumerate(statuses, start=1):
        await cp.status(evse, status)
    assert await _station_status(client) == expected
    stored = [row async for row in Connector.objects.filter(station_id="cs201", number__gt=0)
              .order_by("number").values_list("status", flat=True)]
    assert tuple(stored) == statuses


async def test_an_occupied_evse_takes_a_remote_start(station201, mobile) -> None:
    """Occupied (the cable plugged in first, no transaction yet) is where an app's start goes (F01)."""
    cp = await _ready(station201, evses=1)
    await cp.status(1, "Occupied")
    client = await mobile("/mobile-client")
    reply = await client.result("startCharging", {"stationId": "cs201", "connectorId": 1, "idTag": "APP"})
    assert reply["status"] == "Accepted"
    assert (await cp.wait_for("RequestStartTransaction"))["evse_id"] == 1
    # A transaction's chargingState is what the connector shows (Charging), and the station Charging.
    request = await cp.wait_for("RequestStartTransaction")
    await cp.transaction_event("Started", "TX-OCC", trigger_reason="RemoteStart", token="APP",
                               remote_start_id=request["remote_start_id"], charging_state="Charging")

    async def charging() -> bool:
        return await _station_status(client) == "Charging"

    await eventually(charging)
    status = await client.result("getConnectorStatus", {"stationId": "cs201", "connectorId": 1})
    assert status["status"] == "Charging" and status["transactionId"] is not None


async def test_an_evse_of_two_connectors_is_one_connector_in_the_mobile_api(station201, mobile) -> None:
    """The app's connectorId is the EVSE: one row for an EVSE of two connectors, showing the one in use."""
    cp = await station201("cs201")
    await cp.status(1, "Available", connector_id=1)
    await cp.status(1, "Available", connector_id=2)
    client = await mobile("/ws")

    async def evse_rows() -> list[dict[str, Any]]:
        stations = await client.result("getStations", {})
        return next(row["connectors"] for row in stations if row["id"] == "cs201")

    assert [(row["id"], row["status"]) for row in await evse_rows()] == [(1, "Available")]
    await cp.status(1, "Occupied", connector_id=2)
    await cp.status(1, "Unavailable", connector_id=1)
    # Occupied is the mobile contract's Preparing (mobileapi/renderers.py).
    assert [(row["id"], row["status"]) for row in await evse_rows()] == [(1, "Preparing")]
    assert (await client.result("getConnectorStatus", {"stationId": "cs201", "connectorId": 1}))["status"] == \
        "Preparing"
    assert await _station_status(client) == "Unavailable"  # plugged in, not charging: nothing free


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_an_occupied_evse_is_preparing_in_the_mobile_api(station201, mobile, server, keys, path) -> None:
    """2.0.1's Occupied is not in the mobile contract: the apps see 1.6's Preparing, in getStations (the
    snapshot), getConnectorStatus, the connector.status.changed push and its replay, and the HTTP API's
    station and connector. It stays Occupied where it is stored and in the event log."""
    cp = await _ready(station201, evses=1)
    client = await mobile(path)
    await client.result("subscribe", {"stationId": "cs201", "events": ["connector.*"]})
    assert await _station_status(client) == "Available"  # the snapshot is taken before the change
    await cp.status(1, "Occupied")
    changed = await client.event("connector.status.changed", connectorId=1)
    assert client.field(changed, "status") == "Preparing"
    stations = await client.result("getStations", {})
    row = next(row for row in stations if row["id"] == "cs201")
    assert [(connector["id"], connector["status"]) for connector in row["connectors"]] == [(1, "Preparing")]
    assert row["status"] == "Unavailable"
    status = await client.result("getConnectorStatus", {"stationId": "cs201", "connectorId": 1})
    assert status["status"] == "Preparing"
    replayed = await client.result("getEventsSince", {"eventId": "evt-0-0", "limit": 100})
    statuses = [client.field(item, "status") for item in replayed["events"]
                if item.get("event", item.get("eventType")) == "connector.status.changed"]
    assert statuses[-1] == "Preparing" and "Occupied" not in statuses
    http_status, station = await http_json(server, "GET", "/api/stations/cs201", keys["full"])
    assert http_status == 200 and station["connectors"][0]["status"] == "Preparing"
    http_status, connector = await http_json(server, "GET", "/api/stations/cs201/connectors/1", keys["full"])
    assert http_status == 200 and connector["status"] == "Preparing"
    # Kept as the station said it: the connector's row and the event log.
    assert await Connector.objects.filter(station_id="cs201", number=1, status="Occupied").aexists()
    logged = await Event.objects.filter(kind="connector.status.changed").order_by("-seq").afirst()
    assert logged is not None and logged.data["status"] == "Occupied"
