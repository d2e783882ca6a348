"""B Provisioning and G Availability: boot, heartbeat, status; P DataTransfer; firmware, log and event
notifications."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone
from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from csms.events import call_service
from stations import services
from stations.ocpp.dispatch import run
from stations.services import device_model

log = logging.getLogger("stations.ocpp")


def boot_info(charging_station: dict[str, Any], reason: str) -> services.BootInfo:
    """A BootNotification's chargingStation (snake case) in the station's words."""
    modem = charging_station.get("modem") or {}
    return services.BootInfo(
        vendor=charging_station.get("vendor_name", ""),
        model=charging_station.get("model", ""),
        serial_number=charging_station.get("serial_number", ""),
        firmware_version=charging_station.get("firmware_version", ""),
        iccid=modem.get("iccid", ""),
        imsi=modem.get("imsi", ""),
        reason=reason,
    )


class ProvisioningHandlers:
    station_id: str
    registration_status: str
    device_model_asked = False

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **extra: Any
    ) -> call_result.BootNotification:
        status = await run(services.record_boot, self.station_id, boot_info(charging_station, reason))
        self.registration_status = status
        return call_result.BootNotification(
            current_time=services.iso(timezone.now()),
            interval=settings.OCPP_HEARTBEAT_INTERVAL,
            status=status,
        )

    @after(Action.boot_notification)
    async def after_boot_notification(self, **payload: Any) -> None:
        """B02: a Pending station is one the CSMS wants to know more about before accepting it. Once
        its boot is answered, the CSMS asks it for its whole device model (GetBaseReport FullInventory)
        unless it has one already, so that the operator deciding on it sees what it is; with
        OCPP_DEVICE_MODEL_ON_BOOT "always", an Accepted station without one too."""
        wanted = settings.OCPP_DEVICE_MODEL_ON_BOOT
        if self.device_model_asked:  # once per connection, however often it boots
            return
        if not (self.registration_status == "Pending" and wanted in ("pending", "always")
                or self.registration_status == "Accepted" and wanted == "always"):
            return
        self.device_model_asked = True
        from stations.commands import CommandError
        from stations.commands.device_model import request_report
        from stations.errors import DomainError

        try:
            if await call_service(device_model.has_device_model, self.station_id):
                return
            status, request_id = await request_report(self.station_id, "FullInventory",
                                                      actor="system:boot")
            log.info("[OCPP:GetBaseReport] station=%s %s: device model asked (requestId %s): %s",
                     self.station_id, self.registration_status, request_id, status)
        except (CommandError, DomainError) as error:
            log.warning("[OCPP:GetBaseReport] station=%s Pending: device model not asked: %s", self.station_id,
                        error)
        except Exception:
            log.exception("[OCPP:GetBaseReport] station=%s Pending: device model not asked", self.station_id)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **extra: Any) -> call_result.Heartbeat:
        # Activity is tracked in memory and flushed periodically (stations/presence.py).
        return call_result.Heartbeat(current_time=services.iso(timezone.now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **extra: Any
    ) -> call_result.StatusNotification:
        # 2.0.1 reports no error code here (faults come as NotifyEvent); Occupied is a status of its own.
        await run(services.update_connector_status, self.station_id, evse_id, connector_status, None,
                  timestamp=timestamp, connector_id=connector_id, several_per_evse=True)
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **extra: Any
    ) -> call_result.DataTransfer:
        # 2.0.1's data is any JSON value; the event stores it as it came.
        status = await run(services.record_data_transfer, self.station_id, vendor_id, message_id, data)
        return call_result.DataTransfer(status=status)

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str, **extra: Any) -> call_result.FirmwareStatusNotification:
        await run(services.record_firmware_status, self.station_id, "station.firmware.status", status)
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(self, status: str, **extra: Any) -> call_result.LogStatusNotification:
        await run(services.record_firmware_status, self.station_id, "station.diagnostics.status", status)
        return call_result.LogStatusNotification()

    @on(Action.notify_event)
    async def on_notify_event(
        self, generated_at: str, seq_no: int, event_data: list[dict[str, Any]], **extra: Any
    ) -> call_result.NotifyEvent:
        # Monitoring events (a variable's value crossing a monitor, a fault): answered, logged; the
        # device model keeps the reported values (stations/ocpp/v201/device_model.py).
        return call_result.NotifyEvent()
