"""E Transactions: TransactionEvent (Started, Updated, Ended), its meter values (J) and idTokenInfo (C)."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from stations.ocpp.dispatch import run
from stations.ocpp.v201.authorization import id_token_info
from stations.ocpp.v201.metering import meter_values
from stations.services.transaction_events import transaction_event


class TransactionHandlers:
    station_id: str

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        offline: bool = False,
        number_of_phases_used: int | None = None,
        reservation_id: int | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        **extra: Any,
    ) -> call_result.TransactionEvent:
        result = await run(
            transaction_event, self.station_id, event_type, timestamp, trigger_reason, seq_no, transaction_info,
            evse["id"] if evse else None, evse.get("connector_id") if evse else None,
            id_token["id_token"] if id_token else None, id_token["type"] if id_token else None,
            meter_values(meter_value), offline, number_of_phases_used, reservation_id,
        )
        # totalCost only in the answer to Ended (the specification: the final cost; 0 is free of charge).
        total_cost = float(result.total_cost) if event_type == "Ended" and result.total_cost is not None else None
        return call_result.TransactionEvent(
            total_cost=total_cost,
            id_token_info=id_token_info(result.authorization) if result.authorization else None,
        )
