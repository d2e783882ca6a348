"""Boot, heartbeat, status, data transfer and firmware/diagnostics notifications."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, ChargePointErrorCode

from stations import services
from stations.ocpp.dispatch import run
from stations.services.security import record_security_event


def boot_info(payload: dict[str, str]) -> services.BootInfo:
    """A BootNotification's fields (snake case); the charge point's serial number wins over the charge box's,
    which 1.6 deprecates."""
    return services.BootInfo(
        vendor=payload.get("charge_point_vendor", ""),
        model=payload.get("charge_point_model", ""),
        serial_number=payload.get("charge_point_serial_number") or payload.get("charge_box_serial_number", ""),
        firmware_version=payload.get("firmware_version", ""),
        iccid=payload.get("iccid", ""),
        imsi=payload.get("imsi", ""),
        meter_type=payload.get("meter_type", ""),
        meter_serial_number=payload.get("meter_serial_number", ""),
    )


class ProvisioningHandlers:
    station_id: str
    registration_status: str

    @on(Action.boot_notification)
    async def on_boot_notification(self, **payload: str) -> call_result.BootNotification:
        status = await run(services.record_boot, self.station_id, boot_info(payload))
        self.registration_status = status
        return call_result.BootNotification(
            current_time=services.iso(timezone.now()),
            interval=settings.OCPP_HEARTBEAT_INTERVAL,
            status=status,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        # Activity is tracked in memory and flushed periodically (see activity.py):
        # a DB write per heartbeat caps a process at a few hundred chargers/s.
        return call_result.Heartbeat(current_time=services.iso(timezone.now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **extra: Any
    ) -> call_result.StatusNotification:
        await run(
            services.update_connector_status,
            self.station_id,
            connector_id,
            status,
            None if error_code == ChargePointErrorCode.no_error else error_code,
            info=extra.get("info", ""),
            vendor_error_code=extra.get("vendor_error_code", ""),
            timestamp=extra.get("timestamp"),
        )
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> call_result.DataTransfer:
        status = await run(services.record_data_transfer, self.station_id, vendor_id, message_id, data)
        return call_result.DataTransfer(status=status)

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str) -> call_result.FirmwareStatusNotification:
        await run(services.record_firmware_status, self.station_id, "station.firmware.status", status)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, status: str) -> call_result.DiagnosticsStatusNotification:
        await run(services.record_firmware_status, self.station_id, "station.diagnostics.status", status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event_notification(
        self, type: str, timestamp: str, tech_info: str | None = None, **extra: Any
    ) -> call_result.SecurityEventNotification:
        # The 1.6 security whitepaper's message, stored as 2.0.1's is (station.security_event).
        await run(record_security_event, self.station_id, type, timestamp, tech_info)
        return call_result.SecurityEventNotification()
