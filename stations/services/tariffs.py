"""Tariffs: which one prices a station's sessions, and what a session costs."""

from __future__ import annotations

from csms.events import atomic
from stations import rules, values
from stations.models import Station, Tariff, Transaction


def tariff_for(station: Station) -> Tariff | None:
    return station.tariff or Tariff.objects.filter(is_default=True).first()


def price(tx: Transaction, problems: values.Problems) -> None:
    """Price a closed transaction with its station's tariff (none: it has no cost)."""
    tariff = tariff_for(tx.station)
    if tariff is None:
        return
    tx.tariff = tariff
    tx.currency = tariff.currency
    tx.cost = rules.compute_cost(
        tx.energy_wh or 0,
        tx.duration_seconds or 0,
        price_per_kwh=tariff.price_per_kwh,
        price_per_minute=tariff.price_per_minute,
        session_fee=tariff.session_fee,
    )
    if not values.fits_decimal(Transaction, "cost", tx.cost):
        problems.add(f"cost {tx.cost} of transaction {tx.pk} does not fit the cost column; left empty")
        tx.cost = None


def save_tariff(tariff: Tariff) -> Tariff:
    """Save a tariff; making it the default takes that from the previous one."""
    with atomic():
        if tariff.is_default:
            Tariff.objects.filter(is_default=True).exclude(pk=tariff.pk).update(is_default=False)
        tariff.save()
    return tariff
