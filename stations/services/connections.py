"""A station's credentials and its socket: may it connect, and which channel holds it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import inspect
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from csms.events import atomic, emit
from stations import rules
from stations.errors import DomainError
from stations.models import OcppVersion, Station
from stations.services._common import _arguments, iso

# --- Station credentials (security profile 1) ----------------------------------------

def hash_station_password(password: str, salt: str | None = None) -> str:
    # Station passwords are long random strings set by the operator (OCPP
    # AuthorizationKey), so a salted SHA-256 is enough and keeps a reconnect
    # storm of thousands of chargers from burning seconds of CPU each.
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256((salt + password).encode()).hexdigest()
    return f"sha256${salt}${digest}"


def check_station_password(password: str, stored: str) -> bool:
    try:
        _, salt, _ = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_station_password(password, salt), stored)


def set_station_password(station_id: str, password: str | None) -> str:
    """Set (or, with None, generate) a station's basic-auth password; return it once."""
    password = password or secrets.token_urlsafe(18)
    if len(password) < 16:
        raise DomainError("A station password needs at least 16 characters")
    Station.objects.filter(pk=station_id).update(password_hash=hash_station_password(password))
    return password


@dataclass(frozen=True)
class ConnectDecision:
    accepted: bool
    reason: str = ""
    registration_status: str = ""


def check_station_connect(station_id: str, password: str | None) -> ConnectDecision:
    """May this station open a socket? Registers an unknown one per the unknown-station
    policy. Reads only what the decision needs, in one ORM hop; marking the station
    online is ``station_connected``'s, once the socket is accepted."""
    station = Station.objects.filter(pk=station_id).values_list("password_hash", "registration_status").first()
    decision = _connect_decision(station, password)
    if station is None and decision.accepted:
        created, _ = Station.objects.get_or_create(
            pk=station_id, defaults={"registration_status": decision.registration_status})
        return ConnectDecision(True, registration_status=created.registration_status)
    return decision


def _connect_decision(station: tuple[str, str] | None, password: str | None) -> ConnectDecision:
    """The decision for a station row (password hash, registration status), None: unknown."""
    if station is None:
        status = rules.boot_status(False, None, settings.OCPP_UNKNOWN_STATIONS)
        if status is None:
            return ConnectDecision(False, "unknown station")
        if settings.OCPP_REQUIRE_AUTH:
            return ConnectDecision(False, "unknown station cannot authenticate")
        return ConnectDecision(True, registration_status=status)  # to be registered
    password_hash, registration = station
    if password_hash:
        if password is None:
            return ConnectDecision(False, "missing credentials")
        if not check_station_password(password, password_hash):
            return ConnectDecision(False, "wrong password")
    elif settings.OCPP_REQUIRE_AUTH:
        return ConnectDecision(False, "station has no password and authentication is required")
    return ConnectDecision(True, registration_status=registration)


def _check_station_connect_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]]:
    """``check_station_connect`` for the handshakes of one group commit: one query reads
    every known station, one INSERT registers the unknown ones let in."""
    wanted = [_arguments(_CHECK_STATION_CONNECT, args, kwargs) for args, kwargs in calls]
    rows = {pk: (password_hash, status) for pk, password_hash, status in Station.objects.filter(
        pk__in={station_id for station_id, _ in wanted}).values_list("pk", "password_hash", "registration_status")}
    decisions = [_connect_decision(rows.get(station_id), password) for station_id, password in wanted]
    new = {station_id: decision.registration_status for (station_id, _), decision in zip(wanted, decisions, strict=True)
           if station_id not in rows and decision.accepted}
    if new:
        Station.objects.bulk_create(
            [Station(pk=station_id, registration_status=status) for station_id, status in new.items()],
            ignore_conflicts=True)
        # A station another process registered meanwhile keeps its own status.
        stored = dict(Station.objects.filter(pk__in=list(new)).values_list("pk", "registration_status"))
        decisions = [ConnectDecision(True, registration_status=stored[station_id]) if station_id in new else decision
                     for (station_id, _), decision in zip(wanted, decisions, strict=True)]
    return [(True, decision) for decision in decisions]


_CHECK_STATION_CONNECT = inspect.signature(check_station_connect)
check_station_connect.many = _check_station_connect_many  # type: ignore[attr-defined]  # csms/groupcommit.py


# --- Connection lifecycle ---------------------------------------------------------------

def station_connected(station_id: str, channel_name: str, ocpp_version: str = OcppVersion.V16) -> str:
    """Mark the station online on this channel, speaking ``ocpp_version`` (the negotiated
    subprotocol's); return the channel it replaces ("" if none).

    Only for a socket already accepted: a station is online only while a socket
    is really open (a handshake abandoned before its accept must leave no trace).
    """
    with atomic():
        station = Station.objects.select_for_update().only(*_ONLINE_FIELDS).get(pk=station_id)
        previous = _mark_online(station, channel_name, ocpp_version, timezone.now())
        station.save(update_fields=_ONLINE_FIELDS[1:])
    return previous


_ONLINE_FIELDS = ("id", "is_online", "channel_name", "connected_at", "last_activity", "ocpp_version")


def _mark_online(station: Station, channel_name: str, ocpp_version: str, now: dt.datetime) -> str:
    previous = station.channel_name if station.is_online else ""
    if not station.is_online:
        emit("station.connected", station.pk, {"stationId": station.pk, "timestamp": iso(now)})
    station.is_online = True
    station.channel_name = channel_name
    station.connected_at = now
    station.last_activity = now
    station.ocpp_version = ocpp_version
    return previous


def _station_connected_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``station_connected`` for the sockets of one group commit: one query locks every
    station, one UPDATE marks them online. None (one by one) if a station comes twice."""
    wanted = [_arguments(_STATION_CONNECTED, args, kwargs) for args, kwargs in calls]
    if len({station_id for station_id, *_ in wanted}) < len(wanted):
        return None
    now = timezone.now()
    stations = {station.pk: station for station in Station.objects.select_for_update().only(*_ONLINE_FIELDS)
                .filter(pk__in=[station_id for station_id, *_ in wanted]).order_by("pk")}
    outcomes: list[tuple[bool, Any]] = []
    same_versions = True
    for station_id, channel_name, ocpp_version in wanted:
        station = stations.get(station_id)
        if station is None:  # deleted since its check: what .get() raised
            outcomes.append((False, Station.DoesNotExist(f"Station {station_id} does not exist")))
            continue
        same_versions = same_versions and station.ocpp_version == ocpp_version
        outcomes.append((True, _mark_online(station, channel_name, ocpp_version, now)))
    # A version rarely changes: without it the UPDATE has one CASE per row less to build.
    Station.objects.bulk_update(list(stations.values()), _ONLINE_FIELDS[1:-1] if same_versions else _ONLINE_FIELDS[1:])
    return outcomes


_STATION_CONNECTED = inspect.signature(station_connected)
station_connected.many = _station_connected_many  # type: ignore[attr-defined]  # csms/groupcommit.py


def station_disconnected(
    station_id: str, channel_name: str, last_activity: dt.datetime | None = None, *, keep_activity: bool = False
) -> bool:
    """Mark the station offline if this channel still holds it; True if it did.

    ``last_activity``: the holder's unflushed last-activity time (default: now,
    the socket closed now); ``keep_activity``: leave the stored one (nobody saw
    the socket close).
    """
    now = timezone.now()
    changes: dict[str, Any] = {"is_online": False, "channel_name": ""}
    if not keep_activity:
        changes["last_activity"] = last_activity or now
    with atomic():
        updated = Station.objects.filter(pk=station_id, channel_name=channel_name, is_online=True).update(**changes)
        if updated:
            emit("station.disconnected", station_id, {"stationId": station_id, "timestamp": iso(now)})
    return bool(updated)


def stations_on_channels(prefix: str) -> list[tuple[str, str]]:
    """(station id, channel) of the stations marked online on channels with this prefix."""
    return list(
        Station.objects.filter(is_online=True, channel_name__startswith=prefix).values_list("id", "channel_name")
    )
