"""MeterValues: every sampled value stored, the common measurands summarised."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from stations import services
from stations.ocpp.dispatch import run


class MeteringHandlers:
    station_id: str

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], transaction_id: int | None = None
    ) -> call_result.MeterValues:
        await run(services.record_meter_values, self.station_id, connector_id, transaction_id, meter_value)
        return call_result.MeterValues()
