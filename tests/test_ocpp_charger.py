"""The charger side over real sockets: the ocpp library's client against the live server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import pytest
import websockets
from django.utils import timezone
from ocpp.v16 import call

from csms.models import Event
from simulator.v16 import connect
from stations.models import Connector, MeterSample, Station, Tariff, Transaction
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def days_ago(days: int = 2) -> str:
    """A date the CSMS believes a charger's clock for (docs/ocpp.md: up to OCPP_TIMESTAMP_MAX_AGE_DAYS old)."""
    return (timezone.now() - dt.timedelta(days=days)).strftime("%Y-%m-%d")


async def station(station_id: str = "fora072") -> Station:
    return await Station.objects.aget(pk=station_id)


async def test_boot_records_station_and_connectors(charger_factory):
    charger = await charger_factory("fora072", connectors=2)
    st = await station()
    assert (st.vendor, st.model, st.firmware_version) == ("CSMS", "Simulator", "1.0.0")
    assert st.serial_number == "SIM-fora072"
    assert st.is_online and st.registration_status == "Accepted"
    statuses = [c async for c in Connector.objects.filter(station_id="fora072").values_list("number", "status")]
    assert statuses == [(0, "Available"), (1, "Available"), (2, "Available")]
    assert charger.state.heartbeat_interval == 300


async def test_heartbeat_answers_time_and_updates_activity_in_a_batch(charger_factory):
    charger = await charger_factory()
    before = (await station()).last_activity
    await asyncio.sleep(0.05)
    response = await charger.cp.call(call.Heartbeat())
    assert response.current_time.endswith("Z")

    async def flushed():
        return (await station()).last_activity > before

    await eventually(flushed, timeout=4)


async def test_status_notification_and_events(charger_factory):
    charger = await charger_factory()
    await charger.cp.call(
        call.StatusNotification(connector_id=2, error_code="GroundFailure", status="Faulted", info="RCD tripped")
    )
    connector = await Connector.objects.aget(station_id="fora072", number=2)
    assert (connector.status, connector.error_code, connector.info) == ("Faulted", "GroundFailure", "RCD tripped")
    event = await Event.objects.filter(kind="connector.status.changed").alast()
    assert event.data == {
        "stationId": "fora072",
        "connectorId": 2,
        "status": "Faulted",
        "errorCode": "GroundFailure",
        "transactionId": None,
        "timestamp": event.data["timestamp"],
    }
    json.dumps(event.data)


async def test_full_transaction_with_meter_values_and_cost(charger_factory):
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    charger = await charger_factory(connectors=2)
    cp = charger.cp
    day = days_ago()
    start = await cp.call(
        call.StartTransaction(connector_id=2, id_tag="MOBILE_USER_12345", meter_start=1000, timestamp=f"{day}T16:00:00Z")
    )
    assert start.id_tag_info == {"status": "Accepted"}
    tx_id = start.transaction_id
    await cp.call(call.StatusNotification(connector_id=2, error_code="NoError", status="Charging"))
    await cp.call(
        call.MeterValues(
            connector_id=2,
            transaction_id=tx_id,
            meter_value=[
                {
                    "timestamp": f"{day}T16:30:00Z",
                    "sampledValue": [
                        {"value": "8.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                        {"value": "50", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "125.5", "measurand": "Current.Import", "unit": "A"},
                        {"value": "400.0", "measurand": "Voltage", "unit": "V"},
                    ],
                }
            ],
        )
    )
    stop = await cp.call(
        call.StopTransaction(
            meter_stop=16500,
            timestamp=f"{day}T17:00:00Z",
            transaction_id=tx_id,
            reason="Remote",
            id_tag="MOBILE_USER_12345",
            transaction_data=[
                {"timestamp": f"{day}T16:30:00Z", "sampledValue": [{"value": "8500"}]},  # a repeat
                {"timestamp": f"{day}T17:00:00Z", "sampledValue": [{"value": "16500", "context": "Transaction.End"}]},
            ],
        )
    )
    assert stop.id_tag_info == {"status": "Accepted"}
    tx = await Transaction.objects.aget(pk=tx_id)
    assert (tx.energy_wh, tx.cost, tx.currency, tx.duration_seconds, tx.stop_reason) == (
        15500, Decimal("1.55"), "EUR", 3600, "Remote"
    )
    samples = [s async for s in MeterSample.objects.filter(transaction_id=tx_id).order_by("timestamp")]
    assert [(s.energy_wh, s.power_w, s.current_a, s.voltage_v) for s in samples] == [
        (8500.0, 50000.0, 125.5, 400.0),
        (16500.0, None, None, None),
    ]
    kinds = [e.kind async for e in Event.objects.filter(station_id="fora072").exclude(kind="connector.status.changed")]
    assert kinds == ["station.connected", "transaction.started", "meter.update", "transaction.stopped"]
    stopped = await Event.objects.aget(kind="transaction.stopped")
    assert stopped.data == {
        "transactionId": tx_id,
        "stationId": "fora072",
        "connectorId": 2,
        "idTag": "MOBILE_USER_12345",
        "stopTime": f"{day}T17:00:00.000Z",
        "energy": 15500,
        "totalKWh": 15.5,
        "duration": 3600,
        "cost": 1.55,
        "currency": "EUR",
        "reason": "Remote",
    }
    meter = await Event.objects.aget(kind="meter.update")
    # Session energy (register 8500 - meterStart 1000), as the documents show it.
    assert (meter.data["energy"], meter.data["delta"], meter.data["total"], meter.data["register"]) == (
        7500.0, 7500.0, 7500.0, 8500.0)
    connector = await Connector.objects.aget(station_id="fora072", number=2)
    assert connector.current_transaction_id is None


async def test_start_transaction_resent_after_reconnect_returns_same_id(charger_factory):
    first = await charger_factory()
    request = call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=500, timestamp="2026-01-01T10:00:00Z")
    original = await first.cp.call(request)
    await first.close()
    second = await charger_factory(boot=False)
    again = await second.cp.call(request)
    assert again.transaction_id == original.transaction_id
    assert await Transaction.objects.acount() == 1
    assert await Event.objects.filter(kind="transaction.started").acount() == 1


async def test_stop_transaction_resent_is_idempotent(charger_factory):
    charger = await charger_factory()
    start = await charger.cp.call(
        call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0, timestamp="2026-01-01T10:00:00Z")
    )
    stop = call.StopTransaction(meter_stop=2000, timestamp="2026-01-01T11:00:00Z", transaction_id=start.transaction_id)
    await charger.cp.call(stop)
    await charger.cp.call(stop)
    assert await Event.objects.filter(kind="transaction.stopped").acount() == 1
    tx = await Transaction.objects.aget(pk=start.transaction_id)
    assert tx.energy_wh == 2000


async def test_stop_of_unknown_transaction_is_answered_and_logged(charger_factory):
    charger = await charger_factory()
    response = await charger.cp.call(
        call.StopTransaction(meter_stop=10, timestamp="2026-01-01T11:00:00Z", transaction_id=999, id_tag="X")
    )
    assert response.id_tag_info == {"status": "Accepted"}
    assert await Event.objects.filter(kind="transaction.stop.unknown").acount() == 1


async def test_unknown_id_tag_refused_when_policy_says_so(charger_factory, settings):
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    charger = await charger_factory()
    response = await charger.cp.call(call.Authorize(id_tag="NOBODY"))
    assert response.id_tag_info == {"status": "Invalid"}


async def test_data_transfer_answered_and_stored(charger_factory):
    charger = await charger_factory()
    response = await charger.cp.call(call.DataTransfer(vendor_id="com.example", message_id="x", data="{}"))
    assert response.status == "UnknownVendorId"
    event = await Event.objects.aget(kind="station.data_transfer")
    assert event.data["vendorId"] == "com.example"


async def test_meter_values_resent_are_stored_once(charger_factory):
    charger = await charger_factory()
    values = call.MeterValues(
        connector_id=1, meter_value=[{"timestamp": f"{days_ago()}T10:00:00Z", "sampledValue": [{"value": "42"}]}]
    )
    await charger.cp.call(values)
    await charger.cp.call(values)
    assert await MeterSample.objects.acount() == 1


# --- Connection rules -------------------------------------------------------------------


async def test_second_connection_replaces_the_first(charger_factory):
    first = await charger_factory()
    second = await charger_factory(boot=False)
    await asyncio.wait_for(first.ws.wait_closed(), 5)
    assert first.ws.close_code == 4001
    st = await station()
    assert st.is_online
    await second.cp.call(call.Heartbeat())
    assert await Event.objects.filter(kind="station.connected").acount() == 1
    assert await Event.objects.filter(kind="station.disconnected").acount() == 0


async def test_disconnect_marks_offline(charger_factory):
    charger = await charger_factory()
    await charger.close()

    async def offline():
        return not (await station()).is_online

    await eventually(offline)
    assert await Event.objects.filter(kind="station.disconnected").acount() == 1


async def test_handshake_without_a_supported_subprotocol_is_refused(server, settings):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server}/ocpp/fora072", subprotocols=["ocpp2.1"])
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{server}/ocpp/fora072")
    settings.OCPP_VERSIONS = ["1.6"]  # 2.0.1 switched off: a 2.0.1-only charger is refused as before
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server}/ocpp/fora072", subprotocols=["ocpp2.0.1"])
    assert refused.value.response.status_code == 403


async def test_unknown_path_is_refused_not_500(server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server}/nowhere", subprotocols=["ocpp1.6"])
    assert refused.value.response.status_code == 403


async def test_unknown_station_rejected_by_policy(server, settings):
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{server}/ocpp", "stranger")
    assert refused.value.response.status_code == 403
    assert not await Station.objects.filter(pk="stranger").aexists()


async def test_unknown_station_registered_pending_and_restricted(charger_factory, settings):
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    charger = await charger_factory("newcomer", boot=False)
    boot = await charger.cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
    assert boot.status == "Pending"
    assert (await station("newcomer")).registration_status == "Pending"
    with pytest.raises(Exception) as refused:
        await charger.cp.call(call.Authorize(id_tag="TAG"), suppress=False)
    assert "SecurityError" in repr(refused.value)
    await charger.cp.call(call.Heartbeat())  # still allowed


async def test_unknown_station_auto_accepted_by_policy(charger_factory, settings):
    settings.OCPP_UNKNOWN_STATIONS = "accept"
    charger = await charger_factory("auto1", boot=False)
    boot = await charger.cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
    assert boot.status == "Accepted"


# --- Security profile 1 -------------------------------------------------------------------


@pytest.fixture
async def protected_station(transactional_db):
    from csms.events import call_service
    from stations import services

    await Station.objects.acreate(pk="secure1")
    return await call_service(services.set_station_password, "secure1", "correct-horse-battery-staple")


async def test_basic_auth_right_password(server, protected_station, charger_factory):
    charger = await charger_factory("secure1", password=protected_station)
    assert (await station("secure1")).is_online
    await charger.cp.call(call.Heartbeat())


@pytest.mark.parametrize("password", [None, "wrong-password-123456"])
async def test_basic_auth_wrong_or_missing_password(server, protected_station, password):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{server}/ocpp", "secure1", password)
    assert refused.value.response.status_code == 403
    assert not (await station("secure1")).is_online


async def test_basic_auth_user_must_be_the_station(server, protected_station):
    from simulator.v16 import basic_auth_header

    headers = basic_auth_header("someone-else", protected_station)
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{server}/ocpp/secure1", subprotocols=["ocpp1.6"], additional_headers=headers)


async def test_required_auth_refuses_station_without_password(server, settings):
    settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="open1")
    with pytest.raises(websockets.InvalidStatus):
        await connect(f"{server}/ocpp", "open1")


async def test_presence_sweep_marks_socketless_stations_offline(charger_factory, settings):
    """A handshake killed midway leaves a station online with no socket; the sweep repairs it."""
    settings.OCPP_PRESENCE_SWEEP_SECONDS = 0.3
    charger = await charger_factory("alive01", connectors=1)
    own_prefix = (await station("alive01")).channel_name.rsplit("!", 1)[0] + "!"
    await Station.objects.acreate(pk="ghost01", is_online=True, channel_name=own_prefix + "gone")
    await Station.objects.acreate(pk="elsewhere", is_online=True, channel_name="specific.otherproc!x")

    async def ghost_offline():
        return not (await station("ghost01")).is_online

    await eventually(ghost_offline)
    assert (await station("alive01")).is_online  # its socket is here
    assert (await station("elsewhere")).is_online  # another process's: not ours to judge
    assert await Event.objects.filter(kind="station.disconnected", station_id="ghost01").aexists()
    await charger.cp.call(call.Heartbeat())


async def test_simulator_auto_charge_runs_local_sessions(server):
    """make demo's charger: drivers start and stop sessions on their own (Authorize, Start, Meter, Stop)."""
    import asyncio as aio

    from simulator.v16 import ChargerState, run_charger

    state = ChargerState.new("demo01", 2, meter_interval=0.1)
    task = aio.create_task(run_charger(f"{server}/ocpp", state, auto_charge=0.3, reconnect=False))
    try:

        async def a_session_completed():
            return await Transaction.objects.filter(station_id="demo01", stop_reason="Local").aexists()

        await eventually(a_session_completed, timeout=10)
        tx = await Transaction.objects.filter(station_id="demo01", stop_reason="Local").afirst()
        assert tx.id_tag.startswith("DEMO-") and tx.energy_wh > 0
        assert await MeterSample.objects.filter(transaction=tx).aexists()
    finally:
        task.cancel()
