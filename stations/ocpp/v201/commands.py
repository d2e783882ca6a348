"""The OCPP 2.0.1 form of each registered charger command (stations/commands/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stations.ocpp.adapter import Builder, Configuration

CSMS_ACTIONS = frozenset({
    "RequestStartTransaction", "RequestStopTransaction", "Reset", "UnlockConnector", "ChangeAvailability",
    "GetVariables", "SetVariables", "GetBaseReport", "GetReport", "ClearCache", "TriggerMessage", "DataTransfer",
})

COMMANDS: dict[str, tuple[str, Builder]] = {
    "clear_cache": ("ClearCache", lambda params: {}),
}


def configuration(answer: dict[str, Any]) -> Configuration:
    return [], []


def recorded_answer(action: str, answer: dict[str, Any]) -> dict[str, Any]:
    return answer


def _present(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in payload.items() if value is not None}
