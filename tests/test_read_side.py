"""The read side: one rule for a session's energy, and the latest register from one subquery (no sockets)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from stations import rules, selectors
from stations.models import Connector, MeterSample, Station, Transaction


@pytest.mark.parametrize(
    "register, meter_start, expected",
    [
        (None, 1000, 0),  # no reading yet: nothing delivered
        (1000.0, 1000, 0),
        (16500.0, 1000, 15500),
        (900.0, 1000, 0),  # below meterStart (a replaced meter, an old row): never negative
        (1028.4, 1000, 28),  # whole Wh, as every reply and event shows them
        (1028.6, 1000, 29),
        (1028.5, 1000, 28),  # rounded after subtracting (Python's round: half to even)
    ],
)
def test_session_energy_rule(register: float | None, meter_start: int, expected: int) -> None:
    energy = rules.session_energy_wh(register, meter_start)
    assert energy == expected and type(energy) is int


@pytest.fixture
def charging(db) -> tuple[Station, Connector]:
    station = Station.objects.create(pk="rs1", is_online=True)
    Connector.objects.create(station=station, number=0, status="Available")
    return station, Connector.objects.create(station=station, number=1, status="Charging")


def _sample(tx: Transaction, seconds: int, **values: float) -> None:
    MeterSample.objects.create(station=tx.station, connector_number=tx.connector.number, transaction=tx,
                               timestamp=tx.started_at + dt.timedelta(seconds=seconds), **values)


def test_latest_register_per_transaction_in_one_query(charging, django_assert_num_queries) -> None:
    station, connector = charging
    start = timezone.now() - dt.timedelta(minutes=10)
    metered = Transaction.objects.create(station=station, connector=connector, id_tag="A", meter_start=1000,
                                         started_at=start)
    _sample(metered, 60, energy_wh=1500.0, power_w=11000.0)
    _sample(metered, 120, energy_wh=2250.4)
    _sample(metered, 180, power_w=7000.0)  # the newest sample has no register: the one before counts
    Transaction.objects.create(station=station, connector=connector, id_tag="B", meter_start=5000, started_at=start)
    done = Transaction.objects.create(station=station, connector=connector, id_tag="C", meter_start=0,
                                      meter_stop=3000, energy_wh=3000, started_at=start,
                                      stopped_at=start + dt.timedelta(minutes=5))
    _sample(done, 61, energy_wh=9999.0)  # a stopped session's energy is the stored one

    with django_assert_num_queries(1):
        rows = {tx.id_tag: tx for tx in selectors.with_latest_register(Transaction.objects.all())}
    assert {tag: getattr(tx, "register") for tag, tx in rows.items()} == {"A": 2250.4, "B": None, "C": 9999.0}
    assert {tag: selectors.session_energy_wh(tx) for tag, tx in rows.items()} == {"A": 1250, "B": 0, "C": 3000}

    Connector.objects.filter(pk=connector.pk).update(current_transaction=metered)
    row = Connector.objects.annotate(register=selectors.latest_register("current_transaction")).get(pk=connector.pk)
    assert getattr(row, "register") == 2250.4
    power = Transaction.objects.annotate(power=selectors.latest_reading("power_w")).get(pk=metered.pk)
    assert getattr(power, "power") == 7000.0


def test_session_energy_needs_the_annotation(charging) -> None:
    station, connector = charging
    tx = Transaction.objects.create(station=station, connector=connector, id_tag="A", meter_start=0,
                                    started_at=timezone.now())
    with pytest.raises(AttributeError):  # a queryset without with_latest_register: loud, not a silent 0
        selectors.session_energy_wh(Transaction.objects.get(pk=tx.pk))


def test_dashboard_counts_live_energy_by_the_rule(charging) -> None:
    station, connector = charging
    start = selectors.start_of_today() + dt.timedelta(minutes=1)
    below = Transaction.objects.create(station=station, connector=connector, id_tag="A", meter_start=1000,
                                       started_at=start)
    _sample(below, 60, energy_wh=400.0)  # below meterStart: 0, not -600
    rising = Transaction.objects.create(station=station, connector=connector, id_tag="B", meter_start=1000,
                                        started_at=start)
    _sample(rising, 61, energy_wh=1500.0)
    Transaction.objects.create(station=station, connector=connector, id_tag="C", meter_start=0, started_at=start)
    summary = selectors.network_summary()
    assert summary["active_transactions"] == 3 and summary["energy_today_kwh"] == 0.5
