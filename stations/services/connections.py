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
from stations.errors import Conflict, DomainError, NotFound
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
    # A password set here supersedes one sent to the charger and not yet confirmed.
    Station.objects.filter(pk=station_id).update(password_hash=hash_station_password(password), next_password_hash="")
    return password


# --- Rotation (2.0.1 SetVariables SecurityCtrlr.BasicAuthPassword: stations/commands/device_model.py) --------

def offer_next_password(station_id: str, password: str) -> str:
    """Accept ``password`` beside the current one from now on (before it is sent to the charger, so that a
    reconnect with it never races the answer); return its hash, which the rotation's end names.

    Refused (Conflict) while an earlier rotation waits (RebootRequired, unanswered): the station may hold
    that password, and a later rotation it refused would drop it and lock the station out. Checked and
    set in one UPDATE, so two rotations at once cannot both start."""
    stored = hash_station_password(password)
    if not Station.objects.filter(pk=station_id, next_password_hash="").update(next_password_hash=stored):
        if not Station.objects.filter(pk=station_id).exists():
            raise NotFound(f"Unknown station {station_id}")
        raise Conflict(f"Station {station_id} has a password rotation waiting (the charger may hold that "
                       f"password: it becomes the password when the charger connects with it); to cancel it, "
                       f"set the station's password by hand")
    return stored


def end_password_rotation(station_id: str, next_hash: str, *, promote: bool, actor: str = "") -> bool:
    """The charger took the next password (``promote``: it replaces the current one, which stops working)
    or refused it (it is dropped). Only if it is still the one offered (a newer rotation or a password set
    meanwhile wins); True if anything changed."""
    pending = Station.objects.filter(pk=station_id, next_password_hash=next_hash)
    if not promote:
        return bool(pending.update(next_password_hash=""))
    with atomic():
        changed = bool(pending.update(password_hash=next_hash, next_password_hash=""))
        if changed:
            emit("station.password.set", station_id, {"stationId": station_id}, actor=actor)
    # Already promoted by the charger's reconnect with it (it may come before the answer is read).
    return changed or Station.objects.filter(pk=station_id, password_hash=next_hash).exists()


@dataclass(frozen=True)
class ConnectDecision:
    accepted: bool
    reason: str = ""
    registration_status: str = ""
    promotes: bool = False  # connected with the next password: it replaces the current one


def check_station_connect(station_id: str, password: str | None) -> ConnectDecision:
    """May this station open a socket? Registers an unknown one per the unknown-station
    policy. Reads only what the decision needs, in one ORM hop; marking the station
    online is ``station_connected``'s, once the socket is accepted."""
    station = Station.objects.filter(pk=station_id).values_list(*_CREDENTIALS).first()
    decision = _connect_decision(station, password)
    if station is None and decision.accepted:
        created, _ = Station.objects.get_or_create(
            pk=station_id, defaults={"registration_status": decision.registration_status})
        return ConnectDecision(True, registration_status=created.registration_status)
    if decision.promotes and station is not None:
        end_password_rotation(station_id, station[1], promote=True)
    return decision


# What the decision reads of a station: its password, the next one (a rotation under way), its registration.
_CREDENTIALS = ("password_hash", "next_password_hash", "registration_status")


def _connect_decision(station: tuple[str, str, str] | None, password: str | None) -> ConnectDecision:
    """The decision for a station row (password hash, next password hash, registration status), None:
    unknown. The next password (offered to the charger, not yet confirmed) is accepted beside the current
    one; a charger that connects with it has taken it: it becomes the password (``promotes``)."""
    if station is None:
        status = rules.boot_status(False, None, settings.OCPP_UNKNOWN_STATIONS)
        if status is None:
            return ConnectDecision(False, "unknown station")
        if settings.OCPP_REQUIRE_AUTH:
            return ConnectDecision(False, "unknown station cannot authenticate")
        return ConnectDecision(True, registration_status=status)  # to be registered
    password_hash, next_hash, registration = station
    if password_hash:
        if password is None:
            return ConnectDecision(False, "missing credentials")
        if not check_station_password(password, password_hash):
            if next_hash and check_station_password(password, next_hash):
                return ConnectDecision(True, registration_status=registration, promotes=True)
            return ConnectDecision(False, "wrong password")
    elif settings.OCPP_REQUIRE_AUTH:
        return ConnectDecision(False, "station has no password and authentication is required")
    return ConnectDecision(True, registration_status=registration)


def _check_station_connect_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]]:
    """``check_station_connect`` for the handshakes of one group commit: one query reads
    every known station, one INSERT registers the unknown ones let in."""
    wanted = [_arguments(_CHECK_STATION_CONNECT, args, kwargs) for args, kwargs in calls]
    rows = {pk: credentials for pk, *credentials in Station.objects.filter(
        pk__in={station_id for station_id, _ in wanted}).values_list("pk", *_CREDENTIALS)}
    decisions = [_connect_decision(rows.get(station_id), password) for station_id, password in wanted]
    for (station_id, _), decision in zip(wanted, decisions, strict=True):
        if decision.promotes:  # rare: the first connect after a rotation
            end_password_rotation(station_id, rows[station_id][1], promote=True)
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
