"""Plausibility, so money and energy are right (issue 10).

Each test drives a real simulated charger (the ``ocpp`` library's client) or
raw OCPP frames against the live server, with a mobile client where the
failure showed in what apps are pushed. Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal

import pytest
from ocpp.v16 import call

from csms.models import Event
from simulator.v16 import connect
from stations.models import Connector, MeterSample, Tariff, Transaction
from tests.test_values import STATION, at, reading, start

pytestmark = pytest.mark.django_db(transaction=True)


async def meter_pushes(app, count: int) -> list[dict]:
    """The next ``count`` meter.update pushes, then proof that no other one follows."""
    pushes = [await app.event("meter.update") for _ in range(count)]
    await asyncio.sleep(0.3)
    try:
        extra = await app.event("meter.update", timeout=0.2)
    except (AssertionError, TimeoutError):  # none queued; none arrived in time
        extra = None
    assert extra is None, f"an extra push: {extra}"
    return [push["data"] for push in pushes]


# --- Push exactly what was stored, once ----------------------------------------------------

async def test_resent_meter_values_are_pushed_once(charger_factory, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["meter.update"]})
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp)
    resent = call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[reading(at(20), 1500)])
    for _ in range(3):  # queued after a network drop and sent again
        await charger.cp.call(resent, suppress=False)
    await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[reading(at(10), 1700)]))
    pushes = await meter_pushes(app, 2)
    assert [push["energy"] for push in pushes] == [500.0, 700.0]  # the session's: register - meterStart 1000
    assert await MeterSample.objects.acount() == 2
    stored = [e.event_id async for e in Event.objects.filter(kind="meter.update").order_by("seq")]
    assert len(stored) == 2  # and getEventsSince replays those two, as they were pushed


async def test_second_reading_with_the_same_timestamp_is_not_pushed(charger_factory, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["meter.update"]})
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp)
    moment = at(20)
    for register in (1500, 1600):  # a second, different reading at a time already taken
        await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=tx_id,
                                               meter_value=[reading(moment, register)]), suppress=False)
    await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[reading(at(10), 1700)]))
    pushes = await meter_pushes(app, 2)
    stored = [s.energy_wh async for s in MeterSample.objects.order_by("timestamp")]
    assert stored == [1500.0, 1700.0]
    assert [push["energy"] for push in pushes] == [500.0, 700.0]  # what was stored, register - meterStart 1000


# --- One transaction per connector; samples only to their own --------------------------------

async def test_second_start_on_a_busy_connector_closes_the_first(server, caplog):
    caplog.set_level(logging.WARNING, "stations.services")
    ws = await connect(f"{server}/ocpp", "busy1")
    try:
        first = {"connectorId": 1, "idTag": "TAG-A", "meterStart": 1000, "timestamp": at(120)}
        second = {"connectorId": 1, "idTag": "TAG-B", "meterStart": 1800, "timestamp": at(60)}
        # Both sent at once, as a charger emptying its queue does.
        await ws.send(json.dumps([2, "s1", "StartTransaction", first]))
        await ws.send(json.dumps([2, "s2", "StartTransaction", second]))
        replies = {reply[1]: reply for reply in [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]}
        assert replies["s1"][0] == replies["s2"][0] == 3, replies
        first_id, second_id = replies["s1"][2]["transactionId"], replies["s2"][2]["transactionId"]
        assert first_id != second_id
        # The first one re-sent later is still recognised, and closes nothing.
        await ws.send(json.dumps([2, "s3", "StartTransaction", first]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))[2]["transactionId"] == first_id
    finally:
        await ws.close()
    old = await Transaction.objects.aget(pk=first_id)
    assert (old.stop_reason, old.meter_stop, old.energy_wh, old.duration_seconds) == ("Other", 1800, 800, 60)
    assert [tx.pk async for tx in Transaction.objects.filter(connector__number=1, stopped_at__isnull=True)] == [
        second_id]
    connector = await Connector.objects.aget(station_id="busy1", number=1)
    assert connector.current_transaction_id == second_id
    stopped = await Event.objects.aget(kind="transaction.stopped")
    assert (stopped.data["transactionId"], stopped.data["reason"]) == (first_id, "Other")
    assert any(f"transaction {first_id} was still active" in r.getMessage() for r in caplog.records)


async def test_samples_go_only_to_their_own_transaction(charger_factory, mobile, caplog):
    caplog.set_level(logging.WARNING, "stations.services")
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["meter.update"]})
    charger = await charger_factory(STATION)
    own = await start(charger.cp, connector=1, id_tag="TAG-1")
    other = await start(charger.cp, connector=2, id_tag="TAG-2")
    for transaction_id, seconds_ago in ((other, 30), (987654, 20), (own, 10)):
        await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=transaction_id,
                                               meter_value=[reading(at(seconds_ago), 1500 + seconds_ago)]))
    pushes = await meter_pushes(app, 3)
    assert [push["transactionId"] for push in pushes] == [None, None, own]
    by_transaction = [(s.connector_number, s.transaction_id) async for s in MeterSample.objects.order_by("timestamp")]
    assert by_transaction == [(1, None), (1, None), (1, own)]
    assert any("987654 is no transaction of connector 1" in r.getMessage() for r in caplog.records)


# --- Energy never negative -----------------------------------------------------------------

async def test_decreasing_register_never_pushes_negative_energy(charger_factory, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["meter.update", "transaction.stopped"]})
    dart = await mobile("/mobile-client")
    await dart.result("subscribe", {"events": ["meter.values.delta"]})
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp, meter_start=10_000)
    await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[reading(at(10), 4900)]))
    [pushed] = await meter_pushes(app, 1)
    assert pushed["energy"] is None or pushed["energy"] >= 0, pushed  # it was -5100
    delta = await dart.event("meter.values.delta")
    for name in ("delta", "total"):
        assert delta[name] is None or delta[name] >= 0, delta
    recent = await app.result("getMeterValuesRecent", {"stationId": STATION, "connectorId": 1})
    assert all(sample["energy"] is None or sample["energy"] >= 0 for sample in recent), recent
    await charger.cp.call(call.StopTransaction(meter_stop=4900, timestamp=at(), transaction_id=tx_id))
    stopped = await app.event("transaction.stopped")
    assert stopped["data"]["energy"] == 0
    assert (await Transaction.objects.aget(pk=tx_id)).energy_wh == 0


# --- Duration and cost from plausible times --------------------------------------------------

@pytest.mark.parametrize("start_clock, stop_clock", [
    ("1970-01-01T00:00:00Z", None),  # a clock reset: 1,496,773.30 EUR before
    (None, "2999-01-01T00:00:00Z"),  # a clock far ahead: a session of 973 years
], ids=["start-1970", "stop-2999"])
async def test_absurd_clock_times_the_transaction_by_the_server(charger_factory, start_clock, stop_clock):
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.05"),
                                 is_default=True)
    charger = await charger_factory(STATION)
    tx_id = await start(charger.cp, meter_start=1000, timestamp=start_clock or at(60))
    answer = await charger.cp.call(call.StopTransaction(meter_stop=2000, timestamp=stop_clock or at(),
                                                        transaction_id=tx_id))
    assert answer is not None, "StopTransaction was answered with a CALLERROR"
    tx = await Transaction.objects.aget(pk=tx_id)
    assert 0 <= tx.duration_seconds <= 120 and tx.energy_wh == 1000
    assert Decimal("0.30") <= tx.cost <= Decimal("0.40"), tx.cost  # 1 kWh and at most two minutes
    assert tx.reported_start == (start_clock or "")


async def test_a_reset_clock_start_resent_returns_the_same_transaction(charger_factory):
    charger = await charger_factory(STATION)
    request = call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=500, timestamp="1970-01-01T00:00:00Z")
    first = await charger.cp.call(request)
    again = await charger.cp.call(request)
    assert again.transaction_id == first.transaction_id
    assert await Transaction.objects.acount() == 1


async def test_queued_messages_from_days_ago_keep_their_times(charger_factory):
    """A charger offline for three days sends its queue with its own (right) times.

    Not a failure of the old code: the guard that the plausibility window keeps it so."""
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.05"),
                                 is_default=True)
    charger = await charger_factory(STATION)
    days = 3 * 86400
    tx_id = await start(charger.cp, meter_start=1000, timestamp=at(days))
    await charger.cp.call(call.MeterValues(connector_id=1, transaction_id=tx_id,
                                           meter_value=[reading(at(days - 1800), 6000)]))
    await charger.cp.call(call.StopTransaction(meter_stop=12_000, timestamp=at(days - 3600), transaction_id=tx_id))
    tx = await Transaction.objects.aget(pk=tx_id)
    assert (tx.duration_seconds, tx.energy_wh, tx.cost) == (3600, 11_000, Decimal("6.30"))
    assert await MeterSample.objects.filter(transaction_id=tx_id, energy_wh=6000).aexists()
