"""What a charger tells about itself: boot, connector status, data transfer, firmware;
the registration status an operator gives it; the outcomes of commands sent to it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from csms.events import atomic, emit
from stations import values
from stations.models import Connector, Station
from stations.services._common import _charger_time, _connector, iso, log


def registration_status(station_id: str) -> str:
    return Station.objects.filter(pk=station_id).values_list("registration_status", flat=True).first() or ""


def set_registration_status(station_id: str, status: str, *, actor: str = "") -> None:
    with atomic():
        Station.objects.filter(pk=station_id).update(registration_status=status)
        emit("station.registration.changed", station_id, {"stationId": station_id, "status": status}, actor=actor)


def record_boot(station_id: str, info: dict[str, str]) -> str:
    """Store BootNotification details; return the registration status to answer."""
    fields = {
        "vendor": info.get("charge_point_vendor", ""),
        "model": info.get("charge_point_model", ""),
        "serial_number": info.get("charge_point_serial_number") or info.get("charge_box_serial_number", ""),
        "firmware_version": info.get("firmware_version", ""),
        "iccid": info.get("iccid", ""),
        "imsi": info.get("imsi", ""),
        "meter_type": info.get("meter_type", ""),
        "meter_serial_number": info.get("meter_serial_number", ""),
    }
    now = timezone.now()
    Station.objects.filter(pk=station_id).update(last_boot_at=now, last_activity=now, **fields)
    return registration_status(station_id)



def update_connector_status(
    station_id: str,
    connector_id: int,
    status: str,
    error_code: str = "NoError",
    *,
    info: str = "",
    vendor_error_code: str = "",
    timestamp: str | None = None,
) -> None:
    received = timezone.now()
    problems = values.Problems()
    connector_id = values.column_int(Connector, "number", connector_id, "connectorId")
    updated_at = _charger_time(timestamp, received, problems, strict=True)
    with atomic():
        connector = _connector(station_id, connector_id)
        connector.status = status
        connector.error_code = error_code
        connector.info = info or ""
        connector.vendor_error_code = vendor_error_code or ""
        connector.updated_at = updated_at
        connector.save()
        if connector_id != 0:  # connector 0 is the station itself; its status is derived from the connectors
            emit(
                "connector.status.changed",
                station_id,
                {
                    "stationId": station_id,
                    "connectorId": connector_id,
                    "status": status,
                    "errorCode": None if error_code == "NoError" else error_code,
                    "transactionId": connector.current_transaction_id,
                    "timestamp": iso(connector.updated_at),
                },
            )
    problems.log(log, station_id, "StatusNotification")


def record_data_transfer(station_id: str, vendor_id: str, message_id: str | None, data: str | None) -> str:
    emit(
        "station.data_transfer",
        station_id,
        {"stationId": station_id, "vendorId": vendor_id, "messageId": message_id, "data": data},
    )
    return "Accepted" if vendor_id in settings.OCPP_DATA_TRANSFER_VENDORS else "UnknownVendorId"


def record_firmware_status(station_id: str, kind: str, status: str) -> None:
    emit(kind, station_id, {"stationId": station_id, "status": status})



def record_command(kind: str, station_id: str, data: dict[str, Any], *, actor: str = "") -> None:
    """Record the outcome of a CSMS-initiated command in the event log."""
    emit(kind, station_id, data, actor=actor)
