"""J Meter values: MeterValues, and the reading of every 2.0.1 meterValue (MeterValues and TransactionEvent)
in the shape the metering service stores (1.6's sampledValue: the value as text, its unit beside it)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from stations import services
from stations.ocpp.dispatch import run

# The fields a 2.0.1 sampledValue shares with 1.6's, under the same (snake case) names.
_SAME = ("measurand", "phase", "location", "context")


def _scaled(value: int | float, multiplier: int) -> float:
    """``value`` times 10^multiplier, exact in decimal (1e-05, 1e20 as json prints them). Infinity, NaN
    or a result beyond a float: inf, which the metering rules drop (an OverflowError would answer the
    whole message InternalError)."""
    try:
        scaled = Decimal(repr(value) if isinstance(value, float) else value).scaleb(multiplier)
        result = float(scaled) if scaled.is_finite() else math.inf
    except (ArithmeticError, ValueError):
        return math.inf
    return result if math.isfinite(result) else math.inf


def sampled_value(sample: dict[str, Any]) -> dict[str, Any]:
    """One 2.0.1 sampledValue (snake case) as 1.6's: ``value`` a decimal string with unitOfMeasure's
    multiplier applied (10^multiplier), ``unit`` its unit; signedMeterValue kept as it came."""
    value = sample.get("value")
    unit = sample.get("unit_of_measure")
    converted: dict[str, Any] = {}
    if unit:
        multiplier = unit.get("multiplier")
        if multiplier and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _scaled(value, multiplier)
        if unit.get("unit"):
            converted["unit"] = unit["unit"]
    converted["value"] = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    for name in _SAME:
        if name in sample:
            converted[name] = sample[name]
    if "signed_meter_value" in sample:
        converted["signed_meter_value"] = sample["signed_meter_value"]
    return converted


def meter_values(meter_value: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """2.0.1 meterValue (snake case) as the metering service reads 1.6's: ``[{timestamp, sampled_value}]``."""
    return [
        {"timestamp": reading.get("timestamp"),
         "sampled_value": [sampled_value(sample) for sample in reading.get("sampled_value") or ()]}
        for reading in meter_value or ()
    ]


class MeteringHandlers:
    station_id: str

    @on(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **extra: Any
    ) -> call_result.MeterValues:
        # evseId 0 is the main meter (the station itself); readings outside a transaction belong to none.
        # A 2.0.1 MeterValues names no transaction: the readings go to the EVSE's current one.
        await run(services.record_meter_values, self.station_id, evse_id, None, meter_values(meter_value))
        return call_result.MeterValues()
