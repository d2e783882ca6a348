"""services.tariffs: which tariff prices a station's sessions, one default at a time, and the price."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from stations import services, values
from stations.models import Connector, Station, Tariff, Transaction
from stations.services.tariffs import price

pytestmark = pytest.mark.django_db


def tariff(name: str, per_kwh: str, *, default: bool = False, **fields: object) -> Tariff:
    return services.save_tariff(Tariff(name=name, price_per_kwh=Decimal(per_kwh), is_default=default, **fields))


def closed(station: Station, energy_wh: int, seconds: int) -> Transaction:
    """A transaction as _close leaves it just before pricing."""
    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    connector = Connector.objects.filter(station=station, number=1).first()
    tx = Transaction(station=station, connector=connector, id_tag="T", meter_start=1000, started_at=start,
                     meter_stop=1000 + energy_wh, energy_wh=energy_wh, stopped_at=start + dt.timedelta(seconds=seconds))
    tx.save()
    return tx


def test_a_station_is_priced_by_its_own_tariff_else_the_default_else_none(station: Station) -> None:
    assert services.tariff_for(station) is None
    default = tariff("Default", "0.30", default=True)
    assert services.tariff_for(station) == default
    own = tariff("Car park", "0.25")
    station.tariff = own
    assert services.tariff_for(station) == own


def test_a_new_default_takes_the_flag_from_the_old_one() -> None:
    first = tariff("First", "0.30", default=True)
    second = tariff("Second", "0.40", default=True)
    assert list(Tariff.objects.filter(is_default=True)) == [second]
    first.refresh_from_db()
    assert not first.is_default
    assert services.save_tariff(second) == second  # saving the default again keeps it
    assert list(Tariff.objects.filter(is_default=True)) == [second]


def test_the_documents_example_costs_1_55(station: Station) -> None:
    documents = tariff("Documents", "0.10", default=True)
    tx = closed(station, 15500, 3600)
    problems = values.Problems()
    price(tx, problems)
    assert (tx.cost, tx.currency, tx.tariff) == (Decimal("1.55"), "EUR", documents)
    assert problems.count == 0


def test_time_and_session_fees_are_added_and_rounded_half_up(station: Station) -> None:
    tariff("Full", "0.10", default=True, price_per_minute=Decimal("0.05"), session_fee=Decimal("0.50"),
           currency="GBP")
    tx = closed(station, 1005, 90)  # 0.1005 + 0.075 + 0.50 = 0.6755
    price(tx, values.Problems())
    assert (tx.cost, tx.currency) == (Decimal("0.68"), "GBP")


def test_without_a_tariff_a_session_has_no_cost(station: Station) -> None:
    tx = closed(station, 15500, 3600)
    price(tx, values.Problems())
    assert (tx.cost, tx.currency, tx.tariff) == (None, "", None)


def test_a_cost_its_column_cannot_hold_is_left_empty_and_said(station: Station) -> None:
    tariff("Absurd", "999999.9999", default=True)
    tx = closed(station, 10**12, 3600)
    problems = values.Problems()
    price(tx, problems)
    assert tx.cost is None
    assert problems.reasons == [
        f"cost 999999999900000.00 of transaction {tx.pk} does not fit the cost column; left empty"]
