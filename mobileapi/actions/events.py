"""subscribe, unsubscribe, getEventsRecent, getEventsSince."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from csms import wire
from csms.events import EventMessage, call_service
from mobileapi import messages, services
from mobileapi.errors import BadRequest
from mobileapi.models import Scope
from mobileapi.registry import STATION_ID, action, limit
from mobileapi.snapshots import render_station, snapshot
from mobileapi.subscriptions import check_patterns
from stations.errors import NotFound

if TYPE_CHECKING:
    from mobileapi.consumers import MobileConsumer

EVENTS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64}, "minItems": 1, "maxItems": 50}


@action(
    "subscribe",
    params={"properties": {"stationId": STATION_ID, "events": EVENTS}},
    scope=Scope.READ_STATIONS,
    summary="Starts pushes of the chosen events (default `all`; names, `all`/`*` or `prefix.*` patterns) to this "
            "connection, optionally for one station, and returns a snapshot of the stations.",
    result="`subscriptionId` (`sub-<ms>-<nnn>`, valid on this connection only) and `snapshot.stations` "
           "(the shape of getStations: every station, or only `stationId`).",
    errors=(
        (400, "params.events: 'X' matches no event (known: ...)"),
        (400, "params.events: 'X' is not an event name, 'all' or a 'prefix.*' pattern"),
        (400, "Too many subscriptions (at most MOBILE_MAX_SUBSCRIPTIONS per connection): unsubscribe one first"),
        (404, "Unknown station X"),
    ),
)
async def subscribe(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    patterns = params.get("events", ["all"])
    problem = check_patterns(patterns)
    if problem:
        raise BadRequest(f"params.{problem}")
    if len(conn.subscriptions) >= settings.MOBILE_MAX_SUBSCRIPTIONS:
        # Each one is checked for every event pushed, and recorded for support:
        # a connection may not grow them without bound.
        raise BadRequest(f"Too many subscriptions (at most {settings.MOBILE_MAX_SUBSCRIPTIONS} per connection): "
                         "unsubscribe one first")
    station_id = params.get("stationId")
    if station_id is not None:
        await call_service(services.require_station, station_id)
    subscription = conn.subscribe(station_id, patterns)
    stations = [s for s in await snapshot.stations() if station_id is None or s["id"] == station_id]
    return {
        "subscriptionId": subscription.id,
        "snapshot": {"stations": [render_station(conn.dialect, station) for station in stations]},
    }


@action(
    "unsubscribe",
    params={"properties": {"subscriptionId": {"type": "string", "minLength": 1}}, "required": ["subscriptionId"]},
    summary="Ends one subscription of this connection.",
    result="`status` (`ok`) and `subscriptionId`.",
    errors=((404, "Unknown subscription X"),),
)
async def unsubscribe(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    if not conn.unsubscribe(params["subscriptionId"]):
        raise NotFound(f"Unknown subscription {params['subscriptionId']}")
    return {"status": "ok", "subscriptionId": params["subscriptionId"]}


def _page(conn: MobileConsumer, events: list[EventMessage], has_more: bool, cursor: str | None) -> dict[str, Any]:
    items = [messages.replay_item(conn.dialect, event, hide_id_tag=conn.hides_id_tag(event)) for event in events]
    return {
        "events": items,
        "count": len(items),
        "hasMore": has_more,
        "cursor": {"lastEventId": events[-1]["eventId"] if events else cursor},
    }


@action(
    "getEventsRecent",
    params={"properties": {"limit": limit(50, 1000), "stationId": STATION_ID}},
    scope=Scope.READ_STATIONS,
    summary="The newest events of the event log (all stations, or one), oldest first.",
    result="`events` (the page), `count`, `hasMore` and `cursor.lastEventId` (the last event's id: pass it as `eventId` to read on).",
    dialects='Items on `/ws` are `{eventId, eventType, stationId, timestamp, ts, data}`; on `/mobile-client` the event exactly as it was pushed (flat).',
)
async def get_events_recent(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    events, _ = await call_service(
        services.events_page, station_id=params.get("stationId"), limit=params.get("limit", 50), newest=True
    )
    return _page(conn, events, False, None)


@action(
    "getEventsSince",
    params={
        "properties": {
            "eventId": {"type": "string", "minLength": 1, "maxLength": 64},
            "since": {"type": "string", "minLength": 1, "maxLength": 64},
            "stationId": STATION_ID,
            "limit": limit(100, 1000),
        },
    },
    scope=Scope.READ_STATIONS,
    summary="The events after an `eventId` (exclusive) or since an ISO time, oldest first: what an app missed "
            "while disconnected.",
    result="`events` (the page), `count`, `hasMore` and `cursor.lastEventId` (the last event's id: pass it as `eventId` to read on).",
    dialects='Items on `/ws` are `{eventId, eventType, stationId, timestamp, ts, data}`; on `/mobile-client` the event exactly as it was pushed (flat).',
    errors=(
        (400, "params: give 'eventId' or 'since'"),
        (400, "params.eventId: eventId 'X' is not of the form evt-<ms>-<sequence>"),
        (400, "params.since: <why the time is not valid>"),
        (400, "eventId: sequence N is ahead of this server's newest event (M): a cursor from the future, not one this "
              "server sent; page from getEventsRecent or a time ('since')"),
    ),
)
async def get_events_since(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    after_seq = since = None
    if "eventId" in params:
        try:
            after_seq = services.parse_event_id(params["eventId"])
        except ValueError as error:
            raise BadRequest(f"params.eventId: {error}") from None
    elif "since" in params:
        try:
            since = wire.parse_client_time(params["since"])
        except wire.WireError as error:
            raise BadRequest(f"params.since: {error}") from None
    else:
        raise BadRequest("params: give 'eventId' or 'since'")
    events, has_more = await call_service(
        services.events_page, after_seq=after_seq, since=since, station_id=params.get("stationId"),
        limit=params.get("limit", 100),
    )
    return _page(conn, events, has_more, params.get("eventId"))
