"""OCPP 2.0.1 block B (boot, registration) and the station's side of G (heartbeat, status per EVSE and
connector), with the ocpp library's v201 ChargePoint as the station over a real socket (tests/ocpp201.py).
Named after the OCTT 2.0.1 CSMS test cases (TC_B_01_CSMS ...)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import websockets
from django.utils import timezone
from ocpp.exceptions import SecurityError
from ocpp.v201 import call

from csms.models import Event
from stations.models import Connector, Station
from tests.conftest import eventually
from tests.ocpp201 import connect201, energy

pytestmark = pytest.mark.django_db(transaction=True)


async def test_tc_b_01_cold_boot_accepted_records_the_station(station201, settings):
    settings.OCPP_HEARTBEAT_INTERVAL = 120
    cp = await station201("cs201", boot=False)
    boot = await cp.boot(serial_number="SN-1", firmware_version="1.2.3", modem={"iccid": "8931", "imsi": "2040"})
    assert boot.status == "Accepted" and boot.interval == 120
    skew = abs(dt.datetime.fromisoformat(boot.current_time) - timezone.now())
    assert skew < dt.timedelta(seconds=5)
    station = await Station.objects.aget(pk="cs201")
    assert (station.ocpp_version, station.vendor, station.model, station.serial_number, station.firmware_version,
            station.iccid, station.imsi) == ("2.0.1", "TestVendor", "TestModel", "SN-1", "1.2.3", "8931", "2040")
    assert station.is_online and station.last_boot_at is not None


async def test_tc_b_02_pending_station_may_only_boot_and_answer(station201, settings):
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    cp = await station201("newcomer", boot=False)
    assert (await cp.boot()).status == "Pending"
    # B02: while Pending the station sends nothing but BootNotification (and what answers the CSMS's own
    # requests); an Authorize or a transaction is refused.
    with pytest.raises(SecurityError):
        await cp.call(call.Authorize(id_token={"id_token": "T1", "type": "Central"}), suppress=False)
    with pytest.raises(SecurityError):
        await cp.call(call.TransactionEvent(
            event_type="Started", timestamp="2026-12-01T10:00:00Z", trigger_reason="Authorized", seq_no=0,
            transaction_info={"transaction_id": "tx-p"}, evse={"id": 1}), suppress=False)
    await cp.heartbeat()
    await cp.status(1, "Available")
    # The CSMS asks a Pending station for its device model (OCPP_DEVICE_MODEL_ON_BOOT), once.
    asked = await cp.wait_for("GetBaseReport")
    assert asked["report_base"] == "FullInventory" and isinstance(asked["request_id"], int)
    # Accepted from the admin (or `manage.py station add`): the next boot is answered Accepted.
    await Station.objects.filter(pk="newcomer").aupdate(registration_status="Accepted")
    assert (await cp.boot()).status == "Accepted"
    assert (await cp.authorize("T1")).id_token_info["status"] == "Accepted"
    assert [name for name, _ in cp.received].count("GetBaseReport") == 1


async def test_pending_station_with_a_device_model_is_not_asked_again(station201, settings):
    from stations.models import DeviceVariable

    settings.OCPP_UNKNOWN_STATIONS = "pending"
    row = await Station.objects.acreate(pk="known201", registration_status="Pending")
    await DeviceVariable.objects.acreate(station=row, component="ChargingStation", variable="Model", value="M")
    cp = await station201("known201", boot=False)
    assert (await cp.boot()).status == "Pending"
    await cp.heartbeat()
    await asyncio.sleep(0.3)
    assert "GetBaseReport" not in [name for name, _ in cp.received]
    settings.OCPP_DEVICE_MODEL_ON_BOOT = "never"
    await DeviceVariable.objects.filter(station=row).adelete()
    assert (await cp.boot()).status == "Pending"
    await asyncio.sleep(0.3)
    assert "GetBaseReport" not in [name for name, _ in cp.received]


async def test_accepted_station_asked_for_its_device_model_only_when_set_so(station201, settings):
    cp = await station201("accepted201")  # default "pending": an Accepted station is not asked
    await cp.heartbeat()
    await asyncio.sleep(0.3)
    assert "GetBaseReport" not in [name for name, _ in cp.received]
    settings.OCPP_DEVICE_MODEL_ON_BOOT = "always"
    assert (await cp.boot()).status == "Accepted"
    assert (await cp.wait_for("GetBaseReport"))["report_base"] == "FullInventory"
    for _ in range(3):  # a station that boots again and again is asked once per connection
        assert (await cp.boot()).status == "Accepted"
    await asyncio.sleep(0.3)
    assert [name for name, _ in cp.received].count("GetBaseReport") == 1


async def test_tc_b_03_rejected_station_gets_rejected(station201):
    await Station.objects.acreate(pk="banned", registration_status="Rejected")
    cp = await station201("banned", boot=False)
    assert (await cp.boot()).status == "Rejected"
    with pytest.raises(SecurityError):
        await cp.call(call.Authorize(id_token={"id_token": "T1", "type": "Central"}), suppress=False)
    # B03: a Rejected station sends nothing but its next boot (a Pending one may report its status).
    with pytest.raises(SecurityError):
        await cp.call(call.StatusNotification(timestamp="2026-12-01T10:00:00Z", connector_status="Available",
                                              evse_id=1, connector_id=1), suppress=False)
    with pytest.raises(SecurityError):
        await cp.call(call.Heartbeat(), suppress=False)
    assert (await cp.boot()).status == "Rejected"


async def test_unknown_station_refused_by_policy(server, settings):
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect201(f"{server}/ocpp", "stranger")
    assert refused.value.response.status_code == 403
    assert not await Station.objects.filter(pk="stranger").aexists()


async def test_charger_offering_both_versions_gets_2_0_1(station201):
    cp = await station201("both", subprotocols=("ocpp1.6", "ocpp2.0.1"), boot=False)
    assert cp._connection.subprotocol == "ocpp2.0.1"
    assert (await cp.boot()).status == "Accepted"
    assert (await Station.objects.aget(pk="both")).ocpp_version == "2.0.1"


async def test_setting_prefers_1_6_when_both_are_offered(server, settings):
    settings.OCPP_VERSIONS = ["1.6", "2.0.1"]
    ws = await connect201(f"{server}/ocpp", "both16", subprotocols=("ocpp2.0.1", "ocpp1.6"))
    try:
        assert ws.subprotocol == "ocpp1.6"
    finally:
        await ws.close()
    await eventually(lambda: Station.objects.filter(pk="both16", ocpp_version="1.6").aexists())


async def test_heartbeat_answers_the_time(station201):
    cp = await station201()
    answer = await cp.heartbeat()
    assert abs(dt.datetime.fromisoformat(answer.current_time) - timezone.now()) < dt.timedelta(seconds=5)


async def test_status_notification_per_evse_and_connector(station201):
    cp = await station201()
    await cp.status(1, "Available")
    await cp.status(2, "Occupied")
    await cp.status(2, "Faulted", connector_id=2)  # an EVSE with two connectors (e.g. CCS and CHAdeMO)
    rows = [(c.number, c.connector_id, c.status)
            async for c in Connector.objects.filter(station_id="cs201").order_by("number", "connector_id")]
    assert rows == [(1, 1, "Available"), (2, 1, "Occupied"), (2, 2, "Faulted")]
    # The event shows the EVSE as the mobile API does, from both its connectors: one is in use.
    event = await Event.objects.filter(kind="connector.status.changed").alast()
    assert event.data["connectorId"] == 2 and event.data["status"] == "Occupied" and event.data["errorCode"] is None
    await cp.status(2, "Available")
    event = await Event.objects.filter(kind="connector.status.changed").alast()
    assert event.data["status"] == "Available"  # connector 1 free again; connector 2 still Faulted
    json.dumps(event.data)


async def test_status_notification_with_a_wrong_type_is_refused_and_the_socket_stays(station201):
    cp = await station201()
    from ocpp.exceptions import FormatViolationError, TypeConstraintViolationError

    with pytest.raises((FormatViolationError, TypeConstraintViolationError)):
        await cp.call(call.StatusNotification(timestamp="2026-12-01T10:00:00Z", connector_status="Available",
                                              evse_id="one", connector_id=1), suppress=False)  # type: ignore[arg-type]
    await cp.heartbeat()


async def test_unknown_action_and_malformed_frames_answered_in_2_0_1_words(server):
    ws = await connect201(f"{server}/ocpp", "raw201")
    try:
        await ws.send(json.dumps([2, "u-1", "MakeCoffee", {}]))
        assert json.loads(await ws.recv())[:3] == [4, "u-1", "NotImplemented"]  # not an OCPP action
        await ws.send(json.dumps([2, "u-1b", "GetVariables", {"getVariableData": []}]))
        assert json.loads(await ws.recv())[:3] == [4, "u-1b", "NotSupported"]  # a CSMS-to-station action
        await ws.send(json.dumps([2, "u-2", "Heartbeat", {"extra": 1}]))
        # 2.0.1 spells it FormatViolation (1.6J: FormationViolation)
        assert json.loads(await ws.recv())[:3] == [4, "u-2", "FormatViolation"]
        await ws.send('[2, "u-3", "Heartbeat", {')
        assert json.loads(await ws.recv())[:3] == [4, "u-3", "FormatViolation"]
        await ws.send(json.dumps([2, "u-4", "Heartbeat", {}]))
        answer = json.loads(await ws.recv())
        assert answer[:2] == [3, "u-4"] and "currentTime" in answer[2]
    finally:
        await ws.close()


async def test_occupied_keeps_the_charging_state_its_transaction_reported(station201):
    cp = await station201()
    await cp.status(1, "Occupied")
    await cp.transaction_event("Started", "tx-occ", token="T1", charging_state="Charging",
                               meter_value=[energy(1000)])
    connector = await Connector.objects.aget(station_id="cs201", number=1)
    assert connector.status == "Charging"
    await cp.status(1, "Occupied")  # e.g. answering a TriggerMessage: still charging
    connector = await Connector.objects.aget(station_id="cs201", number=1)
    assert connector.status == "Charging"
    await cp.transaction_event("Ended", "tx-occ", trigger_reason="EVCommunicationLost", stopped_reason="EVDisconnected",
                               meter_value=[energy(2000, context="Transaction.End")])
    await cp.status(1, "Occupied")
    connector = await Connector.objects.aget(station_id="cs201", number=1)
    assert connector.status == "Occupied"
