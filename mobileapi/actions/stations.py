"""getStations, getConnectorStatus, getMeterValuesRecent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from csms.events import call_service
from mobileapi import services
from mobileapi.messages import RawJson
from mobileapi.models import Scope
from mobileapi.registry import CONNECTOR_ID, STATION_ID, action, limit
from mobileapi.snapshots import snapshot

if TYPE_CHECKING:
    from mobileapi.consumers import MobileConsumer


@action(
    "getStations",
    scope=Scope.READ_STATIONS,
    summary="Every station with its connectors (connector 0, the station itself, is not listed).",
    result="A list of stations: `id`, `name`, `status` (`Offline`, `Charging`, `Available`, `PartiallyAvailable`, "
           "`Unavailable`), `isOnline`, `lastActivity`, `connectors` (`id`, `status`, `transactionId`, `errorCode`, "
           "`updatedAt`). An offline station's connectors keep their last status: check `isOnline`.",
    dialects="`transactionId` is an integer on `/ws`, a string on `/mobile-client`.",
)
async def get_stations(conn: MobileConsumer, params: dict[str, Any]) -> RawJson:
    return RawJson(await snapshot.json_text(conn.dialect))


@action(
    "getConnectorStatus",
    params={"properties": {"stationId": STATION_ID, "connectorId": CONNECTOR_ID}, "required": ["stationId", "connectorId"]},
    scope=Scope.READ_STATIONS,
    summary="One connector's status, with the live readings of its active transaction.",
    result="`stationId`, `connectorId`, `status`, `transactionId`, `errorCode`, `updatedAt`, `energy` (Wh the "
           "active transaction has delivered, integer: from its latest register, 0 before the first; null without "
           "one), and from its latest sample (all null without one) `power` (W), `current` (A), `voltage` (V), "
           "`soc` (%).",
    dialects="`transactionId` is an integer on `/ws`, a string on `/mobile-client`.",
    errors=((404, "Unknown station X"), (404, "Unknown connector N on station X")),
)
async def get_connector_status(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
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
    summary="The latest meter samples of a station (or one connector), oldest first.",
    result="A list of samples: `stationId`, `connectorId`, `transactionId` (null outside a transaction), "
           "`timestamp`, `energy` (Wh delivered in the sample's transaction; outside one, the register), `power`, "
           "`current`, `voltage`, `soc`, `unit` (`Wh`), `register` (the meter's reading in Wh). "
           "Readings the charger did not send are null.",
    dialects="`transactionId` is an integer on `/ws`, a string on `/mobile-client`.",
    errors=((404, "Unknown station X"),),
)
async def get_meter_values_recent(conn: MobileConsumer, params: dict[str, Any]) -> list[dict[str, Any]]:
    samples = await call_service(
        services.meter_values_recent, params["stationId"], params.get("connectorId"), params.get("limit", 10)
    )
    for sample in samples:
        sample["transactionId"] = conn.dialect.transaction_id(sample["transactionId"])
    return samples
