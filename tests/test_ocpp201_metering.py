"""OCPP 2.0.1 block J: MeterValues and the meter values inside TransactionEvent (clock-aligned, sampled,
transaction-ended), with phases, units and multipliers, over a real socket with the ocpp library's v201
ChargePoint (tests/ocpp201.py); named after the OCTT 2.0.1 CSMS test cases (TC_J_..._CSMS) where one applies.
The mobile API sees the same meter.update as for 1.6."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from ocpp.v201 import call

from csms.models import Event
from stations.models import MeterSample, Transaction
from stations.ocpp.v201.metering import meter_values, sampled_value
from tests.ocpp201 import energy

pytestmark = pytest.mark.django_db(transaction=True)


def at(seconds: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def three_phase(timestamp: str, context: str, wh: float) -> dict:
    """A reading as a three-phase meter sends it: the register in kWh, power per phase in kW, current
    and voltage per phase, the register's multiplier form too."""
    def sv(value: float, measurand: str, unit: str, phase: str | None = None, multiplier: int | None = None) -> dict:
        unit_of_measure: dict = {"unit": unit}
        if multiplier is not None:
            unit_of_measure["multiplier"] = multiplier
        sample = {"value": value, "measurand": measurand, "context": context, "location": "Outlet",
                  "unit_of_measure": unit_of_measure}
        if phase:
            sample["phase"] = phase
        return sample

    return {"timestamp": timestamp, "sampled_value": [
        sv(wh / 1000, "Energy.Active.Import.Register", "kWh"),
        *(sv(2.4, "Power.Active.Import", "kW", phase) for phase in ("L1", "L2", "L3")),
        sv(10, "Current.Import", "A", "L1"), sv(11, "Current.Import", "A", "L2"), sv(12, "Current.Import", "A", "L3"),
        *(sv(23, "Voltage", "V", f"{phase}-N", multiplier=1) for phase in ("L1", "L2", "L3")),
        sv(55, "SoC", "Percent"),
    ]}


async def kinds(kind: str, station_id: str) -> list[dict]:
    return [event.data async for event in Event.objects.filter(kind=kind, station_id=station_id).order_by("seq")]


def test_sampled_value_conversion_applies_the_multiplier():
    assert sampled_value({"value": 12, "measurand": "Energy.Active.Import.Register",
                          "unit_of_measure": {"unit": "Wh", "multiplier": 3}, "context": "Sample.Clock"}) == {
        "value": "12000.0", "unit": "Wh", "measurand": "Energy.Active.Import.Register", "context": "Sample.Clock"}
    assert sampled_value({"value": 7.5, "phase": "L1", "location": "Outlet"}) == {
        "value": "7.5", "phase": "L1", "location": "Outlet"}
    assert sampled_value({"value": 1500, "unit_of_measure": {"unit": "W", "multiplier": -3}}) == {
        "value": "1.5", "unit": "W"}
    huge = sampled_value({"value": 1.5, "unit_of_measure": {"unit": "Wh", "multiplier": 400}})
    assert math.isinf(float(huge["value"]))  # dropped by the metering rules, no OverflowError
    signed = {"signed_meter_data": "abc", "signing_method": "ECDSA", "encoding_method": "OCMF", "public_key": "k"}
    assert sampled_value({"value": 1, "signed_meter_value": signed})["signed_meter_value"] == signed
    assert meter_values(None) == []


async def test_tc_j_01_clock_aligned_no_transaction_main_meter_and_evse(station201):
    cp = await station201("j01")
    for evse_id in (0, 1):
        await cp.call(call.MeterValues(evse_id=evse_id, meter_value=[three_phase(at(-1), "Sample.Clock", 12345)]))
    rows = [row async for row in MeterSample.objects.filter(station_id="j01").order_by("connector_number")]
    assert [(row.connector_number, row.transaction_id, row.context) for row in rows] == [
        (0, None, "Sample.Clock"), (1, None, "Sample.Clock")]
    row = rows[1]
    assert (row.energy_wh, row.power_w, row.current_a, row.voltage_v, row.soc) == (12345, 7200, 11, 230, 55)
    assert row.sampled_values[0] == {"value": "12.345", "unit": "kWh", "measurand": "Energy.Active.Import.Register",
                                     "location": "Outlet", "context": "Sample.Clock"}
    assert row.sampled_values[-2]["value"] == "230.0" and row.sampled_values[-2]["phase"] == "L3-N"
    [main, update] = await kinds("meter.update", "j01")  # EVSE 0: the main meter, connectorId 0 as for 1.6
    assert main["connectorId"] == 0
    assert (update["connectorId"], update["transactionId"], update["register"], update["power"]) == (1, None, 12345, 7200)


async def test_tc_j_02_clock_aligned_transaction_ongoing(station201, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["all"]})
    cp = await station201("j02")
    await cp.transaction_event("Started", "tx-j2", token="T", meter_value=[energy(1000, at(-30), "Transaction.Begin")])
    tx = await Transaction.objects.aget(station_id="j02")
    # Clock-aligned readings come in a MeterValues (no transaction named: the EVSE's current one) or in a
    # TransactionEvent Updated (triggerReason MeterValueClock).
    await cp.call(call.MeterValues(evse_id=1, meter_value=[three_phase(at(-20), "Sample.Clock", 2000)]))
    await cp.transaction_event("Updated", "tx-j2", trigger_reason="MeterValueClock",
                               meter_value=[three_phase(at(-10), "Sample.Clock", 2500)])
    first = await app.event("meter.update", energy=1000)
    second = await app.event("meter.update", energy=1500)
    assert app.field(first, "transactionId") == app.field(second, "transactionId") == tx.pk
    samples = [(s.energy_wh, s.transaction_id) async for s in MeterSample.objects.filter(station_id="j02")]
    assert samples == [(1000, tx.pk), (2000, tx.pk), (2500, tx.pk)]


async def test_tc_j_03_clock_aligned_in_transaction_ended(station201):
    cp = await station201("j03")
    await cp.transaction_event("Started", "tx-j3", token="T", meter_value=[energy(100, at(-40), "Transaction.Begin")])
    ended = [three_phase(at(-30), "Sample.Clock", 200), three_phase(at(-20), "Sample.Clock", 300),
             three_phase(at(-10), "Transaction.End", 350)]
    await cp.transaction_event("Ended", "tx-j3", trigger_reason="EVCommunicationLost", stopped_reason="EVDisconnected",
                               meter_value=ended)
    tx = await Transaction.objects.aget(station_id="j03")
    assert (tx.meter_start, tx.meter_stop, tx.energy_wh) == (100, 350, 250)
    contexts = [s.context async for s in tx.meter_samples.order_by("timestamp")]
    assert contexts == ["Transaction.Begin", "Sample.Clock", "Sample.Clock", "Transaction.End"]
    [stopped] = await kinds("transaction.stopped", "j03")
    assert stopped["energy"] == 250


async def test_tc_j_sampled_transaction_ongoing_units_and_phases(station201):
    cp = await station201("j08")
    await cp.transaction_event("Started", "tx-j8", token="T", meter_value=[energy(0, at(-30), "Transaction.Begin")])
    reading = {"timestamp": at(-5), "sampled_value": [
        {"value": 4, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic",
         "unit_of_measure": {"unit": "Wh", "multiplier": 2}},
        {"value": 3500, "measurand": "Power.Active.Import", "context": "Sample.Periodic", "phase": "L1",
         "unit_of_measure": {"unit": "W"}},
        {"value": 3.5, "measurand": "Power.Active.Import", "context": "Sample.Periodic", "phase": "L2",
         "unit_of_measure": {"unit": "kW"}},
    ]}
    await cp.transaction_event("Updated", "tx-j8", trigger_reason="MeterValuePeriodic", meter_value=[reading])
    sample = await MeterSample.objects.aget(station_id="j08", context="Sample.Periodic")
    assert (sample.energy_wh, sample.power_w) == (400, 7000)
    [_, update] = await kinds("meter.update", "j08")
    assert (update["energy"], update["delta"], update["power"]) == (400, 400, 7000)


async def test_tc_j_sampled_readings_resent_are_kept_once(station201):
    cp = await station201("j-dup")
    await cp.transaction_event("Started", "tx-d", token="T", meter_value=[energy(10, at(-30), "Transaction.Begin")])
    reading = [energy(20, at(-10))]
    await cp.call(call.MeterValues(evse_id=1, meter_value=reading))
    await cp.call(call.MeterValues(evse_id=1, meter_value=reading))  # re-sent after a lost answer
    await cp.transaction_event("Ended", "tx-d", trigger_reason="StopAuthorized", meter_value=reading + [
        energy(30, at(-1), "Transaction.End")])  # the Ended repeats it
    assert await MeterSample.objects.filter(station_id="j-dup").acount() == 3
    assert len(await kinds("meter.update", "j-dup")) == 2


async def test_tc_j_signed_meter_values_kept(station201):
    cp = await station201("j-sig")
    signed = {"signed_meter_data": "T0NNRnx7fQ==", "signing_method": "ECDSA-secp256r1-SHA256",
              "encoding_method": "OCMF", "public_key": "MFkw"}
    reading = {"timestamp": at(-1), "sampled_value": [
        {"value": 1234, "measurand": "Energy.Active.Import.Register", "context": "Sample.Clock",
         "signed_meter_value": signed}]}
    await cp.call(call.MeterValues(evse_id=1, meter_value=[reading]))
    sample = await MeterSample.objects.aget(station_id="j-sig")
    assert sample.energy_wh == 1234  # the value is the reading; the signature is kept beside it
    assert sample.sampled_values[0]["signed_meter_value"] == signed


@pytest.mark.parametrize(("value", "expected"), [
    (0.00001, "0.01"), (1e20, "1e+23"), (math.inf, "inf"), (math.nan, "inf"), (12, "12000.0"),
])
def test_multiplier_of_any_json_number(value, expected):
    """json prints 1e-05 and 1e+20 in exponent notation and reads Infinity/NaN: each scaled, the
    non-finite ones as inf (which the metering rules drop)."""
    unit = {"unit": "A", "multiplier": 3}
    assert sampled_value({"value": value, "measurand": "Current.Import", "unit_of_measure": unit})["value"] \
        == expected


@pytest.mark.parametrize("value", [0.00001, 1e20])  # Infinity/NaN: refused as frames (FormatViolation)
async def test_ended_with_exponent_value_and_multiplier_is_applied(station201, value):
    cp = await station201("j-exp")
    await cp.transaction_event("Started", "tx-e", token="T", meter_value=[energy(10, at(-10))])
    reading = [{"timestamp": at(-1), "sampled_value": [
        {"value": value, "measurand": "Current.Import", "phase": "L1", "unit_of_measure": {"unit": "A", "multiplier": 3}},
        {"value": 20, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "Wh"}},
    ]}]
    answer = await cp.call(call.TransactionEvent(
        event_type="Ended", timestamp=at(0), trigger_reason="StopAuthorized", seq_no=1,
        transaction_info={"transaction_id": "tx-e"}, meter_value=reading), suppress=False)
    assert answer.total_cost is None  # no tariff: answered, not InternalError
    tx = await Transaction.objects.aget(station_id="j-exp")
    assert tx.stopped_at is not None and tx.meter_stop == 20
