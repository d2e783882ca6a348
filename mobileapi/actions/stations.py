"""getStations, getConnectorStatus, getMeterValuesRecent."""

from __future__ import annotations

from csms.events import call_service
from mobileapi import services
from mobileapi.messages import RawJson
from mobileapi.models import Scope
from mobileapi.registry import CONNECTOR_ID, STATION_ID, action, limit
from mobileapi.snapshots import snapshot


@action("getStations", scope=Scope.READ_STATIONS)
async def get_stations(conn, params):
    return RawJson(await snapshot.json_text(conn.dialect))


@action(
    "getConnectorStatus",
    params={"properties": {"stationId": STATION_ID, "connectorId": CONNECTOR_ID}, "required": ["stationId", "connectorId"]},
    scope=Scope.READ_STATIONS,
)
async def get_connector_status(conn, params):
    status = await call_service(services.connector_status, params["stationId"], params["connectorId"])
    status["transactionId"] = conn.dialect.transaction_id(status["transactionId"])
    return status


@action(
    "getMeterValuesRecent",
    params={
        "properties": {"stationId": STATION_ID, "connectorId": CONNECTOR_ID, "limit": limit(10, 1000)},
        "required": ["stationId"],
    },
    scope=Scope.READ_STATIONS,
)
async def get_meter_values_recent(conn, params):
    samples = await call_service(
        services.meter_values_recent, params["stationId"], params.get("connectorId"), params.get("limit", 10)
    )
    for sample in samples:
        sample["transactionId"] = conn.dialect.transaction_id(sample["transactionId"])
    return samples
