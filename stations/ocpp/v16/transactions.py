"""StartTransaction and StopTransaction."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from stations import services
from stations.ocpp.dispatch import run
from stations.ocpp.v16.authorization import id_tag_info


class TransactionHandlers:
    station_id: str

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, reservation_id: int | None = None
    ) -> call_result.StartTransaction:
        transaction_id, authorization = await run(
            services.start_transaction, self.station_id, connector_id, id_tag, meter_start, timestamp, reservation_id
        )
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=id_tag_info(authorization))

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
    ) -> call_result.StopTransaction:
        authorization = await run(
            services.stop_transaction,
            self.station_id,
            transaction_id,
            meter_stop,
            timestamp,
            reason,
            id_tag,
            transaction_data,
        )
        return call_result.StopTransaction(id_tag_info=id_tag_info(authorization) if authorization else None)
