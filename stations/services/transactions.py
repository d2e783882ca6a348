"""Transactions: start and stop (priced, idempotent on re-send), the sessions a new start
supersedes, and the preconditions of remote starts and stops."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from csms.events import atomic, emit
from csms.models import Event
from stations import rules, values
from stations.actors import CHARGER, Actor
from stations.errors import Conflict, DomainError, InvalidValue, NotFound
from stations.models import Connector, MeterSample, RegistrationStatus, RemoteStartRequest, Station, Transaction
from stations.services._common import _by_charger_id, _charger_time, _locked_connector, iso, log
from stations.services.authorization import authorize
from stations.services.metering import _store_meter_values
from stations.services.tariffs import price


def _claim_remote_start(station_id: str, evse_id: int, id_tag: str, started_at: dt.datetime) -> RemoteStartRequest | None:
    window = dt.timedelta(seconds=settings.OCPP_REMOTE_START_WINDOW)
    candidates = RemoteStartRequest.objects.filter(
        station_id=station_id, id_tag=id_tag, transaction__isnull=True, created_at__gte=timezone.now() - window
    ).order_by("-created_at")
    for request in candidates:
        if request.connector_number in (None, evse_id):
            return request
    return None


@dataclass(frozen=True)
class _Start:
    """A StartTransaction's values, bounded (see ``_read_start``)."""

    evse_id: int
    meter_start: int
    started_at: dt.datetime
    reported_start: str  # the charger's timestamp when it was not believed, else ""
    reservation_id: int | None


def _read_start(
    evse_id: int, meter_start: int, timestamp: str | None, reservation_id: int | None,
    received: dt.datetime, problems: values.Problems,
) -> _Start:
    """Refuse what identifies nothing (InvalidValue); replace or drop the rest."""
    evse_id = values.column_int(Connector, "number", evse_id, "connectorId")
    if evse_id == 0:
        raise InvalidValue("connectorId 0 is the station itself: a transaction needs a connector >= 1")
    meter_start = values.column_int(Transaction, "meter_start", meter_start, "meterStart")
    if meter_start < 0:
        raise InvalidValue(f"meterStart {meter_start} is negative: an energy register is not")
    if reservation_id is not None and not values.fits(Transaction, "reservation_id", reservation_id):
        problems.add(f"reservationId {values.excerpt(reservation_id)} is out of range; dropped")
        reservation_id = None
    if not timestamp:
        return _Start(evse_id, meter_start, received, "", reservation_id)
    clock = values.charger_time(timestamp, received)
    if not clock.readable:
        raise InvalidValue(clock.problem)
    if clock.value is not None:
        return _Start(evse_id, meter_start, clock.value, "", reservation_id)
    problems.add(f"{clock.problem}; the receive time is used")
    return _Start(evse_id, meter_start, received, timestamp[:40], reservation_id)


def start_transaction(
    station_id: str,
    evse_id: int,
    token: str,
    meter_start: int,
    timestamp: str | None,
    reservation_id: int | None = None,
) -> tuple[int, rules.Authorization]:
    """Allocate a transaction id (the same one for a re-sent message); return it with the token's
    authorization.

    A new start on a connector whose transaction is still active closes that
    one first, with reason Other: the charger has moved on (OCPP has one
    transaction per connector), and it is the new one that it will stop.
    """
    received = timezone.now()
    problems = values.Problems()
    start = _read_start(evse_id, meter_start, timestamp, reservation_id, received, problems)
    authorization = authorize(token)
    with atomic():
        connector = _locked_connector(station_id, start.evse_id)
        same = Transaction.objects.filter(
            station_id=station_id, connector=connector, id_tag=token, meter_start=start.meter_start
        )
        existing = (same.filter(reported_start=start.reported_start) if start.reported_start
                    else same.filter(started_at=start.started_at)).first()
        if existing is not None:
            log.info("StartTransaction re-sent by %s: returning transaction %s", station_id, existing.pk)
            problems.log(log, station_id, "StartTransaction")
            return existing.pk, authorization
        _close_superseded(connector, start)
        tx = _create_transaction(station_id, connector, token, start)
        if authorization["status"] == "Accepted":
            connector.current_transaction = tx
            connector.save(update_fields=["current_transaction"])
        data = {
            "transactionId": tx.pk,
            "stationId": station_id,
            "connectorId": start.evse_id,
            "idTag": token,
            "startTime": iso(tx.started_at),
            "meterStart": start.meter_start,
        }
        if tx.start_correlation_id:
            data["correlationId"] = tx.start_correlation_id
        emit("transaction.started", station_id, data, actor=tx.starter.event_actor)
    problems.log(log, station_id, "StartTransaction")
    return tx.pk, authorization


def _create_transaction(station_id: str, connector: Connector, id_tag: str, start: _Start) -> Transaction:
    request = _claim_remote_start(station_id, start.evse_id, id_tag, start.started_at)
    tx = Transaction.objects.create(
        station_id=station_id,
        evse_id=connector.evse_id,
        connector=connector,
        id_tag=id_tag,
        meter_start=start.meter_start,
        started_at=start.started_at,
        reported_start=start.reported_start,
        reservation_id=start.reservation_id,
        started_by=request.actor if request else "",
        started_by_name=request.actor_name if request else "",
        start_correlation_id=request.correlation_id if request else "",
    )
    # 1.6: the charger's id is the one the CSMS gives it (2.0.1 chargers choose their own).
    tx.charger_transaction_id = str(tx.pk)
    tx.save(update_fields=["charger_transaction_id"])
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
            "reason Other, as the charger started a new one", tx.station_id, start.evse_id, tx.pk,
        )
        problems = values.Problems()
        _close(tx, start.meter_start, start.started_at, "Other", problems)
        problems.log(log, tx.station_id, "StartTransaction")



def stop_transaction(
    station_id: str,
    charger_transaction_id: str | int,
    meter_stop: int,
    timestamp: str | None,
    reason: str | None = None,
    token: str | None = None,
    transaction_data: list[dict] | None = None,
) -> rules.Authorization | None:
    """Close a transaction, price it, store its samples; idempotent on re-send. Returns the
    authorization of the token that stopped it (None if the charger named none).

    A known transaction is always closed, whatever else the message carries:
    samples that cannot be taken are skipped, an implausible clock is replaced
    by the receive time and an implausible meterStop by the last plausible
    register (see ``_close``). Otherwise the charger would re-send it forever
    and the connector stay busy.

    ``charger_transaction_id`` is the charger's id for it as the charger sent it (1.6: the integer
    the CSMS gave), compared as text; an unknown one is announced as it was sent.
    """
    received = timezone.now()
    problems = values.Problems()
    authorization = authorize(token) if token else None
    with atomic():
        found = _by_charger_id(station_id, charger_transaction_id).values_list("pk", "connector__number").first()
        if found is None:
            # Answer anyway so the charger can empty its queue.
            log.warning("StopTransaction for unknown transaction %s from %s", values.excerpt(charger_transaction_id),
                        station_id)
            emit(
                "transaction.stop.unknown",
                station_id,
                {
                    "stationId": station_id,
                    "transactionId": charger_transaction_id,
                    "meterStop": meter_stop if values.fits(Transaction, "meter_stop", meter_stop) else None,
                },
            )
            return authorization
        transaction_id, number = found
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
    return authorization


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
    tx.energy_wh = rules.session_energy_wh(tx.meter_stop, tx.meter_start)
    price(tx, problems)
    tx.save()
    Connector.objects.filter(pk=tx.connector_id, current_transaction=tx).update(current_transaction=None)
    data = {
        "transactionId": tx.pk,
        "stationId": tx.station_id,
        "connectorId": tx.connector.number,
        "idTag": tx.id_tag,
        "stopTime": iso(tx.stopped_at),
        "energy": tx.energy_wh,
        "totalKWh": round(tx.energy_wh / 1000, 3),  # documented in the event (served verbatim by /api/events)
        "duration": tx.duration_seconds,
        "cost": float(tx.cost) if tx.cost is not None else None,
        "currency": tx.currency or None,
        "reason": reason,
    }
    if tx.stop_correlation_id:
        data["correlationId"] = tx.stop_correlation_id
    emit("transaction.stopped", tx.station_id, data, actor=_stopper(tx, reason) or tx.starter.event_actor)


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
    evse_id: int,
    token: str,
    *,
    correlation_id: str = "",
    actor: Actor = CHARGER,
) -> int:
    """Check a remote start can be asked for, and remember who asked (``actor``); return the request's
    id (2.0.1's remoteStartId, which the transaction it starts names).

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
    if evse_id == 0 or not Connector.objects.filter(station=station, number=evse_id).exists():
        raise NotFound(f"Unknown connector {evse_id} on station {station_id}")
    with atomic():
        # The connector's row lock orders concurrent starts (PostgreSQL): the
        # second one sees the first one's request.
        connector = _locked_connector(station_id, evse_id)
        # A 2.0.1 transaction not authorized yet (started when the cable was plugged in, no token) is
        # what a remote start authorizes (its remoteStartId then comes in an Updated): not busy.
        current = connector.current_transaction
        if (current is not None and current.id_tag) or connector.status in rules.BUSY_STATUSES:
            raise Conflict(f"Connector {evse_id} is busy ({connector.status})")
        now = timezone.now()
        pending = (
            RemoteStartRequest.objects.filter(
                station=station, transaction__isnull=True,
                created_at__gte=now - dt.timedelta(seconds=settings.OCPP_COMMAND_TIMEOUT),
            )
            .filter(Q(connector_number=evse_id) | Q(connector_number__isnull=True))
            .order_by("-created_at")
            .first()
        )
        if pending is not None:
            raise Conflict(
                f"Connector {evse_id} of station {station_id} has a remote start pending (asked "
                f"{(now - pending.created_at).total_seconds():.1f} s ago): wait for its remote.start.result"
            )
        request = RemoteStartRequest.objects.create(
            station=station,
            connector_number=evse_id,
            id_tag=token,
            correlation_id=correlation_id,
            actor=str(actor),
            actor_name=actor.name,
        )
    return request.pk


def prepare_remote_stop(
    station_id: str | None,
    transaction_id: int | None,
    evse_id: int | None,
    *,
    correlation_id: str = "",
) -> Transaction:
    """Find the active transaction to stop (by id, or by station and EVSE)."""
    query = Transaction.objects.filter(stopped_at__isnull=True)
    if transaction_id is not None:
        query = query.filter(pk=transaction_id)
        if station_id:
            query = query.filter(station_id=station_id)
    elif station_id and evse_id is not None:
        query = query.filter(station_id=station_id, connector__number=evse_id)
    else:
        raise DomainError("Give transactionId, or stationId and connectorId")
    tx = query.select_related("connector").first()
    if tx is None:
        raise NotFound("No active transaction matches")
    _online_station(tx.station_id)
    if correlation_id:
        Transaction.objects.filter(pk=tx.pk).update(stop_correlation_id=correlation_id)
    return tx


def forget_remote_start(station_id: str, token: str, correlation_id: str) -> None:
    """The charger refused or never answered: nothing will start."""
    RemoteStartRequest.objects.filter(
        station_id=station_id, id_tag=token, correlation_id=correlation_id, transaction__isnull=True
    ).delete()
