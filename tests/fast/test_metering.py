"""services.metering: a charger's readings stored once, plausible ones only, in their session, and the
newest announced (meter.update)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from stations import services
from stations.errors import InvalidValue
from stations.models import Connector, MeterSample, Station, Transaction
from tests.fast.conftest import ago, events, many

pytestmark = pytest.mark.django_db


def reading(seconds_ago: float, wh: str | None = None, **measurands: str) -> dict[str, Any]:
    """One MeterValue: the register (Wh) and other measurands by name, e.g. power="7400"."""
    names = {"power": "Power.Active.Import", "current": "Current.Import", "voltage": "Voltage", "soc": "SoC"}
    sampled = [{"value": wh, "measurand": "Energy.Active.Import.Register"}] if wh is not None else []
    sampled += [{"value": value, "measurand": names[name]} for name, value in measurands.items()]
    return {"timestamp": ago(seconds_ago), "sampled_value": sampled}


def announced(*keys: str) -> list[dict[str, Any]]:
    return [{key: event[key] for key in keys} for event in events("meter.update")]


@pytest.fixture
def session(station: Station) -> int:
    """A transaction on connector 1 of fora072, started 10 minutes ago at register 1000 Wh."""
    transaction_id, _ = services.start_transaction("fora072", 1, "CARD-1", 1000, ago(600))
    return transaction_id


def test_readings_are_stored_in_their_session_and_the_newest_announced(session: int) -> None:
    services.record_meter_values("fora072", 1, session, [reading(120, "1500", power="7400"), reading(60, "1800")])
    samples = list(MeterSample.objects.order_by("timestamp").values_list("transaction_id", "energy_wh", "power_w"))
    assert samples == [(session, 1500.0, 7400.0), (session, 1800.0, None)]
    assert announced("transactionId", "energy", "register") == [
        {"transactionId": session, "energy": 800, "register": 1800}]  # energy: this session's, not the register


def test_readings_name_their_session_by_the_chargers_id(session: int) -> None:
    Transaction.objects.filter(pk=session).update(charger_transaction_id="f3a9-chosen")
    services.record_meter_values("fora072", 1, "f3a9-chosen", [reading(60, "1500")])
    services.record_meter_values("fora072", 1, session, [reading(30, "1600")])  # not the charger's id: none
    assert list(MeterSample.objects.order_by("timestamp").values_list("transaction_id", flat=True)) == [session, None]


def test_without_a_transaction_id_readings_go_to_the_connectors_session(session: int) -> None:
    services.record_meter_values("fora072", 1, None, [reading(60, "1200", voltage="230", current="16", soc="40")])
    sample = MeterSample.objects.get()
    assert (sample.transaction_id, sample.voltage_v, sample.current_a, sample.soc) == (session, 230.0, 16.0, 40.0)
    services.record_meter_values("fora072", 2, None, [reading(60, "50000")])
    assert MeterSample.objects.get(connector_number=2).transaction_id is None  # no session there


def test_a_re_sent_reading_is_stored_and_announced_once(session: int) -> None:
    message = [reading(60, "1500")]
    services.record_meter_values("fora072", 1, session, message)
    services.record_meter_values("fora072", 1, session, message)
    assert MeterSample.objects.count() == 1
    assert len(events("meter.update")) == 1


def test_an_implausible_register_is_dropped_but_its_other_values_kept(session: int, settings: Settings) -> None:
    settings.OCPP_MAX_POWER_KW = 22
    services.record_meter_values("fora072", 1, session, [
        reading(180, "900", power="7000"),  # below meterStart: an import register never runs back
        reading(120, "999999999", power="7100"),  # more than 22 kW could deliver since the start
        reading(60, "1100", power="7200"),
    ])
    samples = list(MeterSample.objects.order_by("timestamp").values_list("energy_wh", "power_w"))
    assert samples == [(None, 7000.0), (None, 7100.0), (1100.0, 7200.0)]


def test_a_reading_without_a_plausible_time_or_a_finite_value_is_dropped(session: int) -> None:
    services.record_meter_values("fora072", 1, session, [
        {"timestamp": "1970-01-01T00:00:00Z", "sampled_value": [{"value": "1200"}]},
        {"timestamp": "soon", "sampled_value": [{"value": "1200"}]},
        {"timestamp": ago(30), "sampled_value": [{"value": "NaN"}, {"value": "5", "measurand": "SoC"}]},
    ])
    assert list(MeterSample.objects.values_list("energy_wh", "soc")) == [(None, 5.0)]


def test_readings_named_for_another_connectors_transaction_are_kept_without_it(session: int) -> None:
    services.record_meter_values("fora072", 2, session, [reading(60, "1500")])
    assert MeterSample.objects.get().transaction_id is None
    services.record_meter_values("fora072", 1, 2**70, [reading(30, "1500")])  # an id no column holds: none
    assert MeterSample.objects.get(connector_number=1).transaction_id is None


def test_a_connector_seen_first_in_meter_values_is_made(station: Station) -> None:
    services.record_meter_values("fora072", 5, None, [reading(60, "100")])
    assert Connector.objects.filter(station=station, number=5).exists()
    with pytest.raises(InvalidValue):
        services.record_meter_values("fora072", -1, None, [reading(60, "100")])


def test_the_batched_form_makes_connectors_seen_first_together(station: Station) -> None:
    """New chargers' first MeterValues (a storm): their connectors and EVSEs are made for the whole
    batch at once, as _connector makes one (1.6 connector n: connector 1 of EVSE n; 0 has no EVSE),
    and each reading then takes the hot path."""
    Station.objects.bulk_create([Station(pk=f"new-{n}") for n in range(20)])
    calls: list[tuple[tuple, dict]] = [((f"new-{n}", n % 3, None, [reading(60, str(100 + n))]), {}) for n in range(20)]
    with CaptureQueriesContext(connection) as queries:
        outcomes = many(services.record_meter_values)(calls)
    # One by one it was 4 round trips and 2 savepoints per connector: here 2 locks, 2 INSERTs and a read of the
    # EVSEs' ids, before the readings' one INSERT (the events after it are numbered one by one outside a batch).
    sqls = [query["sql"] for query in queries.captured_queries]
    insert = next(i for i, sql in enumerate(sqls) if sql.startswith("INSERT") and '"stations_metersample"' in sql)
    assert [sql.split()[0] for sql in sqls[:insert]] == ["SELECT", "INSERT", "SELECT", "INSERT", "SELECT"]
    assert outcomes is not None and all(ok for ok, _ in outcomes)
    made = Connector.objects.filter(station__id__startswith="new-").select_related("evse")
    assert sorted((c.station_id, c.number, c.connector_id, c.evse.number if c.evse else None) for c in made) == sorted(
        (f"new-{n}", n % 3, 1, (n % 3) or None) for n in range(20))
    assert MeterSample.objects.filter(station__id__startswith="new-").count() == 20


def test_the_batched_form_stores_each_message_as_alone(session: int) -> None:
    """record_meter_values.many (the group commit's form): one lock, one INSERT, each message's own outcome."""
    Station.objects.create(pk="fora073")
    outcomes = many(services.record_meter_values)([
        (("fora072", 1, session, [reading(60, "1500")]), {}),
        (("fora073", 1, None, [reading(60, "300")]), {}),
        (("fora072", 2**40, None, [reading(60, "1")]), {}),
    ])
    assert outcomes is not None
    assert [ok for ok, _ in outcomes] == [True, True, False]
    assert isinstance(outcomes[2][1], InvalidValue)
    assert sorted(MeterSample.objects.values_list("station_id", "energy_wh")) == [("fora072", 1500.0),
                                                                                  ("fora073", 300.0)]
    assert announced("stationId", "energy") == [{"stationId": "fora072", "energy": 500},
                                                {"stationId": "fora073", "energy": 300}]
    # Two messages for one connector in one batch are written one by one (None), in order.
    assert many(services.record_meter_values)([(("fora073", 1, None, [reading(30, "310")]), {}),
                                               (("fora073", 1, None, [reading(20, "320")]), {})]) is None
