"""The OCPP 1.6 form of each registered charger command (stations/commands/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stations.errors import InvalidValue
from stations.ocpp.adapter import Builder, Configuration

# The CSMS-initiated actions this CSMS sends (station_command's raw form).
CSMS_ACTIONS = frozenset(
    {
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "Reset",
        "UnlockConnector",
        "ChangeAvailability",
        "GetConfiguration",
        "ChangeConfiguration",
        "ClearCache",
        "TriggerMessage",
        "DataTransfer",
    }
)


def _present(payload: dict[str, Any]) -> dict[str, Any]:
    """Optional fields the caller left out are left out of the call."""
    return {name: value for name, value in payload.items() if value is not None}


def remote_start(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"connectorId": params["connector"], "idTag": params["id_tag"]}


def remote_stop(params: Mapping[str, Any]) -> dict[str, Any]:
    # A 1.6 charger's transactionId is the integer the CSMS gave it: the transaction's id.
    return {"transactionId": params["transaction"]}


# The registry's reset words as 1.6 says them (2.0.1's OnIdle ends transactions first: Soft).
RESET_TYPES = {"Soft": "Soft", "Hard": "Hard", "OnIdle": "Soft", "Immediate": "Hard"}
# TriggerMessage's messages 1.6 has (2.0.1 adds TransactionEvent and LogStatusNotification).
TRIGGERS = frozenset({"StatusNotification", "BootNotification", "Heartbeat", "MeterValues",
                      "FirmwareStatusNotification", "DiagnosticsStatusNotification"})


def _one_connector(params: Mapping[str, Any]) -> None:
    """A 1.6 connector is its own EVSE: a connectorId within it other than 1 cannot be said."""
    if params.get("connector_id") not in (None, 1):
        raise InvalidValue("connectorId must be 1 for an OCPP 1.6 station (each connector is its own; "
                           "name it as connector)")


def reset(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("evse") is not None:
        raise InvalidValue("evse: an OCPP 1.6 station resets only as a whole")
    return {"type": RESET_TYPES[params["type"]]}


def unlock(params: Mapping[str, Any]) -> dict[str, Any]:
    _one_connector(params)
    return {"connectorId": params["connector"]}


def change_availability(params: Mapping[str, Any]) -> dict[str, Any]:
    _one_connector(params)
    return {"connectorId": params["connector"], "type": params["type"]}


def get_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"key": list(params.get("keys") or ()) or None})


def trigger_message(params: Mapping[str, Any]) -> dict[str, Any]:
    if params["message"] not in TRIGGERS:
        raise InvalidValue(f"message: OCPP 1.6 has no {params['message']} to trigger")
    return _present({"requestedMessage": params["message"], "connectorId": params.get("connector")})


def data_transfer(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"vendorId": params["vendor_id"], "messageId": params.get("message_id"),
                     "data": params.get("data")})


# OCPP 1.6 security whitepaper: the basic-auth password is the configuration key AuthorizationKey.
PASSWORD_KEY = "authorizationkey"


def _not_the_password(key: str) -> None:
    """A 1.6 station's basic-auth password is set by hand (admin: set password, then on the charger):
    sent as ChangeConfiguration its value would be recorded in the command's event, and never become the
    password the CSMS checks. Keys are compared case-insensitively (as 2.0.1's BasicAuthPassword is)."""
    if key.lower() == PASSWORD_KEY:
        raise InvalidValue("AuthorizationKey is the station's basic-auth password: set it by hand "
                           "(admin: set password), not as a configuration key")


def change_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    _not_the_password(params["key"])
    return {"key": params["key"], "value": params["value"]}


def check_raw(action: str, payload: dict[str, Any]) -> None:
    """An operator's ChangeConfiguration as it is (``station_command``) may not set the password either
    (the adapter's check_raw: stations/ocpp/v16/__init__.py)."""
    if action == "ChangeConfiguration":
        _not_the_password(str(payload.get("key", "")))


# The 2.0.1-only commands (get_base_report, get_report, get_variables, set_variables) are not here:
# stations.commands refuses them for a 1.6 station (Conflict, 409).
COMMANDS: dict[str, tuple[str, Builder]] = {
    "remote_start": ("RemoteStartTransaction", remote_start),
    "remote_stop": ("RemoteStopTransaction", remote_stop),
    "reset": ("Reset", reset),
    "unlock": ("UnlockConnector", unlock),
    "change_availability": ("ChangeAvailability", change_availability),
    "get_configuration": ("GetConfiguration", get_configuration),
    "change_configuration": ("ChangeConfiguration", change_configuration),
    "trigger_message": ("TriggerMessage", trigger_message),
    "clear_cache": ("ClearCache", lambda params: {}),
    "data_transfer": ("DataTransfer", data_transfer),
}


def configuration(answer: dict[str, Any]) -> Configuration:
    """GetConfiguration.conf: configurationKey rows are already {key, readonly, value?}."""
    rows = [{"key": row.get("key", ""), "value": row.get("value", ""), "readonly": bool(row.get("readonly"))}
            for row in answer.get("configurationKey") or []]
    return sorted(rows, key=lambda row: row["key"]), list(answer.get("unknownKey") or [])


def recorded_answer(action: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A whole configuration is too large for an event: its number of keys is recorded."""
    if action == "GetConfiguration":
        return {"keys": len(answer.get("configurationKey") or [])}
    return answer
