"""OCPP 2.0.1 TransactionEvent (Started, Updated, Ended) on the version-neutral transaction: one call per
message, idempotent on retries and replays, and the transactions a reboot left open.

A 2.0.1 charger names its transactions itself (``Transaction.charger_transaction_id``); the CSMS's integer
id stays the mobile API's ``transactionId``. Every event is kept (``TransactionEvent``, unique on the
transaction and seqNo): one seen before is answered again and applied no second time. The first event
seen of a transaction creates it, whatever its type (a Started lost, or an Updated/Ended the charger
queued while offline); an event after its end never reopens it.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
from decimal import Decimal
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.db.models import Subquery
from django.utils import timezone

from csms.events import atomic, emit
from stations import rules, values
from stations.errors import InvalidValue
from stations.models import Connector, ConnectorStatus, MeterSample, RemoteStartRequest, Transaction, TransactionEvent
from stations.services._common import _arguments, _by_charger_id, _charger_time, _locked_connector, iso, log
from stations.services.authorization import authorize
from stations.services.metering import _announce_meter, _insert_new, _newest_sample, _readings, _Session, _Stored
from stations.services.tariffs import price
from stations.services.transactions import _close, _stop_register

# 2.0.1 stoppedReason -> the mobile API's (and Transaction.stop_reason's) reason, which is 1.6's
# StopTransaction reason where 1.6 has one for the same thing; the others are kept as 2.0.1 names them.
# (TransactionEvent.stopped_reason keeps the charger's own word.)
STOP_REASONS = {"ImmediateReset": "HardReset"}

# chargingState -> the connector's status (2.0.1 StatusNotification only says Occupied).
CONNECTOR_STATES = {
    "Charging": ConnectorStatus.CHARGING,
    "SuspendedEV": ConnectorStatus.SUSPENDED_EV,
    "SuspendedEVSE": ConnectorStatus.SUSPENDED_EVSE,
    "EVConnected": ConnectorStatus.OCCUPIED,
    "Idle": ConnectorStatus.OCCUPIED,
}

# bootReason -> the reason a transaction the reboot left open is closed with (see close_after_reboot).
REBOOT_REASONS = {"PowerUp": "PowerLoss", "RemoteReset": "HardReset"}

ENERGY = "Energy.Active.Import.Register"


class TxEventResult(NamedTuple):
    """What a TransactionEventResponse carries: the token's authorization (None: the event named no
    token) and, once the transaction is closed and priced, its cost."""

    authorization: rules.Authorization | None
    total_cost: Decimal | None


def stop_reason(stopped_reason: str | None) -> str:
    """The mobile API's reason of a 2.0.1 stoppedReason (left out: Local, as the specification says)."""
    if not stopped_reason:
        return "Local"
    return STOP_REASONS.get(stopped_reason, stopped_reason)


def transaction_event(
    station_id: str,
    event_type: str,
    timestamp: str,
    trigger_reason: str,
    seq_no: int,
    info: dict[str, Any],
    evse_id: int | None,
    connector_id: int | None,
    token: str | None,
    token_type: str | None,
    meter_value: list[dict],
    offline: bool = False,
    phases: int | None = None,
    reservation_id: int | None = None,
) -> TxEventResult:
    """Apply one TransactionEvent (``info``: transactionInfo, snake case; ``meter_value`` in 1.6's shape,
    stations/ocpp/v201/metering.py). Values the domain cannot take refuse it (InvalidValue) before any write.

    An Updated that may be the hot case (see ``_transaction_event_many``) tries that path first."""
    args = (station_id, event_type, timestamp, trigger_reason, seq_no, info, evse_id, connector_id, token,
            token_type, meter_value, offline, phases, reservation_id)
    if _maybe_hot(args):
        with atomic():  # as the other path: its locks need a transaction (a group commit's already is one)
            outcomes = _transaction_event_many([(args, {})])
        if outcomes is not None:
            [(ok, outcome)] = outcomes
            if not ok:
                raise outcome
            return cast(TxEventResult, outcome)
    return _transaction_event_one(*args)


def _maybe_hot(args: tuple) -> bool:
    """An Updated with one reading, no token, nothing in transactionInfo but the id, chargingState and
    timeSpentCharging (not kept); evse is optional (only the first event must carry it)."""
    event_type, info, token, meter_value = args[1], args[5], args[8], args[10]
    return (event_type == "Updated" and token is None and len(meter_value) == 1
            and not info.keys() - _HOT_INFO)


def _transaction_event_one(
    station_id: str, event_type: str, timestamp: str, trigger_reason: str, seq_no: int, info: dict[str, Any],
    evse_id: int | None, connector_id: int | None, token: str | None, token_type: str | None,
    meter_value: list[dict], offline: bool, phases: int | None, reservation_id: int | None,
) -> TxEventResult:
    """``transaction_event`` of any event."""
    received = timezone.now()
    problems = values.Problems()
    at = _charger_time(timestamp, received, problems, strict=True)
    seq_no = values.column_int(TransactionEvent, "seq_no", seq_no, "seqNo")
    if evse_id is not None:
        evse_id = values.column_int(Connector, "number", evse_id, "evse.id")
    if phases is not None and not values.fits(TransactionEvent, "number_of_phases_used", phases):
        problems.add(f"numberOfPhasesUsed {values.excerpt(phases)} is out of range; dropped")
        phases = None
    charger_id = info["transaction_id"]
    # "" is a token too (type NoAuthorization): answered Accepted, without a query.
    authorization = authorize(token, token_type) if token is not None else None
    stored: tuple[str, dt.datetime] | None = None  # the event stored before under this seqNo
    with atomic():
        found = _by_charger_id(station_id, charger_id).values_list("pk", "connector__number").first()
        if found is None:
            number = evse_id or 1
            if not evse_id:
                problems.add(f"{event_type} of unknown transaction {values.excerpt(charger_id)} names no EVSE; "
                             "EVSE 1 is assumed")
            connector = _locked_connector(station_id, number)
            # Another process may have opened it while this one waited for the lock.
            found = _by_charger_id(station_id, charger_id).values_list("pk", "connector__number").first()
        if found is None:
            tx = _open(station_id, connector, charger_id, token, at, meter_value, info, reservation_id, problems)
            replay = False
        else:
            tx_pk, number = found
            _locked_connector(station_id, number)  # before the transaction's row, in the order starts lock them
            tx = (Transaction.objects.select_for_update(of=("self",))
                  .select_related("station", "connector", "station__tariff").get(pk=tx_pk))
            # seqNo counts up per transaction: one above the highest seen is new without asking. One seen
            # before is a replay only if it is the same event (type and time): a charger whose counter
            # restarted (a firmware reset) reuses seqNos for new events, which are applied, not stored.
            if tx.last_seq_no is not None and seq_no <= tx.last_seq_no:
                stored = (TransactionEvent.objects.filter(transaction=tx, seq_no=seq_no)
                          .values_list("event_type", "timestamp").first())
            replay = stored is not None and stored == (event_type, at)
            if stored is not None and not replay:
                log.warning("TransactionEvent %s seqNo %s of transaction %s from %s reuses the seqNo of another "
                            "event (%s at %s): applied, not stored", event_type, seq_no, tx.pk, station_id,
                            *stored)
        if replay:
            log.info("TransactionEvent %s seqNo %s of transaction %s re-sent by %s: answered, not applied again",
                     event_type, seq_no, tx.pk, station_id)
            return TxEventResult(authorization, tx.cost if tx.stopped_at is not None else None)
        _apply(tx, number, event_type, at, trigger_reason, seq_no, info, token, meter_value, offline, phases,
               received, problems, store=stored is None)
    problems.log(log, station_id, "TransactionEvent")
    return TxEventResult(authorization, tx.cost if tx.stopped_at is not None else None)


def _apply(
    tx: Transaction, number: int, event_type: str, at: dt.datetime, trigger_reason: str, seq_no: int,
    info: dict[str, Any], token: str | None, meter_value: list[dict], offline: bool, phases: int | None,
    received: dt.datetime, problems: values.Problems, store: bool = True,
) -> None:
    station_id = tx.station_id
    charging_state = info.get("charging_state") or ""
    stopped_reason = info.get("stopped_reason") or ""
    if store:
        TransactionEvent.objects.create(
            transaction=tx, seq_no=seq_no, event_type=event_type, trigger_reason=trigger_reason[:32], timestamp=at,
            offline=bool(offline), number_of_phases_used=phases, charging_state=charging_state[:16],
            stopped_reason=stopped_reason[:32],
        )
    latest = tx.last_seq_no is None or seq_no > tx.last_seq_no  # a late one is kept, but changes no state
    changed: list[str] = []
    if latest:
        tx.last_seq_no = seq_no
        changed.append("last_seq_no")
        if charging_state and tx.stopped_at is None:
            tx.charging_state = charging_state[:16]
            changed.append("charging_state")
    started = _corrected_start(tx, event_type, at, meter_value, changed)
    if tx.meter_start == 0 and tx.stopped_at is None and (register := _first_register(meter_value)) is not None \
            and not MeterSample.objects.filter(transaction=tx, energy_wh__isnull=False).exists():
        # Its start carried no register: the first one seen is where it began (see _open).
        tx.meter_start = register
        changed.append("meter_start")
    if started and tx.stopped_at is not None:
        # Closed already (its Ended came first): energy, duration and cost from the start it really had,
        # silently, as a late Ended corrects one (_end): transaction.stopped was announced once.
        tx.meter_stop = _stop_register(tx, tx.meter_stop, (tx.stopped_at - tx.started_at).total_seconds(), problems)
        tx.energy_wh = rules.session_energy_wh(tx.meter_stop, tx.meter_start)
        price(tx, problems)
        changed.extend(["meter_stop", "energy_wh", "cost", "currency", "tariff"])
    if token and tx.stopped_at is None and token != tx.id_tag:
        _authorized(tx, token, info, changed)
    elif info.get("remote_start_id") is not None and not tx.started_by and tx.stopped_at is None:
        _claim(tx, tx.id_tag, info, changed)
    if changed:
        tx.save(update_fields=changed)
    if meter_value:
        readings = _readings(station_id, number, tx, meter_value, received, problems)
        added, before = _insert_new(station_id, number, readings)
        if added and event_type != "Ended":
            session = _Session(tx.pk, tx.meter_start, tx.started_at, tx.charger_transaction_id)
            _announce_meter(station_id, number, session, max(added, key=lambda row: row.timestamp), before)
    if latest and charging_state in CONNECTOR_STATES and tx.stopped_at is None and event_type != "Ended":
        _show_state(tx, number, CONNECTOR_STATES[charging_state], at)
    if event_type == "Ended":
        _end(tx, number, seq_no, meter_value, at, stopped_reason, problems)


def _corrected_start(tx: Transaction, event_type: str, at: dt.datetime, meter_value: list[dict],
                     changed: list[str]) -> bool:
    """An event that arrives after a later one of its transaction (the charger's offline queue): one
    earlier than the start moves it back, and a Started's register is where it began. True: changed."""
    before = len(changed)
    if at < tx.started_at:
        tx.started_at = at
        changed.append("started_at")
    if event_type == "Started" and (register := _first_register(meter_value)) is not None \
            and register != tx.meter_start:
        tx.meter_start = register
        changed.append("meter_start")
    return len(changed) > before


def _first_register(meter_value: list[dict]) -> int | None:
    """The energy register (Wh, whole) of the first reading that has one: rounded down, so that the
    session's next reading of a fractional register (1979556.6, then 1979556.9) is never below it."""
    for reading in meter_value:
        summary = rules.summarize_sampled_values(reading.get("sampled_value") or [])
        register = summary.get("energy_wh")
        if register is not None and 0 <= register < math.inf:
            return math.floor(register)
    return None


def _last_register(meter_value: list[dict]) -> int | None:
    for reading in reversed(meter_value):
        register = rules.summarize_sampled_values(reading.get("sampled_value") or []).get("energy_wh")
        if register is not None:
            return round(register)
    return None


def _reading_times(meter_value: list[dict]) -> list[dt.datetime]:
    received = timezone.now()
    times = (values.charger_time(reading.get("timestamp"), received).value for reading in meter_value
             if reading.get("timestamp"))
    return [moment for moment in times if moment is not None]


def _open(
    station_id: str, connector: Connector, charger_id: str, token: str | None, at: dt.datetime,
    meter_value: list[dict], info: dict[str, Any], reservation_id: int | None, problems: values.Problems,
) -> Transaction:
    """The transaction of a charger id first seen. Its meterStart is the register of the event's first
    reading with one; with none, the first register a later event brings (until then 0).

    A transaction still active on the connector is closed first (reason Other), as a 1.6 start does:
    one transaction per EVSE, and it is the new one the charger will end.
    """
    stale = (Transaction.objects.select_for_update(of=("self",))
             .select_related("station", "connector", "station__tariff")
             .filter(connector=connector, stopped_at__isnull=True))
    for old in stale:
        log.warning("[OCPP:TransactionEvent] station=%s evse=%s: transaction %s was still active; closed with "
                    "reason Other, as the charger started %s", station_id, connector.number, old.pk, charger_id)
        if not old.id_tag:
            _announce_start(old)  # one that never had a token: announced before its end, as _end does
        _close(old, None, at, "Other", problems)
    register = _first_register(meter_value)
    at = min([at, *_reading_times(meter_value)])  # an Ended sent first: it began at its first reading
    if reservation_id is not None and not values.fits(Transaction, "reservation_id", reservation_id):
        problems.add(f"reservationId {values.excerpt(reservation_id)} is out of range; dropped")
        reservation_id = None
    tx = Transaction.objects.create(
        station_id=station_id, evse_id=connector.evse_id, connector=connector, charger_transaction_id=charger_id,
        id_tag="", meter_start=register if register is not None else 0, started_at=at,
        reservation_id=reservation_id,
    )
    connector.current_transaction = tx
    connector.save(update_fields=["current_transaction"])
    changed: list[str] = []
    if token:
        _authorized(tx, token, info, changed)
    elif info.get("remote_start_id") is not None:
        _claim(tx, "", info, changed)
    if changed:
        tx.save(update_fields=changed)
    return tx


def _authorized(tx: Transaction, token: str, info: dict[str, Any], changed: list[str]) -> None:
    """A token on the transaction: the first one announces it started (transaction.started, with
    whoever asked for it remotely); a later one (another of the group stopping it) changes nothing."""
    if tx.id_tag:
        return
    tx.id_tag = token
    changed.append("id_tag")
    _claim(tx, token, info, changed)
    _announce_start(tx)


def _claim(tx: Transaction, token: str, info: dict[str, Any], changed: list[str]) -> None:
    """The RemoteStartRequest this transaction answers: the one remoteStartId names (its pk), else, as
    for 1.6, the newest unclaimed one of this token and EVSE."""
    if tx.started_by or tx.start_correlation_id:
        return
    request = None
    remote_start_id = info.get("remote_start_id")
    if remote_start_id is not None and values.fits(RemoteStartRequest, "id", remote_start_id):
        request = RemoteStartRequest.objects.filter(
            pk=remote_start_id, station_id=tx.station_id, transaction__isnull=True).first()
    if request is None and token:
        window = dt.timedelta(seconds=settings.OCPP_REMOTE_START_WINDOW)
        for candidate in RemoteStartRequest.objects.filter(
            station_id=tx.station_id, id_tag=token, transaction__isnull=True,
            created_at__gte=timezone.now() - window,
        ).order_by("-created_at"):
            if candidate.connector_number in (None, tx.connector.number):
                request = candidate
                break
    if request is None:
        return
    tx.started_by, tx.started_by_name, tx.start_correlation_id = request.actor, request.actor_name, request.correlation_id
    changed.extend(["started_by", "started_by_name", "start_correlation_id"])
    request.transaction = tx
    request.save(update_fields=["transaction"])
    if not tx.id_tag and request.id_tag:
        tx.id_tag = request.id_tag
        changed.append("id_tag")
        _announce_start(tx)


def _announce_start(tx: Transaction) -> None:
    data: dict[str, Any] = {
        "transactionId": tx.pk,
        "stationId": tx.station_id,
        "connectorId": tx.connector.number,
        "idTag": tx.id_tag,
        "startTime": iso(tx.started_at),
        "meterStart": tx.meter_start,
    }
    if tx.start_correlation_id:
        data["correlationId"] = tx.start_correlation_id
    emit("transaction.started", tx.station_id, data, actor=tx.starter.event_actor)


def _show_state(tx: Transaction, number: int, status: str, at: dt.datetime) -> None:
    """The connector shows the transaction's chargingState (announced when it changes)."""
    connector = tx.connector
    if connector.status == status:
        return
    Connector.objects.filter(pk=connector.pk).update(status=status, updated_at=at)
    connector.status = status
    emit("connector.status.changed", tx.station_id, {
        "stationId": tx.station_id, "connectorId": number, "status": status, "errorCode": None,
        "transactionId": tx.pk, "timestamp": iso(at),
    })


def _end(tx: Transaction, number: int, seq_no: int, meter_value: list[dict], at: dt.datetime, stopped_reason: str,
         problems: values.Problems) -> None:
    """Close the transaction at the Ended's time and last register (none: ``_close`` takes the newest
    plausible sample's), priced as 1.6's are. One the CSMS closed itself, without the charger's Ended (a
    reboot, or a newer start on its EVSE), takes the Ended's values now, silently: transaction.stopped
    was announced once, when it was closed."""
    reason = stop_reason(stopped_reason)
    register = _last_register(meter_value)
    if tx.stopped_at is None:
        if not tx.id_tag:
            _announce_start(tx)  # one that never had a token: announced before its end, as every session is
        _close(tx, register, at, reason, problems)
        if tx.connector.status in rules.CHARGING_STATUSES:  # its chargingState ends with it
            _show_state(tx, number, ConnectorStatus.OCCUPIED, at)
        return
    if TransactionEvent.objects.filter(transaction=tx, event_type="Ended").exclude(seq_no=seq_no).exists():
        log.info("TransactionEvent Ended for transaction %s of %s, which had ended already: stored, not applied",
                 tx.pk, tx.station_id)
        return
    tx.stopped_at = max(at, tx.started_at)
    tx.meter_stop = _stop_register(tx, register, (tx.stopped_at - tx.started_at).total_seconds(), problems)
    tx.stop_reason = reason
    tx.energy_wh = rules.session_energy_wh(tx.meter_stop, tx.meter_start)
    price(tx, problems)
    tx.save(update_fields=["stopped_at", "meter_stop", "stop_reason", "energy_wh", "cost", "currency", "tariff"])
    log.info("TransactionEvent Ended for transaction %s of %s, closed by the CSMS before: its stop, energy and "
             "cost are the charger's now (%s Wh, reason %s)", tx.pk, tx.station_id, tx.energy_wh, reason)


def close_after_reboot(station_id: str, boot_reason: str) -> int:
    """Close the transactions a 2.0.1 station's reboot left open; return how many.

    A 2.0.1 station does not carry a transaction across a reboot: it ends each one (E, stoppedReason
    PowerLoss or Reboot, or ImmediateReset after a Reset) and sends the Ended from its queue once booted;
    one that never does would hold its EVSE forever. So at a boot in a new connection (not one Triggered
    by TriggerMessage, nor a Pending station's repeated boot) every transaction still active is closed:
    at its newest sample's time and register (none: its start), reason PowerLoss (bootReason PowerUp),
    HardReset (RemoteReset) or Reboot (the others), priced, announced (transaction.stopped). The
    charger's Ended, when it comes, is stored and gives its own stop values (``_end``), announced no
    second time.
    """
    closed = 0
    with atomic():
        closed = _close_open(station_id, boot_reason)
    return closed


def _close_open(station_id: str, boot_reason: str) -> int:
    closed = 0
    active = list(Transaction.objects.filter(station_id=station_id, stopped_at__isnull=True)
                  .values_list("pk", "connector__number"))
    reason = REBOOT_REASONS.get(boot_reason, "Reboot")
    for pk, number in active:
        _locked_connector(station_id, number)
        tx = (Transaction.objects.select_for_update(of=("self",))
              .select_related("station", "connector", "station__tariff").get(pk=pk))
        if tx.stopped_at is not None:
            continue
        newest = (MeterSample.objects.filter(transaction=tx).order_by("-timestamp")
                  .values_list("timestamp", "energy_wh").first())
        problems = values.Problems()
        at = newest[0] if newest else tx.started_at
        register = round(newest[1]) if newest and newest[1] is not None else None
        log.warning("[OCPP:BootNotification] station=%s rebooted (%s) with transaction %s open: closed with "
                    "reason %s", station_id, boot_reason, tx.pk, reason)
        if not tx.id_tag:
            _announce_start(tx)  # one that never had a token: announced before its end, as _end does
        _close(tx, register, at, reason, problems)
        problems.log(log, station_id, "BootNotification")
        closed += 1
    return closed


# --- Many stations' TransactionEvent Updated in one group commit (the hot path) -----------------------

_TRANSACTION_EVENT = inspect.signature(transaction_event)
_HOT_INFO = {"transaction_id", "charging_state", "time_spent_charging"}
_HOT_FIELDS = ("id", "meter_start", "started_at", "charger_transaction_id", "last_seq_no", "charging_state")


def _transaction_event_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``transaction_event`` for the TransactionEvents of many stations in one group commit
    (csms/groupcommit.py), as ``record_meter_values.many`` does for MeterValues: what a charger sends
    every interval (an Updated of its EVSE's current transaction with one new reading, no token, no new
    chargingState) costs one query locking every connector with its transaction and newest sample, and
    one INSERT each of the events, the readings and the seqNos for the whole batch. Any other event
    takes the one-message path in the same transaction. None: run them one by one (two for one station).
    """
    received = timezone.now()
    outcomes: list[tuple[bool, Any]] = [(True, TxEventResult(None, None))] * len(calls)
    items: list[tuple[int, tuple[str, int | None, dt.datetime, int, values.Problems] | None, tuple]] = []
    for index, (args, kwargs) in enumerate(calls):
        bound = _arguments(_TRANSACTION_EVENT, args, kwargs)
        station_id, timestamp, seq_no, evse_id, phases = bound[0], bound[2], bound[4], bound[6], bound[12]
        if not _maybe_hot(bound):
            items.append((index, None, bound))
            continue
        try:
            problems = values.Problems()
            at = _charger_time(timestamp, received, problems, strict=True)
            seq_no = values.column_int(TransactionEvent, "seq_no", seq_no, "seqNo")
            evse_number = values.column_int(Connector, "number", evse_id, "evse.id") if evse_id is not None else None
        except InvalidValue as error:
            outcomes[index] = (False, error)
            continue
        if phases is not None and not values.fits(TransactionEvent, "number_of_phases_used", phases):
            items.append((index, None, bound))  # the one-message path says what it drops
            continue
        items.append((index, (station_id, evse_number, at, seq_no, problems), bound))
    if len({bound[0] for _, _, bound in items}) < len(items):
        return None
    hot = {(item[0], item[1]) for _, item, _ in items if item is not None}
    # No evse (only the first event must name it): the connector whose current transaction it is.
    unnamed = {item[0]: bound[5]["transaction_id"] for _, item, bound in items if item is not None and item[1] is None}
    locked = _lock_many_for_events(hot, unnamed) if hot else {}
    events: list[TransactionEvent] = []
    samples: list[MeterSample] = []
    seq_nos: list[Transaction] = []
    announcements: list[tuple[str, int, _Session, MeterSample, _Stored | None, values.Problems]] = []
    for index, item, bound in items:
        row = locked.get((item[0], item[1])) if item is not None else None
        reading = None
        if item is not None and row is not None:
            station_id, _, at, seq_no, problems = item
            _, _, charger_id, last_seq_no, charging_state, newest, number = row
            info, meter_value = bound[5], bound[10]
            session = _Session(*row[0][:4]) if row[0] is not None else None
            readings = _readings(station_id, number, session, meter_value, received, problems) \
                if session is not None and session.charger_transaction_id == info["transaction_id"] else {}
            if (session is not None and session.meter_start != 0 and len(readings) == 1
                    and (last_seq_no is None or seq_no > last_seq_no)
                    and info.get("charging_state", charging_state) == charging_state
                    and (newest is None or newest.timestamp < next(iter(readings)))):
                [reading] = readings.values()
        if reading is None:  # not the hot case: the whole service, in this transaction
            try:
                outcomes[index] = (True, _transaction_event_one(*bound))
            except InvalidValue as error:  # refused before it wrote anything
                outcomes[index] = (False, error)
            continue
        assert session is not None and item is not None
        events.append(TransactionEvent(
            transaction_id=session.pk, seq_no=seq_no, event_type="Updated", trigger_reason=bound[3][:32],
            timestamp=at, offline=bool(bound[11]), number_of_phases_used=bound[12],
            charging_state=(bound[5].get("charging_state") or "")[:16],
        ))
        seq_nos.append(Transaction(pk=session.pk, last_seq_no=seq_no))
        samples.append(reading)
        announcements.append((station_id, number, session, reading, newest, problems))
    if events:
        TransactionEvent.objects.bulk_create(events)
        Transaction.objects.bulk_update(seq_nos, ["last_seq_no"])
        MeterSample.objects.bulk_create(samples, ignore_conflicts=True)
    for station_id, number, session, reading, newest, problems in announcements:
        _announce_meter(station_id, number, session, reading, newest)
        problems.log(log, station_id, "TransactionEvent")
    return outcomes


transaction_event.many = _transaction_event_many  # type: ignore[attr-defined]  # csms/groupcommit.py


def _lock_many_for_events(
    keys: set[tuple[str, int | None]], unnamed: dict[str, str]
) -> dict[tuple[str, int | None], tuple[Any, ...]]:
    """The connectors of ``keys`` locked (one query, in id order), each with its current transaction's
    fields (``_HOT_FIELDS``; None without one), its newest stored sample and its number. A key without a
    number (station_id, None) is the station's connector whose current transaction ``unnamed`` names."""
    newest = _newest_sample()
    rows = (
        Connector.objects.select_for_update(of=("self",))
        .filter(station_id__in={station_id for station_id, _ in keys})
        .order_by("id")
        .annotate(newest_at=Subquery(newest.values("timestamp")[:1]),
                  newest_tx=Subquery(newest.values("transaction_id")[:1]),
                  newest_wh=Subquery(newest.values("energy_wh")[:1]))
        .values_list("station_id", "number", *(f"current_transaction__{name}" for name in _HOT_FIELDS),
                     "newest_at", "newest_tx", "newest_wh")
    )
    locked: dict[tuple[str, int | None], tuple[Any, ...]] = {}
    for station_id, number, *fields, newest_at, newest_tx, newest_wh in rows:
        key: tuple[str, int | None] = (station_id, number)
        if key not in keys:
            if station_id not in unnamed or fields[3] is None or fields[3] != unnamed[station_id]:
                continue
            key = (station_id, None)
        session = tuple(fields[:4]) if fields[0] is not None else None
        stored = _Stored(newest_at, newest_tx, newest_wh) if newest_at is not None else None
        locked[key] = (session, None, fields[3], fields[4], fields[5] or "", stored, number)
    return locked
