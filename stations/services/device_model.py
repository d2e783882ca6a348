"""A 2.0.1 station's device model (components, variables, their attributes) as the CSMS keeps it.

Filled from NotifyReport (the station's answer to GetBaseReport/GetReport, in parts) and from the
answers to GetVariables and SetVariables. One DeviceVariable row per attribute (Actual, Target,
MinSet, MaxSet) of a variable; absent EVSE and connector are 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from csms.events import emit
from stations.models import DeviceVariable

log = logging.getLogger(__name__)

# The columns that name one attribute (the unique constraint) and those a report sets.
IDENTITY = ("station", "component", "component_instance", "evse", "connector", "variable", "variable_instance",
            "attribute_type")
REPORTED = ("value", "mutability", "persistent", "constant", "data_type", "unit", "min_limit", "max_limit",
            "values_list", "updated_at")
# The columns of an attribute's identity within its station (_key's order).
KEY = IDENTITY[1:]
# Rows per INSERT ... ON CONFLICT: a part's thousands of attributes go in statements of bounded size.
BATCH = 500

ATTRIBUTE_TYPES = frozenset({"Actual", "Target", "MinSet", "MaxSet"})
MUTABILITIES = frozenset({"ReadOnly", "WriteOnly", "ReadWrite"})
# The widths of the columns (the 2.0.1 schema's own limits: CiString50, 2500, 16, 1000).
_WIDTHS: dict[str, int] = {field.name: field.max_length for field in DeviceVariable._meta.concrete_fields
                           if field.max_length}


@dataclass(frozen=True)
class VariableRef:
    """One variable attribute as GetVariables/SetVariables name it (snake case)."""

    component: str
    variable: str
    component_instance: str = ""
    variable_instance: str = ""
    evse: int = 0  # 0: none (the station's own component)
    connector: int = 0
    attribute_type: str = "Actual"

    def wire(self) -> dict[str, Any]:
        """The component and variable as the 2.0.1 payloads carry them (camelCase)."""
        component: dict[str, Any] = {"name": self.component}
        if self.component_instance:
            component["instance"] = self.component_instance
        if self.evse:
            component["evse"] = {"id": self.evse, **({"connectorId": self.connector} if self.connector else {})}
        variable: dict[str, Any] = {"name": self.variable}
        if self.variable_instance:
            variable["instance"] = self.variable_instance
        return {"component": component, "variable": variable}


class _Malformed(ValueError):
    pass


def _text(value: Any, column: str, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise _Malformed(f"{column} missing")
        return ""
    if not isinstance(value, str) or len(value) > _WIDTHS[column] or (required and not value):
        raise _Malformed(f"{column} not a string of at most {_WIDTHS[column]} characters")
    return value


def _number(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise _Malformed("evse/connector not a non-negative integer")
    return value


def _limit(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rows(station_id: str, report_data: Iterable[Any]) -> Iterator[DeviceVariable | None]:
    """One row per reported attribute; None for an entry that cannot be read (the others are kept)."""
    for entry in report_data:
        try:
            component, variable = entry["component"], entry["variable"]
            evse = component.get("evse") or {}
            identity = {
                "component": _text(component.get("name"), "component", required=True),
                "component_instance": _text(component.get("instance"), "component_instance"),
                "evse": _number(evse.get("id")),
                "connector": _number(evse.get("connector_id")),
                "variable": _text(variable.get("name"), "variable", required=True),
                "variable_instance": _text(variable.get("instance"), "variable_instance"),
            }
            characteristics = entry.get("variable_characteristics") or {}
            described = {
                "data_type": _text(characteristics.get("data_type"), "data_type"),
                "unit": _text(characteristics.get("unit"), "unit"),
                "min_limit": _limit(characteristics.get("min_limit")),
                "max_limit": _limit(characteristics.get("max_limit")),
                "values_list": _text(characteristics.get("values_list"), "values_list"),
            }
            attributes = entry.get("variable_attribute") or ()
            rows = []
            for attribute in attributes[:len(ATTRIBUTE_TYPES)]:
                kind = attribute.get("type") or "Actual"
                mutability = attribute.get("mutability") or "ReadWrite"
                if kind not in ATTRIBUTE_TYPES or mutability not in MUTABILITIES:
                    raise _Malformed("attribute type or mutability unknown")
                value = _text(attribute.get("value"), "value")
                rows.append(DeviceVariable(
                    station_id=station_id, **identity, **described, attribute_type=kind,
                    # A WriteOnly attribute's value (a secret such as a password) is never kept.
                    value="" if mutability == "WriteOnly" else value, mutability=mutability,
                    persistent=attribute.get("persistent") is True, constant=attribute.get("constant") is True))
        except (_Malformed, KeyError, TypeError, AttributeError):
            yield None
            continue
        yield from rows


def _key(row: DeviceVariable) -> tuple[Any, ...]:
    return (row.component, row.component_instance, row.evse, row.connector, row.variable, row.variable_instance,
            row.attribute_type)


def _unique(rows: list[DeviceVariable]) -> list[DeviceVariable]:
    # Last one wins within a statement: ON CONFLICT cannot touch one row twice.
    return list({_key(row): row for row in rows}.values())


def _upsert(rows: list[DeviceVariable], fields: tuple[str, ...]) -> None:
    DeviceVariable.objects.bulk_create(_unique(rows), update_conflicts=True, unique_fields=list(IDENTITY),
                                       update_fields=list(fields))


class _Cap:
    """OCPP_DEVICE_MODEL_MAX_ATTRIBUTES: the rows a station may have. ``stored`` starts as its count; a
    batch that may go over is checked exactly (its rows already stored are updates and always kept)."""

    def __init__(self, station_id: str) -> None:
        self.station_id = station_id
        self.limit = settings.OCPP_DEVICE_MODEL_MAX_ATTRIBUTES
        self.stored = self.at_start = DeviceVariable.objects.filter(station_id=station_id).count()

    def admit(self, rows: list[DeviceVariable]) -> tuple[list[DeviceVariable], int]:
        """The rows to upsert and the number over the limit (skipped)."""
        rows = _unique(rows)
        if self.stored + len(rows) <= self.limit:
            self.stored += len(rows)  # an upper bound (some may be updates): exact again below if needed
            return rows, 0
        mine = DeviceVariable.objects.filter(station_id=self.station_id)
        self.stored = mine.count()
        known = set(mine.filter(component__in={row.component for row in rows},
                                    variable__in={row.variable for row in rows}).values_list(*KEY))
        kept, over = [], 0
        for row in rows:
            if _key(row) in known:
                kept.append(row)
            elif self.stored < self.limit:
                kept.append(row)
                self.stored += 1
            else:
                over += 1
        return kept, over


def _store(batch: list[DeviceVariable], cap: _Cap) -> tuple[int, int]:
    """Upsert what the cap admits of a batch; (rows stored, rows over the cap)."""
    kept, over = cap.admit(batch)
    if kept:
        _upsert(kept, REPORTED)
    return len(kept), over


def record_report(
    station_id: str, request_id: int, generated_at: str, seq_no: int, tbc: bool,
    report_data: Iterable[Mapping[str, Any]] | None, reported_before: int = 0, skipped_before: int = 0,
) -> tuple[int, int]:
    """Store one NotifyReport part: each attribute upserted by its identity (the report's values replace
    the stored ones). Returns (attributes stored, entries skipped: unreadable, or new attributes beyond
    OCPP_DEVICE_MODEL_MAX_ATTRIBUTES rows for the station). The last part (tbc
    false) is announced as ``station.device_model.reported`` with the report's totals (``reported_before``,
    ``skipped_before``: what its earlier parts stored and skipped, as the connection counted them)."""
    stored = skipped = over = 0
    cap = _Cap(station_id)
    batch: list[DeviceVariable] = []
    for row in _rows(station_id, report_data or ()):
        if row is None:
            skipped += 1
            continue
        batch.append(row)
        if len(batch) >= BATCH:
            done, beyond = _store(batch, cap)
            stored, over, batch = stored + done, over + beyond, []
    if batch:
        done, beyond = _store(batch, cap)
        stored, over = stored + done, over + beyond
    if over and (cap.at_start < cap.limit or seq_no == 0):  # once per report: the part that reached the limit
        log.warning("Station %s: device model report %s goes over OCPP_DEVICE_MODEL_MAX_ATTRIBUTES (%s): "
                    "%s attributes of part %s skipped, and any more the report brings",
                    station_id, request_id, cap.limit, over, seq_no)
    skipped += over
    if not tbc:
        emit("station.device_model.reported", station_id, {
            "stationId": station_id, "requestId": request_id, "seqNo": seq_no, "generatedAt": generated_at,
            "variables": reported_before + stored, "skipped": skipped_before + skipped})
    return stored, skipped


def store_values(station_id: str, values: Iterable[tuple[VariableRef, str]]) -> int:
    """Store values a station answered (GetVariables) or took (SetVariables); a variable not reported yet
    gets a row of its own (mutability as the model's default until a report says otherwise). The value of
    an attribute reported WriteOnly is stored as ""."""
    rows = [DeviceVariable(station_id=station_id, component=ref.component, component_instance=ref.component_instance,
                           evse=ref.evse, connector=ref.connector, variable=ref.variable,
                           variable_instance=ref.variable_instance, attribute_type=ref.attribute_type,
                           value=value[:_WIDTHS["value"]])
            for ref, value in values]
    if rows:
        write_only = set(DeviceVariable.objects.filter(station_id=station_id, mutability="WriteOnly")
                         .values_list(*KEY))
        for row in rows:
            if _key(row) in write_only:
                row.value = ""
        _upsert(rows, ("value", "updated_at"))
    return len(rows)


def device_model(station_id: str) -> list[DeviceVariable]:
    return list(DeviceVariable.objects.filter(station_id=station_id))


def has_device_model(station_id: str) -> bool:
    """Whether a station has reported any of its device model."""
    return DeviceVariable.objects.filter(station_id=station_id).exists()
