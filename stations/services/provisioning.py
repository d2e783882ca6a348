"""What a charger tells about itself: boot, connector status, data transfer, firmware;
the registration status an operator gives it; the outcomes of commands sent to it;
stations as an operator provisions them (``manage.py station``, ``import_network``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from csms import wire
from csms.events import atomic, emit
from stations import rules, values
from stations.errors import Conflict, InvalidValue
from stations.models import Connector, ConnectorStatus, OcppVersion, RegistrationStatus, Station, Transaction
from stations.services._common import _charger_time, _connector, iso, log
from stations.services.connections import check_station_password, set_station_password


def registration_status(station_id: str) -> str:
    return Station.objects.filter(pk=station_id).values_list("registration_status", flat=True).first() or ""


def set_registration_status(station_id: str, status: str, *, actor: str = "") -> None:
    with atomic():
        Station.objects.filter(pk=station_id).update(registration_status=status)
        emit("station.registration.changed", station_id, {"stationId": station_id, "status": status}, actor=actor)


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What a booting charger says about itself, in the station's words (each adapter maps its message)."""

    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    iccid: str = ""
    imsi: str = ""
    meter_type: str = ""
    meter_serial_number: str = ""
    reason: str = ""  # why it booted (2.0.1 BootReasonEnumType: PowerUp, RemoteReset, ...); 1.6 does not say


def record_boot(station_id: str, info: BootInfo) -> str:
    """Store what a booting charger says (all of it: what it leaves out is cleared); return the
    registration status to answer.

    A 2.0.1 station's boot in a new connection (its last boot was before it connected), for another reason
    than Triggered, is a reboot: the transactions it left open are closed
    (``transaction_events.close_after_reboot``)."""
    now = timezone.now()
    seen = Station.objects.filter(pk=station_id).values_list(
        "registration_status", "ocpp_version", "connected_at", "last_boot_at").first()
    Station.objects.filter(pk=station_id).update(
        last_boot_at=now, last_activity=now, vendor=info.vendor, model=info.model, serial_number=info.serial_number,
        firmware_version=info.firmware_version, iccid=info.iccid, imsi=info.imsi, meter_type=info.meter_type,
        meter_serial_number=info.meter_serial_number,
    )
    if seen is None:
        return ""
    status, version, connected_at, last_boot_at = seen
    if version == OcppVersion.V201 and info.reason != "Triggered" and (
        last_boot_at is None or connected_at is None or last_boot_at < connected_at
    ):
        from stations.services.transaction_events import close_after_reboot  # it imports this module's users

        close_after_reboot(station_id, info.reason)
    return status


# What the column stores for "no error" (its default since the first schema; the mobile API answers null).
NO_ERROR = "NoError"


def update_connector_status(
    station_id: str,
    evse_id: int,
    status: str,
    error_code: str | None = None,
    *,
    info: str = "",
    vendor_error_code: str = "",
    timestamp: str | None = None,
    connector_id: int = 1,
    several_per_evse: bool = False,
) -> None:
    """Store a connector's status; ``error_code`` None or "" is no error (an adapter maps its version's spelling).
    ``connector_id`` is the connector within EVSE ``evse_id`` (1.6: always 1). With ``several_per_evse``
    (2.0.1: an EVSE may have several connectors) the event announces the EVSE's status from all its
    connectors (``rules.evse_status``), as the mobile API shows an EVSE as one connector."""
    received = timezone.now()
    problems = values.Problems()
    evse_id = values.column_int(Connector, "number", evse_id, "connectorId")
    connector_id = values.column_int(Connector, "connector_id", connector_id, "connectorId")
    updated_at = _charger_time(timestamp, received, problems, strict=True)
    with atomic():
        connector = _connector(station_id, evse_id, connector_id)
        if status == ConnectorStatus.OCCUPIED and connector.current_transaction_id:
            from stations.services.transaction_events import CONNECTOR_STATES  # it imports this module's users

            # 2.0.1 says Occupied for any connector in use; its transaction's chargingState says more
            # (Charging, SuspendedEV, SuspendedEVSE: what TransactionEvent set), and is kept.
            state = Transaction.objects.filter(pk=connector.current_transaction_id).values_list(
                "charging_state", flat=True).first()
            status = CONNECTOR_STATES.get(state or "", status)
        connector.status = status
        connector.error_code = error_code or NO_ERROR
        connector.info = info or ""
        connector.vendor_error_code = vendor_error_code or ""
        connector.updated_at = updated_at
        connector.save()
        shown, transaction_id = status, connector.current_transaction_id
        if evse_id != 0 and several_per_evse:
            rows = list(Connector.objects.filter(station_id=station_id, number=evse_id)
                        .values_list("status", "current_transaction_id"))
            shown = rules.evse_status(row_status for row_status, _ in rows)
            transaction_id = next((tx for _, tx in rows if tx is not None), None)
        if evse_id != 0:  # EVSE 0 is the station itself; its status is derived from the connectors
            emit(
                "connector.status.changed",
                station_id,
                {
                    "stationId": station_id,
                    "connectorId": evse_id,
                    "status": shown,
                    "errorCode": error_code or None,
                    "transactionId": transaction_id,
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


# --- Stations as an operator provisions them (manage.py station, import_network) ---------

@dataclass(frozen=True)
class Provisioned:
    """What provisioning one station or token did: ``changes`` are what a new one was given, or what
    changed on an existing one (none: nothing changed)."""

    key: str
    created: bool = False
    changes: tuple[str, ...] = ()
    password: str = ""  # a station password generated now: shown once, never stored in clear

    @property
    def changed(self) -> bool:
        return self.created or bool(self.changes)


def provision_station(
    station_id: str, *, name: str | None = None, accepted: bool = False, password: str | None = None, actor: str = ""
) -> Provisioned:
    """Create or update a station; what is not given stays as it is, so the same call twice changes nothing.

    A new station gets the unknown-station policy's registration status (Pending where the policy refuses
    unknown stations: registering it is not accepting it) and, without a password, a generated one, as does
    a known station that has none: after this, the station can authenticate.
    """
    if not wire.is_station_id(station_id):
        raise InvalidValue(f"{station_id!r} is not a station identity (1 to 64 characters, no spaces, '/' or '\\')")
    if name is not None:
        values.column_text(Station, "name", name, "name")
    if password == "":
        raise InvalidValue("the password is empty (leave it out to have one generated)")
    with atomic():
        station = Station.objects.select_for_update().filter(pk=station_id).first()
        created = station is None
        if station is None:
            station = Station.objects.create(pk=station_id, name=name or "", registration_status=_new_status(accepted))
            emit("station.registration.changed", station_id,
                 {"stationId": station_id, "status": station.registration_status}, actor=actor)
            changes = [f"registration {station.registration_status}", *([f"name {name!r}"] if name else [])]
        else:
            changes = _update_station(station, name, accepted, actor)
        generated = _provision_password(station, password, actor)
        if generated is not None:
            changes.append("password generated" if generated else "password set")
    return Provisioned(station_id, created, tuple(changes), generated or "")


def _new_status(accepted: bool) -> str:
    if accepted:
        return RegistrationStatus.ACCEPTED
    return rules.boot_status(False, None, settings.OCPP_UNKNOWN_STATIONS) or RegistrationStatus.PENDING


def _update_station(station: Station, name: str | None, accepted: bool, actor: str) -> list[str]:
    changes = []
    if name is not None and name != station.name:
        changes.append(f"name {station.name!r} -> {name!r}")
        Station.objects.filter(pk=station.pk).update(name=name)
    if accepted and station.registration_status != RegistrationStatus.ACCEPTED:
        changes.append(f"registration {station.registration_status} -> Accepted")
        set_registration_status(station.pk, RegistrationStatus.ACCEPTED, actor=actor)
    return changes


def _provision_password(station: Station, password: str | None, actor: str) -> str | None:
    """Set the password given unless it is already the station's, or generate one for a station without any.
    None: nothing set; "": the one given; else the generated one."""
    if station.password_hash and (password is None or check_station_password(password, station.password_hash)):
        return None
    secret = set_station_password(station.pk, password)
    emit("station.password.set", station.pk, {"stationId": station.pk}, actor=actor)
    return "" if password else secret


def remove_station(station_id: str) -> bool:
    """Delete a station, its connectors and meter samples; False: there was none.

    Its transactions are billing records, so a station that has any is refused (reject it instead), and
    so is one connected now, whose socket would outlive its row.
    """
    with atomic():
        station = Station.objects.select_for_update().filter(pk=station_id).first()
        if station is None:
            return False
        if station.is_online:
            raise Conflict(f"station {station_id} is connected: remove it once its charger is offline")
        transactions = Transaction.objects.filter(station=station).count()
        if transactions:
            raise Conflict(f"station {station_id} has {transactions} transaction(s), which are billing records and "
                           "are kept: set its registration to Rejected instead")
        station.delete()
    return True
