"""Events as one readable line each, and actors by name, for the back-office.

The event log stores data for machines (``{"connectorId": 1, "status": ...}``)
and actors as ids (``apikey:3``); a support agent reads "Connector 1:
Charging" by "API key Partner app". Kinds without a sentence of their own
show their fields as ``name=value``, never cut in the middle of a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from csms.models import Event

SKIPPED = frozenset({"stationId", "timestamp", "unit"})  # the row already says where and when


def _kwh(wh: Any) -> str:
    return "?" if wh is None else f"{wh / 1000:.2f} kWh"


def _connector(data: dict[str, Any]) -> str:
    number = data.get("connectorId")
    return "station" if number in (0, None) else f"connector {number}"


def _status(data: dict[str, Any]) -> str:
    text = f"{_connector(data).capitalize()}: {data.get('status')}"
    if data.get("errorCode") not in (None, "", "NoError"):
        text += f" (error {data['errorCode']})"
    if data.get("transactionId"):
        text += f", transaction #{data['transactionId']}"
    return text


def _meter(data: dict[str, Any]) -> str:
    parts = [f"{_connector(data).capitalize()}:"]
    if data.get("transactionId"):
        parts.append(f"#{data['transactionId']} {_kwh(data.get('energy'))} so far,")
    if data.get("power") is not None:
        parts.append(f"{data['power'] / 1000:.1f} kW")
    if data.get("soc") is not None:
        parts.append(f"SoC {data['soc']:.0f} %")
    return " ".join(parts)


def _started(data: dict[str, Any]) -> str:
    return f"Transaction #{data.get('transactionId')} started on {_connector(data)}, idTag {data.get('idTag')}"


def _stopped(data: dict[str, Any]) -> str:
    cost = "" if data.get("cost") is None else f", {data['cost']:.2f} {data.get('currency') or ''}".rstrip()
    return (f"Transaction #{data.get('transactionId')} stopped ({data.get('reason')}): "
            f"{_kwh(data.get('energy'))}{cost}")


def _remote(verb: str) -> Callable[[dict[str, Any]], str]:
    def line(data: dict[str, Any]) -> str:
        target = f"#{data['transactionId']}" if data.get("transactionId") else _connector(data)
        status = f": the charger answered {data['status']}" if data.get("status") else ""
        return f"Remote {verb} of {target}{status}"

    return line


def _command(data: dict[str, Any]) -> str:
    payload = ", ".join(f"{k}={v}" for k, v in (data.get("payload") or {}).items())
    outcome = data.get("outcome")
    if outcome is None:
        return f"{data.get('action')}({payload})"
    if outcome == "ok":
        answer = data.get("answer") or {}
        result = answer.get("status") or ", ".join(f"{k}={v}" for k, v in answer.items()) or "answered"
    else:
        result = f"{outcome}: {data.get('error', '')}".rstrip(": ")
    return f"{data.get('action')}({payload}) → {result}"


def _security(data: dict[str, Any]) -> str:
    text = f"Security event {data['type']}"
    if data.get("techInfo"):
        text += f": {data['techInfo']}"
    return text + (f" (charger time {data['timestamp']})" if data.get("timestamp") else "")


LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "connector.status.changed": _status,
    "meter.update": _meter,
    "transaction.started": _started,
    "transaction.stopped": _stopped,
    "remote.start.result": _remote("start"),
    "remote.stop.requested": lambda data: f"Remote stop of #{data.get('transactionId')} asked",
    "remote.stop.result": _remote("stop"),
    "station.command": _command,
    "station.connected": lambda data: "Connected",
    "station.disconnected": lambda data: "Disconnected" + (f" ({data['reason']})" if data.get("reason") else ""),
    "station.registration.changed": lambda data: f"Registration set to {data.get('status')}",
    "station.password.set": lambda data: "Basic-auth password set",
    "station.security_event": _security,
    "station.device_model.reported": lambda data: (
        f"Device model report {data['requestId']}: {data['variables']} attributes stored"
        + (f", {data['skipped']} unreadable entries skipped" if data.get("skipped") else "")),
}


def describe(kind: str, data: dict[str, Any]) -> str:
    """One line for an event; falls back to its fields for a kind without a sentence."""
    line = LINES.get(kind)
    if line is not None:
        try:
            return line(data)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # an older or unusual payload: show its fields instead
    return ", ".join(f"{k}={v}" for k, v in data.items() if k not in SKIPPED) or "—"


def actor_names(actors: Iterable[str]) -> dict[str, str]:
    """``apikey:3`` -> ``API key Partner app``, ``user:ann`` -> ``staff ann``, ``""`` -> ``charger``."""
    from mobileapi.models import ApiKey

    actors = set(actors)
    key_ids = {int(a.split(":", 1)[1]) for a in actors if a.startswith("apikey:") and a.split(":", 1)[1].isdigit()}
    keys = dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "name")) if key_ids else {}
    names: dict[str, str] = {}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        if not actor:
            names[actor] = "charger"
        elif kind == "apikey" and ident.isdigit():
            names[actor] = f"API key {keys[int(ident)]}" if int(ident) in keys else f"API key #{ident} (deleted)"
        elif kind == "user":
            names[actor] = f"staff {ident}"
        else:
            names[actor] = actor
    return names


def lines(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Rows for a template: time, kind, who, what."""
    events = list(events)
    names = actor_names(e.actor for e in events)
    return [{"event": e, "at": e.created_at, "kind": e.kind, "by": names[e.actor], "text": describe(e.kind, e.data)}
            for e in events]
