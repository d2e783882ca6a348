"""Meter values: store a charger's readings (plausible ones only) and announce the newest."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any, NamedTuple

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from csms.events import atomic, emit
from stations import rules, values
from stations.errors import InvalidValue
from stations.models import Connector, MeterSample, Transaction
from stations.services._common import _arguments, _by_charger_id, _connector, _create_connectors, iso, log


def record_meter_values(
    station_id: str, evse_id: int, charger_transaction_id: str | int | None, meter_value: list[dict]
) -> None:
    """Store a MeterValues message; announce the newest reading it added (none if it added none).

    ``charger_transaction_id``: the charger's id of the transaction the readings belong to, as it sent
    it (see ``stop_transaction``); None: the connector's current one."""
    received = timezone.now()
    problems = values.Problems()
    evse_id = values.column_int(Connector, "number", evse_id, "connectorId")
    with atomic():
        connector_pk, current = _lock_for_readings(station_id, evse_id)
        tx = _transaction_of(station_id, connector_pk, evse_id, current, charger_transaction_id, problems)
        readings = _readings(station_id, evse_id, tx, meter_value, received, problems)
        added, before = _insert_new(station_id, evse_id, readings)
        if added:
            _announce_meter(station_id, evse_id, tx, max(added, key=lambda row: row.timestamp), before)
    problems.log(log, station_id, "MeterValues")


_RECORD_METER_VALUES = inspect.signature(record_meter_values)


def _record_meter_values_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``record_meter_values`` for the MeterValues of many stations in one group commit
    (csms/groupcommit.py): what it does for each, with one query locking every connector
    and reading its newest stored sample, and one INSERT of every new reading.

    A message the domain refuses before anything is written gets its error; a message
    that is not the hot case (several readings, a reading older than the newest stored
    one) takes the one-message path in the same transaction; connectors seen for the
    first time are made together first. None: run the calls one by one (two of them
    for one connector).
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
    keys = {(item[0], item[1]) for item in items}
    locked = _lock_many_for_readings(keys)
    if missing := keys - locked.keys():  # connectors seen for the first time: made together, then locked
        _create_connectors(missing)
        locked.update(_lock_many_for_readings(missing))
    announcements = []
    new_rows: list[MeterSample] = []
    for station_id, number, transaction_id, meter_value, problems in items:
        if (station_id, number) in locked:
            connector_pk, current, newest = locked[(station_id, number)]
        else:  # a connector seen for the first time
            (connector_pk, current), newest = _lock_for_readings(station_id, number), _NOT_READ
        tx = _transaction_of(station_id, connector_pk, number, current, transaction_id, problems)
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


record_meter_values.many = _record_meter_values_many  # type: ignore[attr-defined]  # csms/groupcommit.py
_NOT_READ = object()  # a connector's newest sample was not read with its lock


def _newest_sample() -> QuerySet[MeterSample]:
    """The newest stored sample of the outer query's connector (for a Subquery annotation)."""
    return MeterSample.objects.filter(
        station_id=OuterRef("station_id"), connector_number=OuterRef("number")
    ).order_by("-timestamp")


def _lock_many_for_readings(keys: set[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, Any, Any]]:
    """``_lock_for_readings`` for many connectors in one query, with each one's newest stored sample."""
    newest = _newest_sample()
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
    for station_id, number, pk, tx_pk, meter_start, started_at, charger_id, newest_at, newest_tx, newest_wh in rows:
        if (station_id, number) not in keys:
            continue
        session = _Session(tx_pk, meter_start, started_at, charger_id) if tx_pk is not None else None
        stored = _Stored(newest_at, newest_tx, newest_wh) if newest_at is not None else None
        locked[(station_id, number)] = (pk, session, stored)
    return locked


class _Session(NamedTuple):
    """What meter readings need of their transaction (a Transaction has the same attributes)."""

    pk: int
    meter_start: int
    started_at: dt.datetime
    charger_transaction_id: str


_SESSION_FIELDS = ("id", "meter_start", "started_at", "charger_transaction_id")


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
        row = query.get()
    return row[0], (_Session(*row[1:]) if row[1] is not None else None)


def _transaction_of(
    station_id: str, connector_pk: int, number: int, current: _Session | None,
    charger_transaction_id: str | int | None, problems: values.Problems,
) -> _Session | None:
    """The transaction MeterValues samples belong to: the one named (by the charger's id), if it
    is this connector's; with none named, the connector's current one. Never another's."""
    if charger_transaction_id is None or (
        current is not None and current.charger_transaction_id == str(charger_transaction_id)
    ):
        return current
    # Another of this connector's, e.g. one just stopped.
    row = (_by_charger_id(station_id, charger_transaction_id).filter(connector_id=connector_pk)
           .values_list(*_SESSION_FIELDS).first())
    if row is None:
        problems.add(f"transaction {values.excerpt(charger_transaction_id)} is no transaction of connector "
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
    previous: float | None
    if before is not None and before.transaction_id == (tx.pk if tx else None) and before.energy_wh is not None:
        previous = before.energy_wh  # the one the query below would find
    else:
        previous = (
            MeterSample.objects.filter(
                station_id=station_id, connector_number=connector_id,
                transaction_id=tx.pk if tx else None,  # type: ignore[misc]  # None: IS NULL, the readings of no session
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
    # 15500 Wh at the end), not the meter's lifetime register (outside a session: the register).
    energy = rules.session_energy_wh(register, tx.meter_start) if register is not None and tx else values.wh(register)
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
            # delta, total and unit: the event's documented fields for the Dart guide's meter.values.delta,
            # kept in the row because /api/events serves it verbatim (mobileapi/renderers.py picks per dialect).
            "delta": values.wh(max(register - baseline, 0)) if register is not None and baseline is not None else None,
            "total": energy,
            "unit": "Wh",
            "register": values.wh(register),
        },
    )
