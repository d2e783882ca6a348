"""The one write path for the charging domain.

The OCPP consumer, the mobile API, the admin and management commands all call
these functions; nothing else writes stations, connectors, transactions or
meter samples. They are synchronous and run in the ORM thread: async callers
use ``csms.events.call_service``, which also pushes the events they record
once their transaction commits, and the OCPP consumer ``csms.groupcommit.call``,
which runs the calls of many charger messages in one transaction (a function
with a ``many`` attribute takes all of a batch's calls of it at once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import inspect
import logging
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from csms.events import atomic, emit
from csms.models import Event
from stations import rules, values
from stations.errors import Conflict, DomainError, InvalidValue, NotFound  # noqa: F401 (callers import them here)
from stations.models import (
    Connector,
    IdTag,
    MeterSample,
    RegistrationStatus,
    RemoteStartRequest,
    ServerProcess,
    Station,
    Tariff,
    Transaction,
)

log = logging.getLogger("stations.services")


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and Z, as the mobile documents show."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
check_station_connect.many = _check_station_connect_many  # type: ignore[attr-defined]  (csms/groupcommit.py)


def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple:
    """A call's arguments in the order of ``signature`` (the ``many`` forms below). Handlers pass
    them all by position, so binding (a few µs per message) is only for the other calls."""
    if not kwargs and len(args) == len(signature.parameters):
        return args
    return signature.bind(*args, **kwargs).args


# --- Connection lifecycle ---------------------------------------------------------------

def station_connected(station_id: str, channel_name: str) -> str:
    """Mark the station online on this channel; return the channel it replaces ("" if none).

    Only for a socket already accepted: a station is online only while a socket
    is really open (a handshake abandoned before its accept must leave no trace).
    """
    with atomic():
        station = Station.objects.select_for_update().only(*_ONLINE_FIELDS).get(pk=station_id)
        previous = _mark_online(station, channel_name, timezone.now())
        station.save(update_fields=_ONLINE_FIELDS[1:])
    return previous


_ONLINE_FIELDS = ("id", "is_online", "channel_name", "connected_at", "last_activity")


def _mark_online(station: Station, channel_name: str, now: dt.datetime) -> str:
    previous = station.channel_name if station.is_online else ""
    if not station.is_online:
        emit("station.connected", station.pk, {"stationId": station.pk, "timestamp": iso(now)})
    station.is_online = True
    station.channel_name = channel_name
    station.connected_at = now
    station.last_activity = now
    return previous


def _station_connected_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``station_connected`` for the sockets of one group commit: one query locks every
    station, one UPDATE marks them online. None (one by one) if a station comes twice."""
    wanted = [_arguments(_STATION_CONNECTED, args, kwargs) for args, kwargs in calls]
    if len({station_id for station_id, _ in wanted}) < len(wanted):
        return None
    now = timezone.now()
    stations = {station.pk: station for station in Station.objects.select_for_update().only(*_ONLINE_FIELDS)
                .filter(pk__in=[station_id for station_id, _ in wanted]).order_by("pk")}
    outcomes: list[tuple[bool, Any]] = []
    for station_id, channel_name in wanted:
        station = stations.get(station_id)
        if station is None:  # deleted since its check: what .get() raised
            outcomes.append((False, Station.DoesNotExist(f"Station {station_id} does not exist")))
            continue
        outcomes.append((True, _mark_online(station, channel_name, now)))
    Station.objects.bulk_update(list(stations.values()), _ONLINE_FIELDS[1:])
    return outcomes


_STATION_CONNECTED = inspect.signature(station_connected)
station_connected.many = _station_connected_many  # type: ignore[attr-defined]  (csms/groupcommit.py)


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


# --- Presence across processes ------------------------------------------------------

def vouch_for_process(prefix: str, server: str, started_at: dt.datetime, chargers: int, *, first: bool) -> bool:
    """Refresh this process's row; True if another process had declared it dead.

    ``first``: the first round under this channel prefix (the row is created).
    """
    now = timezone.now()
    mine = ServerProcess.objects.filter(channel_prefix=prefix)
    if not first and mine.filter(dead_at__isnull=True).update(seen_at=now, chargers=chargers):
        return False
    # A first round, or a process that was declared dead (its row marked or
    # already removed) while it was only stalled: start afresh.
    ServerProcess.objects.update_or_create(
        channel_prefix=prefix,
        defaults={"server": server, "started_at": started_at, "seen_at": now, "chargers": chargers, "dead_at": None},
    )
    return not first


def release_dead_processes(alive: str = "") -> list[str]:
    """Declare dead the processes silent for ``OCPP_PROCESS_TIMEOUT`` seconds and mark
    offline every station whose socket they held; return the dead processes' names.

    ``alive``: the calling process's channel prefix. A process never judges its
    own row, whatever its timestamp says: its own lateness (a queue of work, a
    locked database) is what it would be judging, and it knows it is alive. A
    process that really stalled is declared dead by another one, and fences
    itself when it next vouches.

    Idempotent and safe to run from every process at once: a station goes
    offline (and its ``station.disconnected`` event is written) only once.
    """
    now = timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.OCPP_PROCESS_TIMEOUT)
    others = ServerProcess.objects.exclude(channel_prefix=alive)
    # One conditional UPDATE against the dead process's own refresh (which
    # requires dead_at IS NULL): exactly one of the two wins.
    others.filter(dead_at__isnull=True, seen_at__lt=cutoff).update(dead_at=now)
    released = []
    for process in others.filter(dead_at__isnull=False):
        for station_id, channel_name in stations_on_channels(process.channel_prefix):
            # Its last activity stays the last one its process wrote down.
            station_disconnected(station_id, channel_name, keep_activity=True)
        ServerProcess.objects.filter(pk=process.pk, dead_at__isnull=False).delete()
        released.append(process.server)
    return released


def flush_activity(last_seen: dict[str, dt.datetime]) -> None:
    """Write in-memory last-activity times (heartbeats are not written one by one)."""
    with atomic():
        for station_id, seen in last_seen.items():
            Station.objects.filter(pk=station_id).update(last_activity=seen)


def registration_status(station_id: str) -> str:
    return Station.objects.filter(pk=station_id).values_list("registration_status", flat=True).first() or ""


def set_registration_status(station_id: str, status: str, *, actor: str = "") -> None:
    with atomic():
        Station.objects.filter(pk=station_id).update(registration_status=status)
        emit("station.registration.changed", station_id, {"stationId": station_id, "status": status}, actor=actor)


# --- Charger-initiated messages ----------------------------------------------------------
#
# Every value a charger sends passes through stations.values before it is stored:
# integers must fit their column, numbers must be finite, times must be plausible.
# What happens otherwise is decided per message below and listed in docs/ocpp.md,
# "Plausibility and value limits"; each message logs what it did not take in one line.

def record_boot(station_id: str, info: dict[str, str]) -> str:
    """Store BootNotification details; return the registration status to answer."""
    fields = {
        "vendor": info.get("charge_point_vendor", ""),
        "model": info.get("charge_point_model", ""),
        "serial_number": info.get("charge_point_serial_number") or info.get("charge_box_serial_number", ""),
        "firmware_version": info.get("firmware_version", ""),
        "iccid": info.get("iccid", ""),
        "imsi": info.get("imsi", ""),
        "meter_type": info.get("meter_type", ""),
        "meter_serial_number": info.get("meter_serial_number", ""),
    }
    now = timezone.now()
    Station.objects.filter(pk=station_id).update(last_boot_at=now, last_activity=now, **fields)
    return registration_status(station_id)


def _connector(station_id: str, number: int) -> Connector:
    connector, _ = Connector.objects.get_or_create(station_id=station_id, number=number)
    return connector


def _locked_connector(station_id: str, number: int) -> Connector:
    """The connector (created on first sight) with its current transaction, its row
    locked until the caller's transaction ends.

    StartTransaction, StopTransaction and MeterValues of one connector take this
    lock first, so they see each other's rows: without it two concurrent starts
    both found the connector free, and a re-sent reading was announced again
    while its first copy was being inserted. (SQLite's IMMEDIATE transactions
    serialise every writer anyway; the lock is for PostgreSQL.)
    """
    query = Connector.objects.select_for_update(of=("self",)).select_related("current_transaction")
    connector = query.filter(station_id=station_id, number=number).first()
    if connector is None:
        connector = query.get(pk=_connector(station_id, number).pk)
    return connector


def _charger_time(
    text: str | None, received: dt.datetime, problems: values.Problems, *, strict: bool = False
) -> dt.datetime:
    """The charger's time if plausible, else the receive time (the reason goes to ``problems``).

    ``strict``: a timestamp that is no date at all refuses the message (InvalidValue).
    """
    if not text:
        return received
    clock = values.charger_time(text, received)
    if strict and not clock.readable:
        raise InvalidValue(clock.problem)
    if clock.value is None:
        problems.add(f"{clock.problem}; the receive time is used")
        return received
    return clock.value


def update_connector_status(
    station_id: str,
    connector_id: int,
    status: str,
    error_code: str = "NoError",
    *,
    info: str = "",
    vendor_error_code: str = "",
    timestamp: str | None = None,
) -> None:
    received = timezone.now()
    problems = values.Problems()
    connector_id = values.column_int(Connector, "number", connector_id, "connectorId")
    updated_at = _charger_time(timestamp, received, problems, strict=True)
    with atomic():
        connector = _connector(station_id, connector_id)
        connector.status = status
        connector.error_code = error_code
        connector.info = info or ""
        connector.vendor_error_code = vendor_error_code or ""
        connector.updated_at = updated_at
        connector.save()
        if connector_id != 0:  # connector 0 is the station itself; its status is derived from the connectors
            emit(
                "connector.status.changed",
                station_id,
                {
                    "stationId": station_id,
                    "connectorId": connector_id,
                    "status": status,
                    "errorCode": None if error_code == "NoError" else error_code,
                    "transactionId": connector.current_transaction_id,
                    "timestamp": iso(connector.updated_at),
                },
            )
    problems.log(log, station_id, "StatusNotification")


def authorize(id_tag: str) -> dict[str, Any]:
    """The idTagInfo for a tag, from the IdTag table."""
    row = IdTag.objects.filter(id_tag=id_tag).select_related("parent").first()
    record = None
    if row is not None:
        record = rules.TagRecord(row.status, row.expiry_date, row.parent.id_tag if row.parent else None)
    return rules.id_tag_info(record, accept_unknown=settings.OCPP_ACCEPT_UNKNOWN_IDTAGS, now=timezone.now())


def _claim_remote_start(station_id: str, connector_id: int, id_tag: str, started_at: dt.datetime) -> RemoteStartRequest | None:
    window = dt.timedelta(seconds=settings.OCPP_REMOTE_START_WINDOW)
    candidates = RemoteStartRequest.objects.filter(
        station_id=station_id, id_tag=id_tag, transaction__isnull=True, created_at__gte=timezone.now() - window
    ).order_by("-created_at")
    for request in candidates:
        if request.connector_number in (None, connector_id):
            return request
    return None


@dataclass(frozen=True)
class _Start:
    """A StartTransaction's values, bounded (see ``_read_start``)."""

    connector_id: int
    meter_start: int
    started_at: dt.datetime
    reported_start: str  # the charger's timestamp when it was not believed, else ""
    reservation_id: int | None


def _read_start(
    connector_id: int, meter_start: int, timestamp: str | None, reservation_id: int | None,
    received: dt.datetime, problems: values.Problems,
) -> _Start:
    """Refuse what identifies nothing (InvalidValue); replace or drop the rest."""
    connector_id = values.column_int(Connector, "number", connector_id, "connectorId")
    if connector_id == 0:
        raise InvalidValue("connectorId 0 is the station itself: a transaction needs a connector >= 1")
    meter_start = values.column_int(Transaction, "meter_start", meter_start, "meterStart")
    if meter_start < 0:
        raise InvalidValue(f"meterStart {meter_start} is negative: an energy register is not")
    if reservation_id is not None and not values.fits(Transaction, "reservation_id", reservation_id):
        problems.add(f"reservationId {values.excerpt(reservation_id)} is out of range; dropped")
        reservation_id = None
    if not timestamp:
        return _Start(connector_id, meter_start, received, "", reservation_id)
    clock = values.charger_time(timestamp, received)
    if not clock.readable:
        raise InvalidValue(clock.problem)
    if clock.value is not None:
        return _Start(connector_id, meter_start, clock.value, "", reservation_id)
    problems.add(f"{clock.problem}; the receive time is used")
    return _Start(connector_id, meter_start, received, timestamp[:40], reservation_id)


def start_transaction(
    station_id: str,
    connector_id: int,
    id_tag: str,
    meter_start: int,
    timestamp: str | None,
    reservation_id: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Allocate a transaction id, or return the same one for a re-sent message.

    A new start on a connector whose transaction is still active closes that
    one first, with reason Other: the charger has moved on (OCPP has one
    transaction per connector), and it is the new one that it will stop.
    """
    received = timezone.now()
    problems = values.Problems()
    start = _read_start(connector_id, meter_start, timestamp, reservation_id, received, problems)
    tag_info = authorize(id_tag)
    with atomic():
        connector = _locked_connector(station_id, start.connector_id)
        same = Transaction.objects.filter(
            station_id=station_id, connector=connector, id_tag=id_tag, meter_start=start.meter_start
        )
        existing = (same.filter(reported_start=start.reported_start) if start.reported_start
                    else same.filter(started_at=start.started_at)).first()
        if existing is not None:
            log.info("StartTransaction re-sent by %s: returning transaction %s", station_id, existing.pk)
            problems.log(log, station_id, "StartTransaction")
            return existing.pk, tag_info
        _close_superseded(connector, start)
        tx = _create_transaction(station_id, connector, id_tag, start)
        if tag_info["status"] == "Accepted":
            connector.current_transaction = tx
            connector.save(update_fields=["current_transaction"])
        data = {
            "transactionId": tx.pk,
            "stationId": station_id,
            "connectorId": start.connector_id,
            "idTag": id_tag,
            "startTime": iso(tx.started_at),
            "meterStart": start.meter_start,
        }
        if tx.start_correlation_id:
            data["correlationId"] = tx.start_correlation_id
        emit("transaction.started", station_id, data, actor=_actor(tx))
    problems.log(log, station_id, "StartTransaction")
    return tx.pk, tag_info


def _create_transaction(station_id: str, connector: Connector, id_tag: str, start: _Start) -> Transaction:
    request = _claim_remote_start(station_id, start.connector_id, id_tag, start.started_at)
    tx = Transaction.objects.create(
        station_id=station_id,
        connector=connector,
        id_tag=id_tag,
        meter_start=start.meter_start,
        started_at=start.started_at,
        reported_start=start.reported_start,
        reservation_id=start.reservation_id,
        started_by_key_id=request.api_key_id if request else None,
        started_by_user_id=request.user_id if request else None,
        start_correlation_id=request.correlation_id if request else "",
    )
    if request is not None:
        request.transaction = tx
        request.save(update_fields=["transaction"])
    return tx


def _close_superseded(connector: Connector, start: _Start) -> None:
    """Close the transactions still active on a connector a new one starts on.

    They ended, on the charger, when the new one began: at its start time and
    its meterStart (when those are plausible for the old one; ``_close`` decides).
    """
    stale = (
        Transaction.objects.select_for_update(of=("self",))
        .select_related("station", "connector", "station__tariff")
        .filter(connector=connector, stopped_at__isnull=True)
    )
    for tx in stale:
        log.warning(
            "[OCPP:StartTransaction] station=%s connector=%s: transaction %s was still active; closed with "
            "reason Other, as the charger started a new one", tx.station_id, start.connector_id, tx.pk,
        )
        problems = values.Problems()
        _close(tx, start.meter_start, start.started_at, "Other", problems)
        problems.log(log, tx.station_id, "StartTransaction")


def _actor(tx: Transaction) -> str:
    if tx.started_by_key_id:
        return f"apikey:{tx.started_by_key_id}"
    if tx.started_by_user_id:
        return f"user:{tx.started_by_user.get_username()}"
    return ""


def tariff_for(station: Station) -> Tariff | None:
    return station.tariff or Tariff.objects.filter(is_default=True).first()


def stop_transaction(
    station_id: str,
    transaction_id: int,
    meter_stop: int,
    timestamp: str | None,
    reason: str | None = None,
    id_tag: str | None = None,
    transaction_data: list[dict] | None = None,
) -> dict[str, Any] | None:
    """Close a transaction, price it, store its samples; idempotent on re-send.

    A known transaction is always closed, whatever else the message carries:
    samples that cannot be taken are skipped, an implausible clock is replaced
    by the receive time and an implausible meterStop by the last plausible
    register (see ``_close``). Otherwise the charger would re-send it forever
    and the connector stay busy.
    """
    received = timezone.now()
    problems = values.Problems()
    tag_info = authorize(id_tag) if id_tag else None
    with atomic():
        # An id no column can hold matches nothing (Django 5 answers an empty query).
        number = (
            Transaction.objects.filter(pk=transaction_id, station_id=station_id)
            .values_list("connector__number", flat=True).first()
        )
        if number is None:
            # Answer anyway so the charger can empty its queue.
            log.warning("StopTransaction for unknown transaction %s from %s", values.excerpt(transaction_id), station_id)
            emit(
                "transaction.stop.unknown",
                station_id,
                {
                    "stationId": station_id,
                    "transactionId": transaction_id,
                    "meterStop": meter_stop if values.fits(Transaction, "meter_stop", meter_stop) else None,
                },
            )
            return tag_info
        _locked_connector(station_id, number)  # before the transaction's row, in the order starts lock them
        tx = (
            Transaction.objects.select_for_update(of=("self",))
            .select_related("station", "connector", "station__tariff")
            .get(pk=transaction_id)
        )
        if transaction_data:
            _store_meter_values(station_id, number, tx, transaction_data, received, problems)
        if tx.stopped_at is not None:
            log.info("StopTransaction re-sent by %s for transaction %s", station_id, transaction_id)
        else:
            stopped_at = _charger_time(timestamp, received, problems)
            _close(tx, meter_stop, stopped_at, reason or "Local", problems)
    problems.log(log, station_id, "StopTransaction")
    return tag_info


def _close(tx: Transaction, meter_stop: Any, stopped_at: dt.datetime, reason: str, problems: values.Problems) -> None:
    """Close ``tx``: energy, duration and cost from plausible values only.

    The stop is never before the start (a stop time before it becomes the
    start: duration 0). A meterStop that is no plausible register for the
    session (below meterStart, or more than ``OCPP_MAX_POWER_KW`` could deliver
    in its length) is replaced by the newest plausible register among the
    transaction's samples, or by meterStart: energy is never negative, and
    never absurd.
    """
    tx.stopped_at = max(stopped_at, tx.started_at)
    elapsed = (tx.stopped_at - tx.started_at).total_seconds()
    tx.meter_stop = _stop_register(tx, meter_stop, elapsed, problems)
    tx.stop_reason = reason
    tx.energy_wh = tx.meter_stop - tx.meter_start
    tariff = tariff_for(tx.station)
    if tariff is not None:
        tx.tariff = tariff
        tx.currency = tariff.currency
        tx.cost = rules.compute_cost(
            tx.energy_wh,
            tx.duration_seconds or 0,
            price_per_kwh=tariff.price_per_kwh,
            price_per_minute=tariff.price_per_minute,
            session_fee=tariff.session_fee,
        )
        if not values.fits_decimal(Transaction, "cost", tx.cost):
            problems.add(f"cost {tx.cost} of transaction {tx.pk} does not fit the cost column; left empty")
            tx.cost = None
    tx.save()
    Connector.objects.filter(pk=tx.connector_id, current_transaction=tx).update(current_transaction=None)
    data = {
        "transactionId": tx.pk,
        "stationId": tx.station_id,
        "connectorId": tx.connector.number,
        "idTag": tx.id_tag,
        "stopTime": iso(tx.stopped_at),
        "energy": tx.energy_wh,
        "totalKWh": round(tx.energy_wh / 1000, 3),
        "duration": tx.duration_seconds,
        "cost": float(tx.cost) if tx.cost is not None else None,
        "currency": tx.currency or None,
        "reason": reason,
    }
    if tx.stop_correlation_id:
        data["correlationId"] = tx.stop_correlation_id
    emit("transaction.stopped", tx.station_id, data, actor=_stopper(tx, reason) or _actor(tx))


def _stopper(tx: Transaction, reason: str) -> str:
    """Who asked for the remote stop the charger reports (reason Remote): they stopped it, not its starter."""
    if reason != "Remote":
        return ""
    asked = (Event.objects.filter(station_id=tx.station_id, kind="remote.stop.requested")
             .order_by("-seq").values_list("actor", "data")[:20])
    return next((actor for actor, data in asked if data.get("transactionId") == tx.pk), "")


def _stop_register(tx: Transaction, meter_stop: Any, elapsed_s: float, problems: values.Problems) -> int:
    """The register the session ended at: meterStop if plausible, else the newest plausible sample's."""
    register = values.as_int(meter_stop)
    if register is not None and values.plausible_energy(register - tx.meter_start, elapsed_s):
        return register
    sampled = (
        MeterSample.objects.filter(
            transaction=tx, energy_wh__gte=tx.meter_start,
            energy_wh__lte=tx.meter_start + values.max_session_wh(elapsed_s),
        )
        .order_by("-timestamp")
        .values_list("energy_wh", flat=True)
        .first()
    )
    used = round(sampled) if sampled is not None else tx.meter_start
    problems.add(f"meterStop {values.excerpt(meter_stop)} is not plausible after meterStart {tx.meter_start} "
                 f"(transaction {tx.pk}); the register {used} is used")
    return used


def record_meter_values(
    station_id: str, connector_id: int, transaction_id: int | None, meter_value: list[dict]
) -> None:
    """Store a MeterValues message; announce the newest reading it added (none if it added none)."""
    received = timezone.now()
    problems = values.Problems()
    connector_id = values.column_int(Connector, "number", connector_id, "connectorId")
    with atomic():
        connector_pk, current = _lock_for_readings(station_id, connector_id)
        tx = _transaction_of(connector_pk, connector_id, current, transaction_id, problems)
        readings = _readings(station_id, connector_id, tx, meter_value, received, problems)
        added, before = _insert_new(station_id, connector_id, readings)
        if added:
            _announce_meter(station_id, connector_id, tx, max(added, key=lambda row: row.timestamp), before)
    problems.log(log, station_id, "MeterValues")


_RECORD_METER_VALUES = inspect.signature(record_meter_values)


def _record_meter_values_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``record_meter_values`` for the MeterValues of many stations in one group commit
    (csms/groupcommit.py): what it does for each, with one query locking every connector
    and reading its newest stored sample, and one INSERT of every new reading.

    A message the domain refuses before anything is written gets its error; a message
    that is not the hot case (several readings, a reading older than the newest stored
    one, a connector seen for the first time) takes the one-message path in the same
    transaction. None: run the calls one by one (two of them for one connector).
    """
    received = timezone.now()
    outcomes: list[tuple[bool, Any]] = [(True, None)] * len(calls)
    items = []
    for index, (args, kwargs) in enumerate(calls):
        station_id, connector_id, transaction_id, meter_value = _arguments(_RECORD_METER_VALUES, args, kwargs)
        try:
            number = values.column_int(Connector, "number", connector_id, "connectorId")
        except InvalidValue as error:
            outcomes[index] = (False, error)
            continue
        items.append((station_id, number, transaction_id, meter_value, values.Problems()))
    if len({(item[0], item[1]) for item in items}) < len(items):
        return None
    locked = _lock_many_for_readings({(item[0], item[1]) for item in items})
    announcements = []
    new_rows: list[MeterSample] = []
    for station_id, number, transaction_id, meter_value, problems in items:
        if (station_id, number) in locked:
            connector_pk, current, newest = locked[(station_id, number)]
        else:  # a connector seen for the first time
            (connector_pk, current), newest = _lock_for_readings(station_id, number), _NOT_READ
        tx = _transaction_of(connector_pk, number, current, transaction_id, problems)
        readings = _readings(station_id, number, tx, meter_value, received, problems)
        if len(readings) == 1 and newest is not _NOT_READ and (newest is None or newest.timestamp < next(iter(readings))):
            [row] = readings.values()  # the hot path: one reading, newer than every stored one
            new_rows.append(row)
            added, before = [row], newest
        else:
            added, before = _insert_new(station_id, number, readings)
        if added:
            announcements.append((station_id, number, tx, max(added, key=lambda row: row.timestamp), before))
    MeterSample.objects.bulk_create(new_rows, ignore_conflicts=True)
    for announcement in announcements:  # in arrival order
        _announce_meter(*announcement)
    for station_id, _, _, _, problems in items:
        problems.log(log, station_id, "MeterValues")
    return outcomes


record_meter_values.many = _record_meter_values_many  # type: ignore[attr-defined]  (csms/groupcommit.py)
_NOT_READ = object()  # a connector's newest sample was not read with its lock


def _lock_many_for_readings(keys: set[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, Any, Any]]:
    """``_lock_for_readings`` for many connectors in one query, with each one's newest stored sample."""
    newest = MeterSample.objects.filter(
        station_id=OuterRef("station_id"), connector_number=OuterRef("number")
    ).order_by("-timestamp")
    # Every connector of these stations (a few each): an OR of (station, number) pairs
    # cost more to build in the ORM than the query took to run.
    rows = (
        Connector.objects.select_for_update(of=("self",))
        .filter(station_id__in={station_id for station_id, _ in keys})
        .order_by("id")  # one lock order for every writer
        .annotate(
            newest_at=Subquery(newest.values("timestamp")[:1]),
            newest_tx=Subquery(newest.values("transaction_id")[:1]),
            newest_wh=Subquery(newest.values("energy_wh")[:1]),
        )
        .values_list("station_id", "number", "id", *(f"current_transaction__{name}" for name in _SESSION_FIELDS),
                     "newest_at", "newest_tx", "newest_wh")
    )
    locked = {}
    for station_id, number, pk, tx_pk, meter_start, started_at, newest_at, newest_tx, newest_wh in rows:
        if (station_id, number) not in keys:
            continue
        session = _Session(tx_pk, meter_start, started_at) if tx_pk is not None else None
        stored = _Stored(newest_at, newest_tx, newest_wh) if newest_at is not None else None
        locked[(station_id, number)] = (pk, session, stored)
    return locked


class _Session(NamedTuple):
    """What meter readings need of their transaction (a Transaction has the same attributes)."""

    pk: int
    meter_start: int
    started_at: dt.datetime


_SESSION_FIELDS = ("id", "meter_start", "started_at")


def _lock_for_readings(station_id: str, number: int) -> tuple[int, _Session | None]:
    """``_locked_connector`` for MeterValues, the hot path: the same lock and the
    current transaction in one query, read as values (no model instances)."""
    query = (
        Connector.objects.select_for_update(of=("self",))
        .filter(station_id=station_id, number=number)
        .values_list("id", *(f"current_transaction__{name}" for name in _SESSION_FIELDS))
    )
    row = query.first()
    if row is None:
        _connector(station_id, number)
        row = query.first()
    return row[0], (_Session(*row[1:]) if row[1] is not None else None)


def _transaction_of(
    connector_pk: int, number: int, current: _Session | None, transaction_id: int | None, problems: values.Problems
) -> _Session | None:
    """The transaction MeterValues samples belong to: the one named, if it is this
    connector's; with none named, the connector's current one. Never another's."""
    if transaction_id is None or (current is not None and current.pk == transaction_id):
        return current
    # Another of this connector's, e.g. one just stopped; an id no column holds matches nothing.
    row = Transaction.objects.filter(pk=transaction_id, connector_id=connector_pk).values_list(*_SESSION_FIELDS).first()
    if row is None:
        problems.add(f"transactionId {values.excerpt(transaction_id)} is no transaction of connector "
                     f"{number}; its samples are kept without a transaction")
        return None
    return _Session(*row)


def _store_meter_values(
    station_id: str, connector_id: int, tx: Transaction | None, meter_value: list[dict],
    received: dt.datetime, problems: values.Problems,
) -> None:
    """Store the readings of a StopTransaction's transactionData that are not stored yet."""
    _insert_new(station_id, connector_id, _readings(station_id, connector_id, tx, meter_value, received, problems))


def _readings(
    station_id: str, connector_id: int, tx: Transaction | _Session | None, meter_value: list[dict],
    received: dt.datetime, problems: values.Problems,
) -> dict[dt.datetime, MeterSample]:
    """The message's readings by time, as rows to store: a reading without a plausible
    time is dropped, and so is a value that is no finite number or an implausible register."""
    readings: dict[dt.datetime, MeterSample] = {}
    for index, reading in enumerate(meter_value):
        clock = values.charger_time(reading.get("timestamp"), received)
        if clock.value is None:
            problems.add(f"sample {index}: {clock.problem}; dropped")
            continue
        if clock.value in readings:
            problems.add(f"sample {index}: a second reading at {iso(clock.value)}; dropped")
            continue
        sampled = reading.get("sampled_value") or []
        summary = rules.summarize_sampled_values(sampled, lambda why: problems.add(f"sample {index}: {why}; dropped"))
        if "energy_wh" in summary and not _plausible_register(summary["energy_wh"], tx, clock.value):
            problems.add(f"sample {index}: register {summary.pop('energy_wh')} Wh is not plausible"
                         f"{f' after meterStart {tx.meter_start}' if tx else ''}; dropped")
        readings[clock.value] = MeterSample(
            station_id=station_id,
            connector_number=connector_id,
            transaction_id=tx.pk if tx else None,
            timestamp=clock.value,
            context=(sampled[0].get("context") or "") if sampled else "",
            sampled_values=sampled,
            **summary,
        )
    return readings


class _Stored(NamedTuple):
    timestamp: dt.datetime
    transaction_id: int | None
    energy_wh: float | None


def _insert_new(
    station_id: str, connector_id: int, readings: dict[dt.datetime, MeterSample]
) -> tuple[list[MeterSample], _Stored | None]:
    """Insert the readings not stored yet; return them, and for a lone reading the
    stored one just before it (for its delta: one query finds both).

    The caller holds the connector's lock (``_locked_connector``), so what is
    found here is exactly what is stored: a re-sent reading, or a second one at
    a time already taken, is neither inserted nor announced.
    """
    if not readings:
        return [], None
    stored = MeterSample.objects.filter(station_id=station_id, connector_number=connector_id)
    before = None
    if len(readings) == 1:  # what a charger sends every interval: the hot path
        [(at, row)] = readings.items()
        found = stored.filter(timestamp__lte=at).order_by("-timestamp").values_list(
            "timestamp", "transaction_id", "energy_wh").first()
        before = _Stored(*found) if found is not None else None
        if before is not None and before.timestamp == at:
            return [], None
        rows = [row]
    else:
        taken = set(stored.filter(timestamp__in=list(readings)).values_list("timestamp", flat=True))
        rows = [row for at, row in readings.items() if at not in taken]
    MeterSample.objects.bulk_create(rows, ignore_conflicts=True)
    return rows, before


def _plausible_register(register: float, tx: Transaction | _Session | None, at: dt.datetime) -> bool:
    """An energy register reading: never negative, and within what ``tx`` could have delivered by ``at``."""
    if tx is None:
        return register >= 0
    return values.plausible_energy(register - tx.meter_start, (at - tx.started_at).total_seconds())


def _announce_meter(
    station_id: str, connector_id: int, tx: _Session | None, newest: MeterSample, before: _Stored | None
) -> None:
    """Push the newest reading a message added; ``before``: the stored reading just before it, if known."""
    if before is not None and before.transaction_id == (tx.pk if tx else None) and before.energy_wh is not None:
        previous = before.energy_wh  # the one the query below would find
    else:
        previous = (
            MeterSample.objects.filter(
                station_id=station_id, connector_number=connector_id, transaction_id=tx.pk if tx else None,
                timestamp__lt=newest.timestamp,
                energy_wh__isnull=False,
            )
            .order_by("-timestamp")
            .values_list("energy_wh", flat=True)
            .first()
        )
    baseline = previous if previous is not None else (tx.meter_start if tx else None)
    register = newest.energy_wh
    # "energy" is what this session has delivered (the documents' 7500 Wh mid-way,
    # 15500 Wh at the end), not the meter's lifetime register. Registers are
    # plausible by now (never below meterStart); max() keeps rows from before that.
    energy = values.wh(max(register - tx.meter_start, 0) if register is not None and tx else register)
    emit(
        "meter.update",
        station_id,
        {
            "stationId": station_id,
            "connectorId": connector_id,
            "transactionId": tx.pk if tx else None,
            "timestamp": iso(newest.timestamp),
            "energy": energy,
            "power": newest.power_w,
            "current": newest.current_a,
            "voltage": newest.voltage_v,
            "soc": newest.soc,
            "delta": values.wh(max(register - baseline, 0)) if register is not None and baseline is not None else None,
            "total": energy,
            "unit": "Wh",
            "register": values.wh(register),
        },
    )


def record_data_transfer(station_id: str, vendor_id: str, message_id: str | None, data: str | None) -> str:
    emit(
        "station.data_transfer",
        station_id,
        {"stationId": station_id, "vendorId": vendor_id, "messageId": message_id, "data": data},
    )
    return "Accepted" if vendor_id in settings.OCPP_DATA_TRANSFER_VENDORS else "UnknownVendorId"


def record_firmware_status(station_id: str, kind: str, status: str) -> None:
    emit(kind, station_id, {"stationId": station_id, "status": status})



# --- Remote commands: preconditions and outcomes -------------------------------------

def _online_station(station_id: str) -> Station:
    station = Station.objects.filter(pk=station_id).first()
    if station is None:
        raise NotFound(f"Unknown station {station_id}")
    if not station.is_online:
        raise Conflict(f"Station {station_id} is offline")
    return station


def prepare_remote_start(
    station_id: str,
    connector_id: int,
    id_tag: str,
    *,
    correlation_id: str = "",
    api_key_id: int | None = None,
    user_id: int | None = None,
) -> None:
    """Check a remote start can be asked for, and remember who asked.

    One remote start per connector at a time (every API that starts comes
    here): while one is pending a second one is 409, not sent to the charger
    again. Pending ends with the charger's refusal or no answer (the request is
    forgotten), with the transaction it started (claimed), or
    OCPP_COMMAND_TIMEOUT after it was asked (accepted, but no transaction yet:
    the charger decides about the next one).
    """
    station = _online_station(station_id)
    if station.registration_status != RegistrationStatus.ACCEPTED:
        raise Conflict(f"Station {station_id} is not accepted ({station.registration_status})")
    if connector_id == 0 or not Connector.objects.filter(station=station, number=connector_id).exists():
        raise NotFound(f"Unknown connector {connector_id} on station {station_id}")
    with atomic():
        # The connector's row lock orders concurrent starts (PostgreSQL): the
        # second one sees the first one's request.
        connector = _locked_connector(station_id, connector_id)
        if connector.current_transaction_id or connector.status in rules.BUSY_STATUSES:
            raise Conflict(f"Connector {connector_id} is busy ({connector.status})")
        now = timezone.now()
        pending = (
            RemoteStartRequest.objects.filter(
                station=station, transaction__isnull=True,
                created_at__gte=now - dt.timedelta(seconds=settings.OCPP_COMMAND_TIMEOUT),
            )
            .filter(Q(connector_number=connector_id) | Q(connector_number__isnull=True))
            .order_by("-created_at")
            .first()
        )
        if pending is not None:
            raise Conflict(
                f"Connector {connector_id} of station {station_id} has a remote start pending (asked "
                f"{(now - pending.created_at).total_seconds():.1f} s ago): wait for its remote.start.result"
            )
        RemoteStartRequest.objects.create(
            station=station,
            connector_number=connector_id,
            id_tag=id_tag,
            correlation_id=correlation_id,
            api_key_id=api_key_id,
            user_id=user_id,
        )


def prepare_remote_stop(
    station_id: str | None,
    transaction_id: int | None,
    connector_id: int | None,
    *,
    correlation_id: str = "",
) -> Transaction:
    """Find the active transaction to stop (by id, or by station and connector)."""
    query = Transaction.objects.filter(stopped_at__isnull=True)
    if transaction_id is not None:
        query = query.filter(pk=transaction_id)
        if station_id:
            query = query.filter(station_id=station_id)
    elif station_id and connector_id is not None:
        query = query.filter(station_id=station_id, connector__number=connector_id)
    else:
        raise DomainError("Give transactionId, or stationId and connectorId")
    tx = query.select_related("connector").first()
    if tx is None:
        raise NotFound("No active transaction matches")
    _online_station(tx.station_id)
    if correlation_id:
        Transaction.objects.filter(pk=tx.pk).update(stop_correlation_id=correlation_id)
    return tx


def forget_remote_start(station_id: str, id_tag: str, correlation_id: str) -> None:
    """The charger refused or never answered: nothing will start."""
    RemoteStartRequest.objects.filter(
        station_id=station_id, id_tag=id_tag, correlation_id=correlation_id, transaction__isnull=True
    ).delete()


def record_command(kind: str, station_id: str, data: dict[str, Any], *, actor: str = "") -> None:
    """Record the outcome of a CSMS-initiated command in the event log."""
    emit(kind, station_id, data, actor=actor)


# --- Reference data (admin) ---------------------------------------------------------

def save_tariff(tariff: Tariff) -> Tariff:
    """Save a tariff; making it the default takes that from the previous one."""
    with atomic():
        if tariff.is_default:
            Tariff.objects.filter(is_default=True).exclude(pk=tariff.pk).update(is_default=False)
        tariff.save()
    return tariff
