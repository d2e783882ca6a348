"""A value the database cannot store never poisons reads or blocks a stop (issue 10).

The charger is the ``ocpp`` library's client (the simulator) on a real socket
against the live server; the mobile app is a real WebSocket client. Several
of these failures showed only on PostgreSQL: run this file on both databases.
The bounds themselves (``stations.values``) are checked alone at the end.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.v16 import call

from csms.models import Event
from stations.models import Connector, MeterSample, Tariff, Transaction
from tests.admin_support import make_support
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

STATION = "fora072"
YEAR_10000 = "9999-12-31T23:59:59-01:00"  # 10000-01-01T00:59:59Z
YEAR_1_BC = "0001-01-01T00:00:00+01:00"  # 0000-12-31T23:00:00Z


def at(seconds_ago: float = 0) -> str:
    """A plausible charger timestamp, ``seconds_ago`` before now."""
    moment = timezone.now() - dt.timedelta(seconds=seconds_ago)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reading(timestamp: str, register: float, **measurands: str) -> dict:
    """One MeterValue: an energy register (Wh) and optional other measurands (name -> value)."""
    sampled = [{"value": f"{register:g}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    units = {"Power.Active.Import": "W", "Current.Import": "A", "Voltage": "V"}
    sampled += [{"value": value, "measurand": name, "unit": units[name]} for name, value in measurands.items()]
    return {"timestamp": timestamp, "sampledValue": sampled}


async def start(cp, connector: int = 1, meter_start: int = 1000, timestamp: str | None = None,
                id_tag: str = "TAG-1") -> int:
    response = await cp.call(
        call.StartTransaction(connector_id=connector, id_tag=id_tag, meter_start=meter_start,
                              timestamp=timestamp or at(60)),
        suppress=False,
    )
    return response.transaction_id


def _admin_status(path: str) -> int:
    client = Client()
    client.force_login(User.objects.filter(username="agent").first() or make_support())
    return client.get(path).status_code


async def admin_status(path: str) -> int:
    return await sync_to_async(_admin_status)(path)


async def start_charging_is_possible(charger, mobile) -> None:
    """The connector is free again: the app's startCharging is accepted (409 while busy)."""
    await charger.cp.send_status(1, "Available")
    app = await mobile("/ws")
    reply = await app.request("startCharging", {"stationId": STATION, "connectorId": 1, "idTag": "TAG-2"})
    assert "error" not in reply, reply
    # The simulator starts the session; wait for it so nothing runs past the test.
    await eventually(lambda: Transaction.objects.filter(id_tag="TAG-2").aexists())


# --- Stored times Python cannot read ------------------------------------------------------

async def test_out_of_range_sample_times_never_poison_reads(charger_factory, mobile):
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp)
    # PostgreSQL stored these at year 10000 and 1 BC; SQLite refused the whole stop.
    answer = await charger.cp.call(call.StopTransaction(
        meter_stop=3000, timestamp=at(), transaction_id=tx_id, reason="Local",
        transaction_data=[reading(YEAR_10000, 2000), reading(YEAR_1_BC, 2500), reading(at(1), 3000)],
    ))
    assert answer is not None, "StopTransaction was answered with a CALLERROR"
    await charger.cp.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Available",
                                                  timestamp=YEAR_10000))
    tx = await Transaction.objects.aget(pk=tx_id)
    assert tx.stopped_at is not None and tx.energy_wh == 2000
    app = await mobile("/ws")
    recent = await app.result("getMeterValuesRecent", {"stationId": STATION, "connectorId": 1})
    assert [sample["register"] for sample in recent] == [3000.0]
    assert await admin_status(f"/admin/stations/transaction/{tx_id}/change/") == 200
    assert await admin_status(f"/admin/stations/station/{STATION}/change/") == 200


@pytest.mark.postgres
async def test_migration_removes_unreadable_rows_stored_before_the_limits(charger_factory, mobile):
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL could store such times (SQLite refused the write)")
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp)

    def store_as_before_the_limits() -> None:
        # What the code before stations/values.py stored: PostgreSQL applies the offset.
        for text in (YEAR_10000, YEAR_1_BC):
            MeterSample.objects.create(station_id=STATION, connector_number=1, transaction_id=tx_id,
                                       timestamp=parse_datetime(text), energy_wh=2000)
        MeterSample.objects.create(station_id=STATION, connector_number=1, transaction_id=tx_id,
                                   timestamp=timezone.now(), energy_wh=2500)
        Connector.objects.filter(station_id=STATION, number=0).update(updated_at=parse_datetime(YEAR_10000))

    await sync_to_async(store_as_before_the_limits)()
    app = await mobile("/ws")
    # The read guard already keeps them out of the mobile API and the transaction page ...
    recent = await app.result("getMeterValuesRecent", {"stationId": STATION})
    assert [sample["register"] for sample in recent] == [2500.0]
    assert await admin_status(f"/admin/stations/transaction/{tx_id}/change/") == 200
    # ... and the migration removes them (the station page reads connector 0's time).
    migration = importlib.import_module("stations.migrations.0004_plausibility")
    await sync_to_async(migration.repair_unreadable_times)(apps, None)
    assert await MeterSample.objects.acount() == 1
    assert await admin_status(f"/admin/stations/station/{STATION}/change/") == 200
    assert (await Connector.objects.aget(station_id=STATION, number=0)).updated_at is None


# --- Values that failed the stop on every retry ---------------------------------------------

async def test_unparsable_sample_time_never_blocks_the_stop(charger_factory, mobile):
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp)
    stop = call.StopTransaction(
        meter_stop=3000, timestamp=at(), transaction_id=tx_id, reason="Local",
        transaction_data=[reading("2025-13-01T00:00:00Z", 2000), reading(at(1), 3000)],
    )
    for _ in range(2):  # the charger re-sends it until it is answered
        assert await charger.cp.call(stop) is not None, "StopTransaction was answered with a CALLERROR"
    tx = await Transaction.objects.aget(pk=tx_id)
    assert tx.stopped_at is not None and tx.energy_wh == 2000
    assert [s.energy_wh async for s in MeterSample.objects.filter(transaction_id=tx_id)] == [3000.0]
    await start_charging_is_possible(charger, mobile)


@pytest.mark.parametrize("meter_stop", [2**62, 2**63])
async def test_absurd_meter_stop_never_blocks_the_stop(charger_factory, mobile, meter_stop, caplog):
    caplog.set_level(logging.WARNING, "stations.services")
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.30"), is_default=True)  # overflowed
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp, meter_start=1000, timestamp=at(1800))
    answer = await charger.cp.call(call.StopTransaction(
        meter_stop=meter_stop, timestamp=at(), transaction_id=tx_id, reason="Local",
        transaction_data=[reading(at(900), 2500), reading(at(1), 4000)],
    ))
    assert answer is not None, "StopTransaction was answered with a CALLERROR"
    tx = await Transaction.objects.aget(pk=tx_id)
    # The newest plausible register (the Transaction.End sample) stands in for meterStop.
    assert (tx.stopped_at is not None, tx.meter_stop, tx.energy_wh, tx.cost) == (True, 4000, 3000, Decimal("0.90"))
    logged = [r.getMessage() for r in caplog.records if "meterStop" in r.getMessage()]
    assert len(logged) == 1 and len(logged[0]) < 600, logged
    await start_charging_is_possible(charger, mobile)


async def test_nan_sampled_value_drops_only_that_value(charger_factory, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["meter.update"]})
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp, meter_start=1000)
    await charger.cp.call(call.MeterValues(
        connector_id=1, transaction_id=tx_id,
        meter_value=[reading(at(1), 1500, **{"Power.Active.Import": "NaN", "Current.Import": "Infinity",
                                             "Voltage": "1e999"})],
    ), suppress=False)
    sample = await MeterSample.objects.aget(transaction_id=tx_id)
    assert (sample.energy_wh, sample.power_w, sample.current_a, sample.voltage_v) == (1500.0, None, None, None)
    pushed = await app.event("meter.update")
    assert (pushed["data"]["energy"], pushed["data"]["power"], pushed["data"]["current"]) == (500.0, None, None)
    stored = await Event.objects.aget(kind="meter.update")
    json.dumps(stored.data, allow_nan=False)  # standard JSON: no NaN, no Infinity


# --- Integers no column can hold ------------------------------------------------------------

def _status(connector_id: int):
    return call.StatusNotification(connector_id=connector_id, error_code="NoError", status="Available")


def _start(connector_id: int):
    return call.StartTransaction(connector_id=connector_id, id_tag="TAG-1", meter_start=0, timestamp=at())


def _meter(connector_id: int):
    return call.MeterValues(connector_id=connector_id, meter_value=[reading(at(), 100)])


@pytest.mark.parametrize("message", [_status, _start, _meter], ids=["StatusNotification", "StartTransaction",
                                                                      "MeterValues"])
@pytest.mark.parametrize("connector_id", [-1, 2**63])
async def test_connector_id_out_of_range_is_a_property_violation(charger_factory, message, connector_id):
    charger = await charger_factory(STATION)
    with pytest.raises(PropertyConstraintViolationError) as refused:
        await charger.cp.call(message(connector_id), suppress=False)
    assert "connectorId" in refused.value.description
    assert await charger.cp.call(call.Heartbeat()) is not None  # the socket lives
    assert not await Connector.objects.exclude(number__in=[0, 1, 2]).aexists()


# --- The bounds, alone -----------------------------------------------------------------------
# (imported in each test, so that the socket tests above also run, and fail for
# their own reasons, on the code from before stations/values.py)

def test_integer_bounds_are_the_columns():
    from stations import values
    from stations.errors import InvalidValue

    assert values.column_range(Connector, "number") == (0, 2**31 - 1)
    assert values.column_range(Transaction, "meter_start") == (-(2**63), 2**63 - 1)
    assert values.column_range(MeterSample, "transaction") == (-(2**63), 2**63 - 1)  # the key it refers to
    assert values.column_int(Connector, "number", 3.0, "connectorId") == 3
    for bad in (-1, 2**31, 2**63, True, 1.5, float("nan"), "1"):
        assert not values.fits(Connector, "number", bad), bad
    with pytest.raises(InvalidValue, match=r"connectorId -1 is out of range \(0\.\.2147483647\)"):
        values.column_int(Connector, "number", -1, "connectorId")
    assert values.fits_decimal(Transaction, "cost", Decimal("9999999999.99"))
    assert not values.fits_decimal(Transaction, "cost", Decimal("10000000000"))


def test_numbers_must_be_finite():
    from stations import values

    assert values.finite("12.5") == 12.5 and values.finite(3) == 3.0
    for bad in ("NaN", "nan", "Infinity", "-inf", "1e999", "abc", None, float("nan")):
        assert values.finite(bad) is None, bad


def test_charger_times_are_believed_within_the_window(settings):
    from stations import values

    settings.OCPP_TIMESTAMP_MAX_AGE_DAYS = 90
    settings.OCPP_TIMESTAMP_MAX_AHEAD_SECONDS = 900
    received = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    ok = values.charger_time("2026-05-30T12:00:00+02:00", received)  # queued two days ago
    assert ok.value == dt.datetime(2026, 5, 30, 10, 0, tzinfo=dt.UTC) and not ok.problem
    assert values.charger_time("2026-06-01T12:10:00", received).value is not None  # naive is UTC; 10 min ahead
    for absurd in ("1970-01-01T00:00:00Z", "2026-06-01T12:20:00Z", "2026-03-01T00:00:00Z", YEAR_10000, YEAR_1_BC):
        judged = values.charger_time(absurd, received)
        assert judged.value is None and judged.readable and "not plausible" in judged.problem, absurd
    for unreadable in ("2025-13-01T00:00:00Z", "2026-06-01T12:00:00+24:00", "yesterday", "", None, 17):
        judged = values.charger_time(unreadable, received)
        assert judged.value is None and not judged.readable, unreadable
    long = values.charger_time("x" * 10_000, received)
    assert len(long.problem) < 120  # quoted, not dumped


def test_energy_is_plausible_between_zero_and_full_power(settings):
    from stations import values

    settings.OCPP_MAX_POWER_KW = 350
    assert values.plausible_energy(0, 0) and values.plausible_energy(350_000, 60)  # an hour's worth at least
    assert values.plausible_energy(700_000, 7200) and not values.plausible_energy(700_001, 7200)
    assert not values.plausible_energy(-1, 3600) and not values.plausible_energy(2**62, 3600)


def test_problems_log_one_bounded_line(caplog):
    from stations import values

    caplog.set_level(logging.WARNING, "test.values")
    problems = values.Problems()
    for index in range(1000):
        problems.add(f"sample {index}: value {values.excerpt('x' * 5000)} is not a finite number; dropped")
    problems.log(logging.getLogger("test.values"), "fora072", "MeterValues")
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "1000 value(s)" in line and "(+997 more)" in line and len(line) < 600
