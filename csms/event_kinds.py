"""Every kind of event, declared once: its name, its payload and who sees it.

``csms.events.emit`` records any kind it is given (the hot path pays no check);
``tests/test_event_kinds.py`` reads the sources and fails for an emitted kind
or payload field that is not declared here. The sets the mobile API works
from (which kinds it shows, which invalidate getStations, which go to a
command's issuer) are derived from the traits below, so a new kind is one
member of ``EventKind`` and, if it has new fields, one payload class.

No ``from __future__ import annotations`` here: Python 3.11's TypedDict does
not see ``NotRequired`` in a string annotation.
"""

from enum import Flag, StrEnum, auto
from typing import Any, NotRequired, TypedDict


class Trait(Flag):
    NONE = 0
    PUBLIC = auto()  # mobile clients see it: pushed to subscribers, replayed by getEventsSince and /api/events
    STATE = auto()  # changes what getStations shows: each process's station snapshot is read again
    OWN = auto()  # also pushed to the connection whose command it answers (its correlationId), subscribed or not
    DIRECT = auto()  # sent to one connection only, never published; a client may still name it in a subscription


# --- Payloads (the Event row's ``data``; camelCase, as every API shows them) ------------------

class StationPresence(TypedDict):
    stationId: str
    timestamp: str


class StationStatus(TypedDict):
    stationId: str
    status: str


class StationOnly(TypedDict):
    stationId: str


class DataTransfer(TypedDict):
    stationId: str
    vendorId: str
    messageId: str | None
    data: str | None


class SecurityEvent(TypedDict):
    stationId: str
    type: str  # OCPP's security event type (FirmwareUpdated, TamperDetectionActivated, ...)
    timestamp: str  # the charger's time, as it sent it
    techInfo: str | None


class DeviceModelReported(TypedDict):
    stationId: str
    requestId: int  # the GetBaseReport/GetReport it answers
    seqNo: int  # of the last part (parts: seqNo + 1)
    generatedAt: str  # the charger's time, as it sent it
    variables: int  # attributes stored from all its parts
    skipped: int  # entries that could not be read (the others are stored)


class StationCommand(TypedDict):
    stationId: str
    action: str
    payload: dict[str, Any]
    outcome: str  # "ok", or why there is no answer (timeout, call_error, offline, ...)
    answer: NotRequired[dict[str, Any]]
    error: NotRequired[str]


class ConnectorStatusChanged(TypedDict):
    stationId: str
    connectorId: int
    status: str
    errorCode: str | None  # None for NoError
    transactionId: int | None
    timestamp: str | None


class TransactionStarted(TypedDict):
    transactionId: int
    stationId: str
    connectorId: int
    idTag: str
    startTime: str | None
    meterStart: int
    correlationId: NotRequired[str]  # the mobile command that started it


class TransactionStopped(TypedDict):
    transactionId: int
    stationId: str
    connectorId: int
    idTag: str
    stopTime: str | None
    energy: int  # Wh, stations.rules.session_energy_wh
    totalKWh: NotRequired[float]
    duration: int | None
    cost: float | None
    currency: str | None
    reason: str
    correlationId: NotRequired[str]  # the mobile command that stopped it


class TransactionStopUnknown(TypedDict):
    stationId: str
    transactionId: int | str  # the charger's id as it sent it (1.6: an integer)
    meterStop: int | None


class MeterUpdate(TypedDict):
    stationId: str
    connectorId: int
    transactionId: int | None
    timestamp: str | None
    energy: int | None  # Wh delivered in the transaction (outside one: the register)
    power: float | None
    current: float | None
    voltage: float | None
    soc: float | None
    register: int | None  # the meter's reading, Wh
    delta: NotRequired[int | None]  # the Dart guide's meter.values.delta fields
    total: NotRequired[int | None]
    unit: NotRequired[str]


class RemoteStartResult(TypedDict):
    stationId: str
    connectorId: int
    idTag: str
    status: str  # the charger's answer, or Timeout/Offline/Error
    correlationId: NotRequired[str]


class RemoteStopRequested(TypedDict):
    stationId: str
    connectorId: int
    transactionId: int
    correlationId: NotRequired[str]


class RemoteStopResult(RemoteStopRequested):
    status: str


class SessionExpired(TypedDict):
    sessionId: str
    reason: str


class SessionEndRequested(TypedDict):
    sessions: list[int]


# --- Kinds -------------------------------------------------------------------------------------

class EventKind(StrEnum):
    """An event's ``kind``: a plain string on the wire and in the database."""

    payload: type[Any]
    traits: Trait

    def __new__(cls, value: str, payload: type[Any], traits: Trait = Trait.NONE) -> "EventKind":
        member = str.__new__(cls, value)
        member._value_ = value
        member.payload = payload
        member.traits = traits
        return member

    STATION_CONNECTED = "station.connected", StationPresence, Trait.PUBLIC | Trait.STATE
    STATION_DISCONNECTED = "station.disconnected", StationPresence, Trait.PUBLIC | Trait.STATE
    STATION_REGISTRATION_CHANGED = "station.registration.changed", StationStatus, Trait.STATE
    STATION_PASSWORD_SET = "station.password.set", StationOnly
    STATION_DATA_TRANSFER = "station.data_transfer", DataTransfer
    STATION_FIRMWARE_STATUS = "station.firmware.status", StationStatus
    STATION_DIAGNOSTICS_STATUS = "station.diagnostics.status", StationStatus
    STATION_COMMAND = "station.command", StationCommand
    STATION_SECURITY_EVENT = "station.security_event", SecurityEvent
    STATION_DEVICE_MODEL_REPORTED = "station.device_model.reported", DeviceModelReported
    CONNECTOR_STATUS_CHANGED = "connector.status.changed", ConnectorStatusChanged, Trait.PUBLIC | Trait.STATE
    TRANSACTION_STARTED = "transaction.started", TransactionStarted, Trait.PUBLIC | Trait.STATE | Trait.OWN
    TRANSACTION_STOPPED = "transaction.stopped", TransactionStopped, Trait.PUBLIC | Trait.STATE | Trait.OWN
    TRANSACTION_STOP_UNKNOWN = "transaction.stop.unknown", TransactionStopUnknown
    METER_UPDATE = "meter.update", MeterUpdate, Trait.PUBLIC
    REMOTE_START_RESULT = "remote.start.result", RemoteStartResult, Trait.PUBLIC | Trait.OWN
    REMOTE_STOP_REQUESTED = "remote.stop.requested", RemoteStopRequested
    REMOTE_STOP_RESULT = "remote.stop.result", RemoteStopResult, Trait.PUBLIC | Trait.OWN
    SESSION_EXPIRED = "session.expired", SessionExpired, Trait.DIRECT
    MOBILE_SESSION_END_REQUESTED = "mobile.session.end_requested", SessionEndRequested


def kinds_with(trait: Trait) -> frozenset[str]:
    """The kinds (plain strings, as rows and messages carry them) that have ``trait``."""
    return frozenset(kind.value for kind in EventKind if trait in kind.traits)


PUBLIC_KINDS = kinds_with(Trait.PUBLIC)
STATE_KINDS = kinds_with(Trait.STATE)
OWN_KINDS = kinds_with(Trait.OWN)
DIRECT_KINDS = kinds_with(Trait.DIRECT)
