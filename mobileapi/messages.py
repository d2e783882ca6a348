"""Every envelope the mobile API sends: replies, errors and push events.

No other module builds an envelope. Events are rendered per dialect, and the
JSON text of one event in one dialect is made once and shared by every
connection that receives it (a push to 1,000 subscribers serialises once).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from csms.event_kinds import PUBLIC_KINDS as PUBLIC_KINDS  # the kinds mobile clients see (pushes and replays)
from csms.event_kinds import EventKind
from csms.events import EventMessage
from mobileapi import renderers
from mobileapi.dialects import Dialect


def dumps(message: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON, and no client must get them.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class RawJson:
    """A result already serialised (a shared, cached reply such as getStations)."""

    def __init__(self, text: str) -> None:
        self.text = text


def result_message(request_id: Any, result: Any) -> str:
    if isinstance(result, RawJson):
        return f'{{"id":{dumps(request_id)},"result":{result.text}}}'
    return dumps({"id": request_id, "result": result})


def error_message(request_id: Any, code: int, message: str, *, correlation_id: str | None = None,
                  **extra: Any) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if correlation_id:
        error["correlationId"] = correlation_id
    error.update(extra)
    return dumps({"id": request_id, "error": error})


def event_data(dialect: Dialect, kind: str, data: dict[str, Any], *, hide_id_tag: bool) -> dict[str, Any]:
    """An event's fields as this dialect shows them."""
    if kind == EventKind.METER_UPDATE:
        data = renderers.meter_event(data, as_delta=not dialect.nested_events)
    else:
        data = dict(data)
        if kind == EventKind.CONNECTOR_STATUS_CHANGED and "status" in data:
            data["status"] = renderers.connector_status(data["status"])
    if "transactionId" in data:
        data["transactionId"] = dialect.transaction_id(data["transactionId"])
    if hide_id_tag and "idTag" in data:
        data["idTag"] = None  # someone else's card or app user
    return data


def event_envelope(dialect: Dialect, event: EventMessage, *, hide_id_tag: bool = False) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "eventId": event["eventId"],
        "event": dialect.event_name(event["kind"]),
        "ts": event["ts"],
    }
    data = event_data(dialect, event["kind"], event["data"], hide_id_tag=hide_id_tag)
    if dialect.nested_events:
        envelope["data"] = data
    else:
        envelope.update({key: value for key, value in data.items() if key not in envelope})
    return envelope


def replay_item(dialect: Dialect, event: EventMessage, *, hide_id_tag: bool = False) -> dict[str, Any]:
    """One event of getEventsSince/getEventsRecent.

    ``/ws`` clients get the Russian document's item (eventType, stationId,
    timestamp, data) with its eventId; ``/mobile-client`` clients get the
    event exactly as it was pushed, so one handler serves both.
    """
    if not dialect.nested_events:
        return event_envelope(dialect, event, hide_id_tag=hide_id_tag)
    data = event_data(dialect, event["kind"], event["data"], hide_id_tag=hide_id_tag)
    return {
        "eventId": event["eventId"],
        "eventType": dialect.event_name(event["kind"]),
        "stationId": event["stationId"],
        "timestamp": data.get("timestamp") or _iso_from_ms(event["ts"]),
        "ts": event["ts"],
        "data": data,
    }


def session_expired_message(event_id: str, ts: int, dialect: Dialect, reason: str) -> str:
    envelope: dict[str, Any] = {"eventId": event_id, "event": EventKind.SESSION_EXPIRED.value, "ts": ts}
    data = {"ts": ts, "reason": reason}
    if dialect.nested_events:
        envelope["data"] = data
    else:
        envelope["reason"] = reason
    return dumps(envelope)


class _RenderCache:
    """JSON text of recent events per (dialect, eventId, hidden idTag).

    Keyed by eventId, not the bare sequence number, so texts never outlive a
    database whose sequence starts again (a restore, a test run).
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._texts: OrderedDict[tuple[str, str, bool], str] = OrderedDict()

    def push_text(self, dialect: Dialect, event: EventMessage, hide_id_tag: bool) -> str:
        key = (dialect.name, event["eventId"], hide_id_tag)
        text = self._texts.get(key)
        if text is None:
            text = dumps(event_envelope(dialect, event, hide_id_tag=hide_id_tag))
            self._texts[key] = text
            if len(self._texts) > self.size:
                self._texts.popitem(last=False)
        return text


render_cache = _RenderCache()


def _iso_from_ms(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
