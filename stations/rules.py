"""Pure decisions of the charging domain, tested without a database or socket."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TypedDict

from stations.values import excerpt, finite

# Connector statuses that mean "a transaction holds this connector" (a 2.0.1 connector with a transaction
# shows its TransactionEvent's chargingState: Charging, SuspendedEV, SuspendedEVSE; EVConnected/Idle: Occupied).
CHARGING_STATUSES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
# Statuses no remote start is sent to. 2.0.1's Occupied (an EV is plugged in) is not one: like 1.6's
# Preparing it is a vehicle waiting for its start (F01, cable plugged in first); a connector whose
# transaction holds it is busy by that transaction, whatever its status.
BUSY_STATUSES = CHARGING_STATUSES | {"Finishing", "Reserved", "Faulted", "Unavailable"}


# How one EVSE's connectors make the status the mobile API shows for it (a 2.0.1 EVSE may have several, and
# charges through one at a time): the one in use, else Reserved, else Available if any is, else the fault.
_EVSE_ORDER = (*sorted(CHARGING_STATUSES), "Occupied", "Preparing", "Finishing", "Reserved", "Available",
               "Faulted", "Unavailable")


def evse_status(connector_statuses: Iterable[str]) -> str:
    """The status of an EVSE from its connectors' (a single connector's is its own)."""
    statuses = list(connector_statuses)
    if len(statuses) == 1:
        return statuses[0]
    rank = {status: index for index, status in enumerate(_EVSE_ORDER)}
    return min(statuses, key=lambda status: rank.get(status, len(rank)), default="Unavailable")


def station_status(is_online: bool, connector_statuses: Iterable[str]) -> str:
    """The station status the mobile API shows.

    Offline when the socket is closed; Charging when any connector charges;
    Available when every connector is available; PartiallyAvailable when
    some are; Unavailable when none is available or charging (or there are no
    connectors to use). Connector 0 (the station itself) is not counted. 2.0.1's
    Occupied (plugged in, not charging) is not available, as 1.6's Preparing is not.
    """
    if not is_online:
        return "Offline"
    statuses = list(connector_statuses)
    if any(status in CHARGING_STATUSES for status in statuses):
        return "Charging"
    available = sum(status == "Available" for status in statuses)
    if statuses and available == len(statuses):
        return "Available"
    if available:
        return "PartiallyAvailable"
    return "Unavailable"


def session_energy_wh(register: float | None, meter_start: int) -> int:
    """Wh a session has delivered by a register reading: the rise over meterStart, in whole Wh, never negative.

    The one rule for every energy the CSMS shows (the admin, the mobile API, the
    HTTP API, the events) and stores (``Transaction.energy_wh``). Never negative:
    an import register does not run backwards, so a reading below meterStart is a
    row stored before the plausibility checks (``values.plausible_energy``) or a
    replaced meter, not energy given back. Whole Wh: registers are floats (a
    charger may send 0.0285 kWh) and every reply and event shows integer Wh
    (``values.wh``), rounded after subtracting, as the mobile API always has. No
    reading yet (None) is nothing delivered.
    """
    if register is None:
        return 0
    return int(round(max(register - meter_start, 0)))


def compute_cost(
    energy_wh: int,
    duration_s: int,
    *,
    price_per_kwh: Decimal,
    price_per_minute: Decimal = Decimal("0"),
    session_fee: Decimal = Decimal("0"),
) -> Decimal:
    """Cost of a session, rounded half-up to cents: 15500 Wh at 0.10/kWh is 1.55."""
    energy_kwh = Decimal(max(energy_wh, 0)) / Decimal(1000)
    minutes = Decimal(max(duration_s, 0)) / Decimal(60)
    total = energy_kwh * price_per_kwh + minutes * price_per_minute + session_fee
    return total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class TagRecord:
    status: str
    expiry_date: dt.datetime | None
    group_id: str | None


class Authorization(TypedDict):
    """May a token charge, in no OCPP version's words; each adapter renders it (1.6: idTagInfo)."""

    status: str  # an IdTagStatus: Accepted, Blocked, Expired, Invalid, ConcurrentTx
    expires_at: dt.datetime | None
    group_id: str | None


def authorization(record: TagRecord | None, *, accept_unknown: bool, now: dt.datetime) -> Authorization:
    """The authorization of a token, from its row (None: not in the table, the unknown-token policy decides)."""
    if record is None:
        return {"status": "Accepted" if accept_unknown else "Invalid", "expires_at": None, "group_id": None}
    status = record.status
    if status == "Accepted" and record.expiry_date is not None and record.expiry_date <= now:
        status = "Expired"
    return {"status": status, "expires_at": record.expiry_date, "group_id": record.group_id or None}


def boot_status(known: bool, registration_status: str | None, unknown_policy: str) -> str | None:
    """BootNotification answer for a station; None means refuse the connection."""
    if known:
        return registration_status
    return {"accept": "Accepted", "pending": "Pending", "reject": None}[unknown_policy]


# Unit conversions for MeterValues: value * factor gives Wh, W, A, V or %.
UNIT_FACTORS = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0, "V": 1.0, "Percent": 1.0}
MEASURAND_FIELDS = {
    "Energy.Active.Import.Register": "energy_wh",
    "Power.Active.Import": "power_w",
    "Current.Import": "current_a",
    "Voltage": "voltage_v",
    "SoC": "soc",
}
DEFAULT_UNITS = {"energy_wh": "Wh", "power_w": "W", "current_a": "A", "voltage_v": "V", "soc": "Percent"}


def summarize_sampled_values(
    sampled_values: list[dict], on_drop: Callable[[str], None] | None = None
) -> dict[str, float]:
    """The common measurands of one MeterValue, converted to Wh, W, A, V and %.

    A value without a phase wins; otherwise power is the sum of the phases,
    and current and voltage their mean. Signed data and unknown units are skipped.
    A value that is no finite number ("NaN", "Infinity", "1e999", "abc") is
    dropped and reported to ``on_drop``: it is not JSON, and PostgreSQL would
    refuse the whole message's event for it.
    """
    totals: dict[str, float] = {}
    phased: dict[str, list[float]] = {}
    for sample in sampled_values:
        field = MEASURAND_FIELDS.get(sample.get("measurand") or "Energy.Active.Import.Register")
        if field is None or sample.get("format") == "SignedData":
            continue
        factor = UNIT_FACTORS.get(sample.get("unit") or DEFAULT_UNITS[field])
        if factor is None:
            continue
        value = finite(sample.get("value"))  # a string per the schema
        value = finite(value * factor) if value is not None else None  # 1e308 kWh is no finite Wh
        if value is None:
            if on_drop is not None:
                on_drop(f"{field} value {excerpt(sample.get('value'))} is not a finite number")
            continue
        phase = sample.get("phase")
        if phase and phase.startswith("L") and field != "energy_wh":
            phased.setdefault(field, []).append(value)
        elif not phase or field == "energy_wh":
            totals.setdefault(field, value)
    for field, values in phased.items():
        combined = finite(sum(values) if field == "power_w" else sum(values) / len(values))  # 2 x 1e308 is inf
        if field not in totals and combined is not None:
            totals[field] = combined
    return totals

