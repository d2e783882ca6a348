"""What several service families share: the time format of the documents, the ``many``
forms' argument binding, a transaction by the charger's id, the connector lock and the charger's clock."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Iterable
from functools import partial

from django.db.models import QuerySet

from stations import values
from stations.errors import InvalidValue
from stations.models import Connector, Evse, Transaction

log = logging.getLogger("stations.services")


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and Z, as the mobile documents show."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")



def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple:
    """A call's arguments in the order of ``signature`` (the ``many`` forms below). Handlers pass
    them all by position, so binding (a few µs per message) is only for the other calls."""
    if not kwargs and len(args) == len(signature.parameters):
        return args
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.args


def _connector(station_id: str, number: int, connector_id: int = 1) -> Connector:
    """Connector ``connector_id`` of EVSE ``number`` (a 1.6 connector: 1), made with its EVSE on first sight."""
    defaults = {"evse": partial(_evse, station_id, number)} if number else {}  # 0: the station, no EVSE
    connector, _ = Connector.objects.get_or_create(station_id=station_id, number=number,
                                                   connector_id=connector_id if number else 1, defaults=defaults)
    return connector


def _evse(station_id: str, number: int) -> Evse:
    evse, _ = Evse.objects.get_or_create(station_id=station_id, number=number)
    return evse


def _create_connectors(keys: Iterable[tuple[str, int]]) -> None:
    """Connectors seen for the first time, as ``_connector`` makes them, for a whole batch in three
    queries: ``get_or_create`` of a connector and its EVSE is four round trips and two savepoints
    each (measured: a storm of new chargers' first MeterValues on PostgreSQL booted 4,100-5,100 of
    10,000 with it, against 6,400-9,200 before there were EVSEs). One another writer made
    meanwhile is kept (ON CONFLICT DO NOTHING)."""
    wanted = sorted(set(keys))
    numbered = [(station_id, number) for station_id, number in wanted if number]  # 0: the station, no EVSE
    evses: dict[tuple[str, int], int] = {}
    if numbered:
        Evse.objects.bulk_create([Evse(station_id=station_id, number=number) for station_id, number in numbered],
                                 ignore_conflicts=True)
        evses = {(station_id, number): pk for pk, station_id, number in Evse.objects.filter(
            station_id__in={station_id for station_id, _ in numbered}, number__in={number for _, number in numbered}
        ).values_list("pk", "station_id", "number")}
    Connector.objects.bulk_create(
        [Connector(station_id=station_id, number=number, connector_id=1, evse_id=evses.get((station_id, number)))
         for station_id, number in wanted], ignore_conflicts=True)


def _by_charger_id(station_id: str, charger_transaction_id: str | int) -> QuerySet[Transaction]:
    """A station's transaction by the charger's id: one lookup in the unique index on (station, charger id).

    The index is partial (rows with an id): the query repeats its condition so that SQLite, which
    uses a partial index only for a query that states its WHERE, uses it as PostgreSQL does.
    """
    return Transaction.objects.filter(
        station_id=station_id, charger_transaction_id=str(charger_transaction_id)
    ).exclude(charger_transaction_id="")


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
