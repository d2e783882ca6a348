"""What the mobile API reads and writes, as plain synchronous functions.

The consumer calls them through ``csms.events.call_service`` (one ORM-thread
hop per operation). They return canonical data (integer transaction ids,
ISO times); the dialect shapes it on the way out.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from csms.events import EventMessage, emit, to_message
from csms.models import Event, EventCounter
from mobileapi import renderers
from mobileapi.messages import PUBLIC_KINDS
from mobileapi.models import ApiKey, MobileSession, Scope, generate_key, hash_key
from stations import rules, selectors, values
from stations.actors import Actor, ActorKind
from stations.errors import DomainError, Forbidden, NotFound, Unauthorized
from stations.models import Connector, IdTag, MeterSample, Station, Transaction
from stations.services import iso

log = logging.getLogger("mobileapi")

_EVENT_ID = re.compile(r"^evt-(\d+)-(\d+)$")


@dataclass(frozen=True)
class KeyInfo:
    """What a connection knows of its API key (never the key itself)."""

    id: int
    name: str
    scopes: frozenset[str]
    id_tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        return str(self.as_actor)

    @property
    def as_actor(self) -> Actor:
        return Actor.api_key(self.id, self.name)


# --- Keys ----------------------------------------------------------------------

def create_api_key(name: str, scopes: list[str], id_tags: Iterable[str] = (), raw_key: str | None = None) -> tuple[ApiKey, str]:
    """Create a key; return it and the raw key, which is shown once and never stored."""
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    raw_key = raw_key or generate_key()
    with transaction.atomic():
        key = ApiKey(name=name, scopes=sorted(set(scopes)))
        key.set_key(raw_key)
        key.save()
        for tag in id_tags:
            key.id_tags.add(IdTag.objects.get_or_create(id_tag=tag)[0])
    return key, raw_key


def set_key_active(key_id: int, active: bool) -> None:
    """(De)activate a key; live sessions of a deactivated key end within
    MOBILE_SESSION_CHECK_SECONDS on every server process."""
    ApiKey.objects.filter(pk=key_id).update(is_active=active)


class KeyRefused(Unauthorized):
    """A key that exists but must not be used here (the development key in production)."""


def authenticate(raw_key: str) -> KeyInfo | None:
    """The active key's info, or None. Raises KeyRefused for the development key in production."""
    if raw_key in settings.MOBILE_REFUSED_KEYS:
        log.warning("refused the development API key %s…: CSMS_ENV=production does not accept it; delete it in "
                    "the admin (API keys)", raw_key[:8])
        raise KeyRefused("The development test key is refused in production")
    key = ApiKey.objects.filter(key_hash=hash_key(raw_key), is_active=True).first()
    if key is None:
        return None
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    tags = frozenset(key.id_tags.values_list("id_tag", flat=True))
    return KeyInfo(key.pk, key.name, frozenset(key.scopes), tags)


def active_key_ids(key_ids: set[int]) -> set[int]:
    return set(ApiKey.objects.filter(pk__in=key_ids, is_active=True).values_list("pk", flat=True))


def record_session_expired(key: KeyInfo, session_id: str, reason: str) -> EventMessage:
    """Log a session's end; the event goes to that one connection, not to groups."""
    event = emit(
        "session.expired", "", {"sessionId": session_id, "reason": reason}, actor=key.actor, push=False
    )
    return to_message(event)


def update_api_key(key_id: int, *, name: str, scopes: list[str], id_tags: list[IdTag], is_active: bool) -> None:
    """Change a key's name, scopes, bound idTags and state (the admin's edit form)."""
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key_id)
        key.name, key.scopes, key.is_active = name, sorted(set(scopes)), is_active
        key.save(update_fields=["name", "scopes", "is_active"])
        key.id_tags.set(id_tags)


# --- Mobile sessions, as support sees them ----------------------------------------

# A session whose server process stopped refreshing it is ended as "lost".
SESSION_LOST_AFTER = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class SessionSync:
    active_key_ids: set[int]
    end_requested: set[str]  # connection ids of this server an operator asked to end


def sync_sessions(
    server: str,
    new: list[dict[str, Any]],
    changed: list[dict[str, Any]],
    ended: list[tuple[str, dt.datetime, str]],
    key_ids: set[int],
    touch: bool,
) -> SessionSync:
    """One watcher round of one server process, in one ORM hop.

    Records new connections, changed ones (auth, subscriptions, last
    message) and ended ones; ``touch`` refreshes ``seen_at`` of every live
    session of this server. Returns which keys are still active and which
    sessions an operator asked to end.
    """
    now = timezone.now()
    referenced = {row["api_key_id"] for row in (*new, *changed) if row.get("api_key_id")}
    existing = set(ApiKey.objects.filter(pk__in=referenced).values_list("pk", flat=True)) if referenced else set()
    for row in (*new, *changed):  # a key deleted meanwhile: its sessions are about to end
        if row.get("api_key_id") and row["api_key_id"] not in existing:
            row["api_key_id"] = None
    with transaction.atomic():
        if new:
            MobileSession.objects.bulk_create(
                [MobileSession(server=server, seen_at=now, **row) for row in new], ignore_conflicts=True
            )
        for row in changed:
            MobileSession.objects.filter(connection_id=row["connection_id"]).update(
                **{name: value for name, value in row.items() if name != "connection_id"}
            )
        for connection_id, ended_at, reason in ended:
            MobileSession.objects.filter(connection_id=connection_id, ended_at__isnull=True).update(
                ended_at=ended_at, end_reason=reason, seen_at=now
            )
        if touch:
            MobileSession.objects.filter(server=server, ended_at__isnull=True).update(seen_at=now)
            MobileSession.objects.filter(ended_at__isnull=True, seen_at__lt=now - SESSION_LOST_AFTER).update(
                ended_at=F("seen_at"), end_reason="server lost"
            )
    end_requested = set(
        MobileSession.objects.filter(server=server, ended_at__isnull=True, end_requested_at__isnull=False)
        .values_list("connection_id", flat=True)
    )
    return SessionSync(active_key_ids(key_ids) if key_ids else set(), end_requested)


def request_session_end(session_ids: list[int], *, actor: str) -> int:
    """Ask the server processes holding these sessions to end them (within
    MOBILE_SESSION_CHECK_SECONDS); return how many were live."""
    with transaction.atomic():
        count = MobileSession.objects.filter(pk__in=session_ids, ended_at__isnull=True).update(
            end_requested_at=timezone.now(), end_requested_by=actor
        )
        if count:
            emit("mobile.session.end_requested", "", {"sessions": sorted(session_ids)}, actor=actor, push=False)
    return count


def purge_sessions(older_than: dt.datetime) -> int:
    """Forget sessions that ended before ``older_than``."""
    return MobileSession.objects.filter(ended_at__lt=older_than).delete()[0]


# --- Stations ------------------------------------------------------------------

def _connector_rows() -> dict[str, list[dict[str, Any]]]:
    query = Connector.objects.filter(number__gt=0)
    by_station: dict[str, list[dict[str, Any]]] = {}
    for row in query.order_by("station_id", "number").values(
        "station_id", "number", "status", "current_transaction_id", "error_code", "updated_at"
    ):
        by_station.setdefault(row["station_id"], []).append(
            {
                "id": row["number"],
                "status": row["status"],
                "transactionId": row["current_transaction_id"],
                "errorCode": None if row["error_code"] == "NoError" else row["error_code"],
                "updatedAt": iso(row["updated_at"]),
            }
        )
    shown = {station_id: _one_per_evse(rows) for station_id, rows in by_station.items()}
    for evses in shown.values():  # as the apps see them, once each EVSE's row is chosen
        for evse in evses:
            evse["status"] = renderers.connector_status(evse["status"])
    return shown


def _one_per_evse(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's connector is a 2.0.1 EVSE (1.6: the connector): an EVSE of several connectors is shown by
    the one with its transaction, else by the one whose status is the EVSE's (rules.evse_status)."""
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_evse.setdefault(row["id"], []).append(row)
    return [group[0] if len(group) == 1 else _representative(group) for group in by_evse.values()]


def _representative(group: list[Any], status: Any = lambda row: row["status"],
                    transaction: Any = lambda row: row["transactionId"]) -> Any:
    with_transaction = [row for row in group if transaction(row) is not None]
    if with_transaction:
        return with_transaction[0]
    shown = rules.evse_status(map(status, group))
    return next(row for row in group if status(row) == shown)


def stations() -> list[dict[str, Any]]:
    """Every station with its connectors and derived status (read once per change, see snapshots.py)."""
    query = Station.objects.all()
    connectors = _connector_rows()
    result = []
    for row in query.order_by("id").values("id", "name", "is_online", "last_activity"):
        station_connectors = connectors.get(row["id"], [])
        result.append(
            {
                "id": row["id"],
                "name": row["name"] or row["id"],
                "status": rules.station_status(row["is_online"], [c["status"] for c in station_connectors]),
                "isOnline": row["is_online"],
                "lastActivity": iso(row["last_activity"]),
                "connectors": station_connectors,
            }
        )
    return result


def require_station(station_id: str) -> None:
    if not Station.objects.filter(pk=station_id).exists():
        raise NotFound(f"Unknown station {station_id}")


def connector_status(station_id: str, connector_id: int) -> dict[str, Any]:
    rows = list(
        Connector.objects.filter(station_id=station_id, number=connector_id)
        .select_related("current_transaction")
        .annotate(register=selectors.latest_register("current_transaction"))
    )
    connector = _representative(rows, lambda row: row.status, lambda row: row.current_transaction_id) if rows else None
    if connector is None or connector_id == 0:
        require_station(station_id)
        raise NotFound(f"Unknown connector {connector_id} on station {station_id}")
    tx = connector.current_transaction
    sample = None
    if tx is not None:
        sample = MeterSample.objects.filter(values.readable("timestamp"), transaction=tx).order_by("-timestamp").first()
    energy = None if tx is None else rules.session_energy_wh(getattr(connector, "register"), tx.meter_start)
    return {
        "stationId": station_id,
        "connectorId": connector_id,
        "status": renderers.connector_status(connector.status),
        "transactionId": tx.pk if tx else None,
        "errorCode": None if connector.error_code == "NoError" else connector.error_code,
        "power": sample.power_w if sample else None,
        "current": sample.current_a if sample else None,
        "voltage": sample.voltage_v if sample else None,
        "energy": energy,
        "soc": sample.soc if sample else None,
        "updatedAt": iso(connector.updated_at),
    }


def meter_values_recent(station_id: str, connector_id: int | None, limit: int) -> list[dict[str, Any]]:
    require_station(station_id)
    # readable(): rows stored before the value limits may hold times Python cannot read.
    query = MeterSample.objects.filter(values.readable("timestamp"), station_id=station_id)
    if connector_id is not None:
        query = query.filter(connector_number=connector_id)
    samples = list(query.select_related("transaction").order_by("-timestamp")[:limit])
    samples.reverse()  # oldest first, as a chart wants them
    return [
        {
            "stationId": station_id,
            "connectorId": sample.connector_number,
            "transactionId": sample.transaction_id,
            "timestamp": iso(sample.timestamp),
            "energy": _session_energy(sample),
            "power": sample.power_w,
            "current": sample.current_a,
            "voltage": sample.voltage_v,
            "soc": sample.soc,
            "unit": renderers.ENERGY_UNIT,
            "register": values.wh(sample.energy_wh),
        }
        for sample in samples
    ]


def _session_energy(sample: MeterSample) -> int | None:
    """Energy delivered in the sample's transaction so far (the register outside one); never negative."""
    if sample.energy_wh is None or sample.transaction is None:
        return values.wh(sample.energy_wh)
    return rules.session_energy_wh(sample.energy_wh, sample.transaction.meter_start)


# --- Transactions -----------------------------------------------------------------

class IdTagNotPermitted(Forbidden):
    """A tag this key may not start charging with."""


def permitted_id_tag(key: KeyInfo, requested: str | None) -> str | None:
    """The idTag this key may start charging with: the rule of every API (WebSocket and /api/).

    A tag bound to a key is that key's alone; a key bound to tags may use only
    those. Read from the database, not the connection's copy, so a binding
    changed in the admin applies at once. With no tag requested, a key bound
    to exactly one uses it; otherwise None (the caller reports the missing
    field in its own words). Raises IdTagNotPermitted (403).
    """
    own = set(IdTag.objects.filter(api_keys=key.id).values_list("id_tag", flat=True))
    if requested is None:
        return next(iter(own)) if len(own) == 1 else None
    if requested in own:
        return requested
    if own:
        raise IdTagNotPermitted(f"idTag {requested} is not bound to this API key")
    if ApiKey.objects.filter(id_tags__id_tag=requested).exists():
        raise IdTagNotPermitted(f"idTag {requested} is bound to another API key")
    return requested


def _mine(key: KeyInfo) -> Q:
    # A transaction started over the API is the starting key's; one started
    # otherwise (an RFID card at the charger, support in the admin) is the key's
    # its tag is bound to. A session another key started with this key's tag
    # (possible before permitted_id_tag) stays the starter's alone.
    by_a_key = Q(started_by__startswith=f"{ActorKind.API_KEY}:")
    return Q(started_by=str(Actor.api_key(key.id))) | (Q(id_tag__in=key.id_tags) & ~by_a_key)


def owns_transaction(key: KeyInfo, transaction_id: int | None, station_id: str | None, connector_id: int | None) -> bool:
    """May this key stop that active transaction? (Missing ones are the stop's 404.)"""
    query = Transaction.objects.filter(stopped_at__isnull=True)
    if transaction_id is not None:
        query = query.filter(pk=transaction_id)
    elif connector_id is not None:
        query = query.filter(station_id=station_id, connector__number=connector_id)
    else:
        return True  # nothing named: the caller's 400
    if not query.exists():
        return True
    return query.filter(_mine(key)).exists()


def transactions_for_key(
    key: KeyInfo, limit: int, *, offset: int = 0, station_id: str | None = None, active: bool | None = None
) -> list[dict[str, Any]]:
    """The key's transactions, newest first, with live energy for active ones."""
    query = Transaction.objects.filter(_mine(key))
    if station_id:
        query = query.filter(station_id=station_id)
    if active is not None:
        query = query.filter(stopped_at__isnull=active)
    rows = selectors.with_latest_register(query.select_related("connector")).order_by("-started_at", "-id")
    result = []
    for tx in rows[offset:offset + limit]:
        energy = selectors.session_energy_wh(tx)
        result.append(
            {
                "transactionId": tx.pk,
                "stationId": tx.station_id,
                "connectorId": tx.connector.number,
                "idTag": tx.id_tag,
                "startTime": iso(tx.started_at),
                "stopTime": iso(tx.stopped_at),
                "energy": energy,
                "totalKWh": renderers.total_kwh(energy),
                "duration": tx.duration_seconds,
                "cost": float(tx.cost) if tx.cost is not None else None,
                "currency": tx.currency or None,
                "reason": tx.stop_reason or None,
                "active": tx.stopped_at is None,
            }
        )
    return result


# --- Event replay ---------------------------------------------------------------------

def parse_event_id(event_id: str) -> int:
    match = _EVENT_ID.match(event_id)
    if match is None:
        raise ValueError(f"eventId {event_id!r} is not of the form evt-<ms>-<sequence>")
    return int(match.group(2))


def _check_cursor(after_seq: int) -> None:
    """A cursor beyond the newest sequence number ever given out was never sent by
    this server (another server's database, a reset one, or made up): an empty
    page would let the client wait for events that will never be numbered so.
    The counter, not the table: retention deletes old rows, never numbers."""
    newest = EventCounter.objects.filter(pk=1).values_list("value", flat=True).first() or 0
    if after_seq > newest:
        raise DomainError(
            f"eventId: sequence {after_seq} is ahead of this server's newest event ({newest}): a cursor from "
            "the future, not one this server sent; page from getEventsRecent or a time ('since')"
        )


def events_page(
    *,
    after_seq: int | None = None,
    since: dt.datetime | None = None,
    station_id: str | None = None,
    limit: int = 100,
    newest: bool = False,
) -> tuple[list[EventMessage], bool]:
    """Public events after a sequence number or from a time, oldest first, and whether more follow.

    ``newest`` gives the last ``limit`` events instead (getEventsRecent).
    """
    query = Event.objects.filter(kind__in=PUBLIC_KINDS)
    if after_seq is not None:
        _check_cursor(after_seq)
        query = query.filter(seq__gt=after_seq)
    if since is not None:
        query = query.filter(created_at__gte=since)
    if station_id:
        query = query.filter(station_id=station_id)
    if newest:
        events = list(query.order_by("-seq")[:limit])
        events.reverse()
        return [to_message(event) for event in events], False
    events = list(query.order_by("seq")[: limit + 1])
    return [to_message(event) for event in events[:limit]], len(events) > limit

