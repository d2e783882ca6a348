"""The OCPP 1.6 form of each registered charger command (stations/commands/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def get_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"key": list(params.get("keys") or ()) or None})


def trigger_message(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"requestedMessage": params["message"], "connectorId": params.get("connector")})


def data_transfer(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"vendorId": params["vendor_id"], "messageId": params.get("message_id"),
                     "data": params.get("data")})


COMMANDS: dict[str, tuple[str, Builder]] = {
    "remote_start": ("RemoteStartTransaction", remote_start),
    "remote_stop": ("RemoteStopTransaction", remote_stop),
    "reset": ("Reset", lambda params: {"type": params["type"]}),
    "unlock": ("UnlockConnector", lambda params: {"connectorId": params["connector"]}),
    "change_availability": ("ChangeAvailability",
                            lambda params: {"connectorId": params["connector"], "type": params["type"]}),
    "get_configuration": ("GetConfiguration", get_configuration),
    "change_configuration": ("ChangeConfiguration", lambda params: {"key": params["key"], "value": params["value"]}),
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
