"""The OCPP 2.0.1 form of each registered charger command (stations/commands/registry.py).

Each builder takes the command's checked parameters (by name) and returns the payload as on the
wire. What 2.0.1 cannot say is refused here (InvalidValue, 400) before anything is sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from stations.errors import InvalidValue
from stations.ocpp.adapter import Builder, Configuration

CSMS_ACTIONS = frozenset({
    "RequestStartTransaction", "RequestStopTransaction", "Reset", "UnlockConnector", "ChangeAvailability",
    "GetVariables", "SetVariables", "GetBaseReport", "GetReport", "ClearCache", "TriggerMessage", "DataTransfer",
})

# 1.6 configuration keys read and set as the 2.0.1 variable the specification names for them
# (get_configuration / change_configuration; any other key is written Component.Variable).
KEYS_16 = {
    "HeartbeatInterval": ("OCPPCommCtrlr", "HeartbeatInterval"),
    "WebSocketPingInterval": ("OCPPCommCtrlr", "WebSocketPingInterval"),
    "ResetRetries": ("OCPPCommCtrlr", "ResetRetries"),
    "MeterValueSampleInterval": ("SampledDataCtrlr", "TxUpdatedInterval"),
    "MeterValuesSampledData": ("SampledDataCtrlr", "TxUpdatedMeasurands"),
    "StopTxnSampledData": ("SampledDataCtrlr", "TxEndedMeasurands"),
    "ClockAlignedDataInterval": ("AlignedDataCtrlr", "Interval"),
    "MeterValuesAlignedData": ("AlignedDataCtrlr", "Measurands"),
    "ConnectionTimeOut": ("TxCtrlr", "EVConnectionTimeOut"),
    "StopTransactionOnEVSideDisconnect": ("TxCtrlr", "StopTxOnEVSideDisconnect"),
    "AuthorizeRemoteTxRequests": ("AuthCtrlr", "AuthorizeRemoteStart"),
    "LocalAuthorizeOffline": ("AuthCtrlr", "LocalAuthorizeOffline"),
    "LocalPreAuthorize": ("AuthCtrlr", "LocalPreAuthorize"),
    "AuthorizationCacheEnabled": ("AuthCacheCtrlr", "Enabled"),
    "LocalAuthListEnabled": ("LocalAuthListCtrlr", "Enabled"),
}
# The registry's reset words as 2.0.1 says them (1.6's Soft ends transactions first: OnIdle).
RESET_TYPES = {"Soft": "OnIdle", "Hard": "Immediate", "OnIdle": "OnIdle", "Immediate": "Immediate"}


def _present(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Optional fields the caller left out are left out of the call."""
    return {name: value for name, value in payload.items() if value is not None}


def request_id(params: Mapping[str, Any]) -> int:
    """The request's id: the caller's, or a random 31-bit one (the reports it asks for carry it)."""
    given = params.get("request_id")
    return given if given is not None else secrets.randbelow(2**31)


def remote_start(params: Mapping[str, Any]) -> dict[str, Any]:
    # remoteStartId: the RemoteStartRequest's pk (stations.commands passes it; TransactionEvent carries it back
    # and ties the transaction to the request's correlationId). The token's type: its IdTag row's, else Central.
    return {"idToken": {"idToken": params["id_tag"], "type": params.get("token_type") or "Central"},
            "remoteStartId": params.get("remote_start_id") or secrets.randbelow(2**31),
            "evseId": params["connector"]}


def remote_stop(params: Mapping[str, Any]) -> dict[str, Any]:
    # A 2.0.1 transactionId is the station's own (Transaction.charger_transaction_id); stations.commands passes it.
    return {"transactionId": params.get("charger_transaction_id") or str(params["transaction"])}


def reset(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"type": RESET_TYPES[params["type"]], "evseId": params.get("evse")})


def unlock(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"evseId": params["connector"], "connectorId": params.get("connector_id") or 1}


def change_availability(params: Mapping[str, Any]) -> dict[str, Any]:
    """Connector 0 is the whole station (no evse); an EVSE; or one connector of it."""
    payload: dict[str, Any] = {"operationalStatus": params["type"]}
    if params["connector"]:
        payload["evse"] = _present({"id": params["connector"], "connectorId": params.get("connector_id")})
    elif params.get("connector_id") is not None:
        raise InvalidValue("connectorId needs an EVSE (connector 0 is the whole station)")
    return payload


def trigger_message(params: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"requestedMessage": params["message"]}
    if params.get("connector") is not None:
        evse: dict[str, Any] = {"id": params["connector"]}
        if params["message"] == "StatusNotification":
            evse["connectorId"] = 1  # a StatusNotification is per connector
        payload["evse"] = evse
    return payload


def data_transfer(params: Mapping[str, Any]) -> dict[str, Any]:
    # 2.0.1's data is any JSON: the registry's string is sent as a JSON string, as 1.6 sends it.
    return _present({"vendorId": params["vendor_id"], "messageId": params.get("message_id"),
                     "data": params.get("data")})


def _component(params: Mapping[str, Any]) -> dict[str, Any]:
    component = _present({"name": params["component"], "instance": params.get("component_instance")})
    if params.get("evse") is not None:
        component["evse"] = _present({"id": params["evse"], "connectorId": params.get("connector_id")})
    elif params.get("connector_id") is not None:
        raise InvalidValue("connectorId needs an evse")
    return component


def _variable(params: Mapping[str, Any]) -> dict[str, Any]:
    return _present({"name": params["variable"], "instance": params.get("variable_instance")})


def get_variables(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"getVariableData": [_present({"component": _component(params), "variable": _variable(params),
                                          "attributeType": params.get("attribute_type")})]}


def _not_the_password(component: str, variable: str) -> None:
    """A station's basic-auth password is set by rotating it (stations.commands.device_model.rotate_password):
    sent as a command its value would be recorded in the command's event, and never become the password the
    CSMS checks. Names are case-insensitive (2.0.1)."""
    if (component.lower(), variable.lower()) == ("securityctrlr", "basicauthpassword"):
        raise InvalidValue("SecurityCtrlr.BasicAuthPassword is set by rotating the station's password "
                           "(admin: Rotate password), not as a variable")


def check_raw(action: str, payload: dict[str, Any]) -> None:
    """An operator's SetVariables as it is (``station_command``) may not set the password either."""
    if action == "SetVariables":
        for item in payload.get("setVariableData") or []:
            if isinstance(item, dict):
                _not_the_password(str((item.get("component") or {}).get("name", "")),
                                  str((item.get("variable") or {}).get("name", "")))


def set_variables(params: Mapping[str, Any]) -> dict[str, Any]:
    _not_the_password(params["component"], params["variable"])
    return {"setVariableData": [_present({"component": _component(params), "variable": _variable(params),
                                          "attributeType": params.get("attribute_type"),
                                          "attributeValue": params["value"]})]}


def get_base_report(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"requestId": request_id(params), "reportBase": params["report_base"]}


def get_report(params: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"requestId": request_id(params)}
    if params.get("component"):
        payload["componentVariable"] = [_present({
            "component": {"name": params["component"]},
            "variable": {"name": params["variable"]} if params.get("variable") else None})]
    elif params.get("variable"):
        raise InvalidValue("variable needs its component")
    if params.get("criteria"):
        payload["componentCriteria"] = list(dict.fromkeys(params["criteria"]))
    return payload


def variable_of(key: str) -> tuple[str, str]:
    """A configuration key as (component, variable): a 1.6 key the specification maps, or Component.Variable."""
    if key in KEYS_16:
        return KEYS_16[key]
    component, dot, variable = key.partition(".")
    if not dot or not component or not variable:
        raise InvalidValue(f"key {key} is no 1.6 key an OCPP 2.0.1 station has; name it Component.Variable "
                           "(e.g. OCPPCommCtrlr.HeartbeatInterval)")
    return component, variable


def get_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(params.get("keys") or ())
    if not keys:
        raise InvalidValue("an OCPP 2.0.1 station has no list of all keys: name the keys, or ask for "
                           "get_base_report (its device model)")
    return {"getVariableData": [{"component": {"name": component}, "variable": {"name": variable}}
                                for component, variable in map(variable_of, keys)]}


def change_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    component, variable = variable_of(params["key"])
    _not_the_password(component, variable)
    return {"setVariableData": [{"component": {"name": component}, "variable": {"name": variable},
                                 "attributeValue": params["value"]}]}


COMMANDS: dict[str, tuple[str, Builder]] = {
    "remote_start": ("RequestStartTransaction", remote_start),
    "remote_stop": ("RequestStopTransaction", remote_stop),
    "reset": ("Reset", reset),
    "unlock": ("UnlockConnector", unlock),
    "change_availability": ("ChangeAvailability", change_availability),
    "get_configuration": ("GetVariables", get_configuration),
    "change_configuration": ("SetVariables", change_configuration),
    "trigger_message": ("TriggerMessage", trigger_message),
    "clear_cache": ("ClearCache", lambda params: {}),
    "data_transfer": ("DataTransfer", data_transfer),
    "get_base_report": ("GetBaseReport", get_base_report),
    "get_report": ("GetReport", get_report),
    "get_variables": ("GetVariables", get_variables),
    "set_variables": ("SetVariables", set_variables),
}

_NAMES_16 = {variable: key for key, variable in KEYS_16.items()}


def configuration(answer: dict[str, Any]) -> Configuration:
    """GetVariables' answer as configuration rows: a variable read (Accepted) is a row keyed as it was asked
    (a 1.6 key by its 1.6 name, else Component.Variable); one the station does not know is an unknown key.
    2.0.1 says nothing of mutability here: rows are writable as far as this answer tells (the device model's
    table has the mutability)."""
    rows, unknown = [], []
    for result in answer.get("getVariableResult") or []:
        names = (result.get("component", {}).get("name", ""), result.get("variable", {}).get("name", ""))
        key = _NAMES_16.get(names) or ".".join(names)
        if result.get("attributeStatus") == "Accepted":
            rows.append({"key": key, "value": result.get("attributeValue", ""), "readonly": False})
        else:
            unknown.append(key)
    return sorted(rows, key=lambda row: row["key"]), unknown


def recorded_answer(action: str, answer: dict[str, Any]) -> dict[str, Any]:
    """Large answers as a summary in the command's event: how many variables were read (their values stay
    out of the event log); every other answer as it came."""
    if action == "GetVariables":
        results = answer.get("getVariableResult") or []
        return {"variables": len(results),
                "accepted": sum(result.get("attributeStatus") == "Accepted" for result in results)}
    return answer
