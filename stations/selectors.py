"""The read side: queries for the admin, the mobile API and the HTTP API (the write path is services).

They express the domain's derived values (station status, a session's energy) as
querysets, so a page or listing reads them in one query however many rows it
shows; each is checked against the pure rule it mirrors (``rules.station_status``,
``rules.session_energy_wh``) in the tests.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, TypedDict

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from stations import rules
from stations.models import Connector, MeterSample, Station, Transaction

if TYPE_CHECKING:  # django-stubs-ext is a development requirement (mypy), not a runtime one
    from django_stubs_ext import WithAnnotations

STATION_STATUSES = ("Offline", "Charging", "Available", "PartiallyAvailable", "Unavailable")


class ConnectorCounts(TypedDict):
    n_connectors: int
    n_available: int
    n_charging: int


class LatestRegister(TypedDict):
    register: float | None


def with_connector_counts(stations: QuerySet[Station]) -> QuerySet[WithAnnotations[Station, ConnectorCounts]]:
    real = Q(connectors__number__gt=0)
    return stations.annotate(
        n_connectors=Count("connectors", filter=real),
        n_available=Count("connectors", filter=real & Q(connectors__status="Available")),
        n_charging=Count("connectors", filter=real & Q(connectors__status__in=rules.CHARGING_STATUSES)),
    )


def filter_station_status(stations: QuerySet[Station], status: str) -> QuerySet[Station]:
    """Stations whose derived status (``rules.station_status``) is ``status``."""
    if status == "Offline":
        return stations.filter(is_online=False)
    online = with_connector_counts(stations.filter(is_online=True))
    if status == "Charging":
        return online.filter(n_charging__gt=0)
    idle = online.filter(n_charging=0)
    if status == "Available":
        return idle.filter(n_connectors__gt=0, n_available=F("n_connectors"))
    if status == "PartiallyAvailable":
        return idle.filter(n_available__gt=0, n_available__lt=F("n_connectors"))
    if status == "Unavailable":
        return idle.filter(n_available=0)
    return stations.none()


def latest_reading(field: str, transaction: str = "pk") -> Subquery:
    """The newest ``field`` (``energy_wh``, ``power_w``, ...) sampled in the transaction in ``OuterRef(transaction)``.

    The newest sample that has the field, not the newest sample: a MeterValues
    with only power or SoC does not make a session's energy 0. None: none yet.
    """
    return Subquery(
        MeterSample.objects.filter(transaction=OuterRef(transaction), **{f"{field}__isnull": False})
        .order_by("-timestamp")
        .values(field)[:1]
    )


def latest_register(transaction: str = "pk") -> Subquery:
    """The newest energy register reading (Wh) of the transaction in ``OuterRef(transaction)``."""
    return latest_reading("energy_wh", transaction)


def with_latest_register(
    transactions: QuerySet[Transaction],
) -> QuerySet[WithAnnotations[Transaction, LatestRegister]]:
    """Transactions annotated with ``register``, for ``session_energy_wh`` (one query for the lot)."""
    return transactions.annotate(register=latest_register())


def session_energy_wh(tx: Transaction) -> int:
    """A session's energy: final once stopped, else from its ``register`` (``with_latest_register``)."""
    if tx.energy_wh is not None:
        return tx.energy_wh
    return rules.session_energy_wh(getattr(tx, "register"), tx.meter_start)  # an AttributeError without it


def start_of_today(now: dt.datetime | None = None) -> dt.datetime:
    """Midnight of today in the configured time zone."""
    local = timezone.localtime(now or timezone.now())
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def network_summary(now: dt.datetime | None = None) -> dict[str, Any]:
    """The admin dashboard's figures."""
    now = now or timezone.now()
    today = start_of_today(now)
    online = Station.objects.filter(is_online=True).count()
    total = Station.objects.count()
    pending = Station.objects.filter(registration_status="Pending").count()
    by_status = dict(
        Connector.objects.filter(number__gt=0, station__is_online=True)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    offline_connectors = Connector.objects.filter(number__gt=0, station__is_online=False).count()
    active = list(with_latest_register(Transaction.objects.filter(stopped_at__isnull=True))
                  .values_list("register", "meter_start"))
    active_energy = sum(rules.session_energy_wh(register, start) for register, start in active)
    finished_today = (
        Transaction.objects.filter(stopped_at__gte=today).aggregate(wh=Sum("energy_wh"))["wh"] or 0
    )
    return {
        "stations_total": total,
        "stations_online": online,
        "stations_offline": total - online,
        "stations_pending": pending,
        "connectors": [(status, by_status.get(status, 0)) for status in _CONNECTOR_ORDER if by_status.get(status)],
        "connectors_offline": offline_connectors,
        "active_transactions": len(active),
        "transactions_today": Transaction.objects.filter(started_at__gte=today).count(),
        "energy_today_kwh": (finished_today + active_energy) / 1000,
        "today": today,
        "as_of": now,
    }


_CONNECTOR_ORDER = (
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Reserved",
    "Unavailable", "Faulted",
)
