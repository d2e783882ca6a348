"""A 2.0.1 station's device model from the CSMS's side: ask for a report, read and set one variable,
rotate the station's basic-auth password. On top of ``stations.commands.operate`` (each command is
recorded as a ``station.command`` event); the answers are stored (stations/services/device_model.py).

The registered commands (get_base_report, get_variables, set_variables: stations/commands/registry.py)
are used once registered; until then the same 2.0.1 action is sent by its name with the payload built here.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from csms.events import call_service
from stations import commands, services
from stations.commands import CommandError, StationOffline, registry
from stations.errors import DomainError, InvalidValue
from stations.services import connections
from stations.services.device_model import VariableRef, store_values

REPORT_BASES = ("FullInventory", "ConfigurationInventory", "SummaryInventory")
PASSWORD_COMPONENT, PASSWORD_VARIABLE = "SecurityCtrlr", "BasicAuthPassword"
# A00.FR.205: 16 to 40 characters of identifierString; letters and digits only (every charger takes them).
PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
# SetVariables answers under which the station has the value (RebootRequired: it applies it after a reboot).
TAKEN = frozenset({"Accepted", "RebootRequired"})


@dataclass(frozen=True)
class VariableResult:
    """The station's answer for one variable: its attributeStatus, the value (read, or as set) and the
    reason it gave (attributeStatusInfo.reasonCode, "" if none)."""

    status: str
    value: str | None = None
    reason: str = ""


def _request_id() -> int:
    return secrets.randbelow(2**31 - 1) + 1


def _wire_params(ref: VariableRef) -> dict[str, Any]:
    """The registered commands' parameters (wire names) of one variable."""
    params: dict[str, Any] = {"component": ref.component, "variable": ref.variable}
    if ref.component_instance:
        params["componentInstance"] = ref.component_instance
    if ref.variable_instance:
        params["variableInstance"] = ref.variable_instance
    if ref.evse:
        params["evse"] = ref.evse
        if ref.connector:
            params["connectorId"] = ref.connector
    if ref.attribute_type != "Actual":
        params["attributeType"] = ref.attribute_type
    return params


def _request(command: str, wire: dict[str, Any], action: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered command with its checked parameters, else (not registered, or without a parameter
    named here, e.g. requestId) the raw action and payload (camelCase)."""
    registered = registry.REGISTRY.get(command)
    if registered is not None and set(wire) <= {param.wire for param in registered.params}:
        return command, registered.validate(wire)
    return action, payload


def _attribute(ref: VariableRef) -> dict[str, Any]:
    return {**ref.wire(), **({"attributeType": ref.attribute_type} if ref.attribute_type != "Actual" else {})}


def _result(answer: dict[str, Any], key: str) -> dict[str, Any]:
    results = answer.get(key) or [{}]
    return results[0] if isinstance(results[0], dict) else {}


def _reason(result: dict[str, Any]) -> str:
    info = result.get("attributeStatusInfo") or {}
    return str(info.get("reasonCode") or "")


async def request_report(
    station_id: str, report_base: str = "FullInventory", *, actor: str, request_id: int | None = None
) -> tuple[str, int]:
    """GetBaseReport; returns the station's status and the requestId its NotifyReport parts will carry."""
    request_id = request_id or _request_id()
    command, params = _request("get_base_report", {"reportBase": report_base, "requestId": request_id},
                               "GetBaseReport", {"requestId": request_id, "reportBase": report_base})
    answer = await commands.operate(station_id, command, params, actor=actor)
    return str(answer.get("status")), request_id


CRITERIA = ("Active", "Available", "Enabled", "Problem")


async def request_custom_report(
    station_id: str, refs: Sequence[VariableRef] = (), criteria: Sequence[str] = (), *, actor: str, request_id: int | None = None,
) -> tuple[str, int]:
    """GetReport (B08): the variables named (a ref with variable "" names its whole component) and/or the
    components meeting ``criteria`` (Active, Available, Enabled, Problem); returns the station's status
    (EmptyResultSet: nothing matches) and the requestId its NotifyReport parts will carry."""
    request_id = request_id or _request_id()
    payload: dict[str, Any] = {"requestId": request_id}
    if refs:
        payload["componentVariable"] = [
            {"component": ref.wire()["component"], **({"variable": ref.wire()["variable"]} if ref.variable else {})}
            for ref in refs]
    if criteria:
        payload["componentCriteria"] = list(criteria)
    answer = await commands.operate(station_id, "GetReport", payload, actor=actor)
    return str(answer.get("status")), request_id


async def read_variable(station_id: str, ref: VariableRef, *, actor: str) -> VariableResult:
    """GetVariables of one variable; an Accepted value is stored in the station's device model."""
    command, params = _request("get_variables", _wire_params(ref), "GetVariables",
                               {"getVariableData": [_attribute(ref)]})
    result = _result(await commands.operate(station_id, command, params, actor=actor), "getVariableResult")
    status, value = str(result.get("attributeStatus")), result.get("attributeValue")
    if status == "Accepted" and isinstance(value, str):
        await call_service(store_values, station_id, [(ref, value)])
    return VariableResult(status, value if isinstance(value, str) else None, _reason(result))


async def read_variables(station_id: str, refs: list[VariableRef], *, actor: str) -> list[VariableResult]:
    """GetVariables of several variables in one request (B06; the station may refuse more than its
    ItemsPerMessageGetVariables: Rejected each); the Accepted values are stored. Results in the order
    asked (the station may answer in any order: matched by component and variable)."""
    if len(refs) == 1:
        return [await read_variable(station_id, refs[0], actor=actor)]
    answer = await commands.operate(station_id, "GetVariables", {"getVariableData": [_attribute(ref) for ref in refs]},
                                    actor=actor)
    by_name = {_answered(result): result for result in answer.get("getVariableResult") or ()
               if isinstance(result, dict)}
    results, stored = [], []
    for ref in refs:
        result = by_name.get((ref.component, ref.component_instance, ref.evse, ref.connector, ref.variable,
                              ref.variable_instance, ref.attribute_type), {})
        status, value = str(result.get("attributeStatus")), result.get("attributeValue")
        if status == "Accepted" and isinstance(value, str):
            stored.append((ref, value))
        results.append(VariableResult(status, value if isinstance(value, str) else None, _reason(result)))
    if stored:
        await call_service(store_values, station_id, stored)
    return results


def _answered(result: dict[str, Any]) -> tuple[Any, ...]:
    component, variable = result.get("component") or {}, result.get("variable") or {}
    evse = component.get("evse") or {}
    return (component.get("name"), component.get("instance", ""), evse.get("id", 0), evse.get("connectorId", 0),
            variable.get("name"), variable.get("instance", ""), result.get("attributeType") or "Actual")


async def set_variable(station_id: str, ref: VariableRef, value: str, *, actor: str) -> VariableResult:
    """SetVariables of one variable; the value is stored once the station answers Accepted or
    RebootRequired (it has it; RebootRequired: it applies it after a reboot)."""
    if (ref.component, ref.variable) == (PASSWORD_COMPONENT, PASSWORD_VARIABLE):
        # Its value would be recorded in the command's event and not become the station's password.
        raise InvalidValue("SecurityCtrlr.BasicAuthPassword is set by rotate_password (the admin's Rotate password)")
    command, params = _request("set_variables", {**_wire_params(ref), "value": value}, "SetVariables",
                               {"setVariableData": [{**_attribute(ref), "attributeValue": value}]})
    result = _result(await commands.operate(station_id, command, params, actor=actor), "setVariableResult")
    status = str(result.get("attributeStatus"))
    if status in TAKEN:
        await call_service(store_values, station_id, [(ref, value)])
    return VariableResult(status, value, _reason(result))


def new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


@dataclass(frozen=True)
class Rotation:
    """How a rotation ended: the station's attributeStatus (or the outcome word: Timeout, Offline, Error),
    the new ``password`` (to show once) and whether it is now the station's (``promoted``) or still
    accepted beside the old one (``pending``: the station may have taken it without saying so)."""

    status: str
    password: str
    promoted: bool = False
    pending: bool = False
    error: CommandError | None = None


async def rotate_password(station_id: str, *, actor: str, timeout: float | None = None) -> Rotation:
    """Give the station a new basic-auth password (A01: SetVariables SecurityCtrlr.BasicAuthPassword).

    The new password is accepted beside the old one from before it is sent. Accepted: it replaces the
    old one, which stops working (the station reconnects with the new one). RebootRequired, a timeout or
    a socket closed before the answer: both stay accepted until the station first connects with the new
    one (services.connections: that connect makes it the password). Anything else (Rejected, a
    CALLERROR, offline): the new one is dropped and the old one stays.

    Sent with ``commands.send``, not ``operate``: the ``station.command`` event recorded here leaves the
    password out (``"attributeValue": "(new password)"``).
    """
    password = new_password()
    ref = VariableRef(PASSWORD_COMPONENT, PASSWORD_VARIABLE)
    next_hash = await call_service(connections.offer_next_password, station_id, password)
    payload = {"setVariableData": [{**ref.wire(), "attributeValue": password}]}
    shown = {"setVariableData": [{**ref.wire(), "attributeValue": "(new password)"}]}
    try:
        answer = await commands.send_command(station_id, "SetVariables", payload, timeout=timeout)
    except CommandError as error:
        return await _unanswered(station_id, next_hash, password, shown, error, actor)
    except DomainError:  # refused before sending (not a 2.0.1 station, a payload its schema refuses)
        await call_service(connections.end_password_rotation, station_id, next_hash, promote=False)
        raise
    result = _result(answer, "setVariableResult")
    status = str(result.get("attributeStatus"))
    await call_service(services.record_command, "station.command", station_id, {
        "stationId": station_id, "action": "SetVariables", "payload": shown, "outcome": "ok", "answer": answer},
        actor=actor)
    if status == "Accepted":
        promoted = await call_service(connections.end_password_rotation, station_id, next_hash, promote=True,
                                      actor=actor)
        return Rotation(status, password, promoted=promoted)
    if status == "RebootRequired":
        return Rotation(status, password, pending=True)
    await call_service(connections.end_password_rotation, station_id, next_hash, promote=False)
    return Rotation(status, "")


async def _unanswered(
    station_id: str, next_hash: str, password: str, shown: dict[str, Any], error: CommandError, actor: str
) -> Rotation:
    """A rotation without the station's answer: kept pending if the station may have the password."""
    keep = error.outcome in ("timeout", "offline") and not isinstance(error, StationOffline)
    if not keep:
        await call_service(connections.end_password_rotation, station_id, next_hash, promote=False)
    if not isinstance(error, StationOffline):
        await call_service(services.record_command, "station.command", station_id, {
            "stationId": station_id, "action": "SetVariables", "payload": shown, "outcome": error.outcome,
            "error": str(error)}, actor=actor)
    status = {"timeout": "Timeout", "offline": "Offline"}.get(error.outcome, "Error")
    return Rotation(status, password if keep else "", pending=keep, error=error)
