"""The OCPP 2.0.1 simulator (simulator/v201.py) against the real server: it runs as ``simulate_charger
--ocpp 2.0.1`` does (run_station: connect, boot, reconnect) and the CSMS drives it with its own command
service. What the station sent is read from its frames log, what the CSMS made of it from the database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from simulator.connection import ReconnectBackoff
from simulator.v201 import VENDOR_ID, StationState, run_station
from stations import commands
from stations.models import Connector, DeviceVariable, Station, Transaction, TransactionEvent
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


class Frames(logging.Handler):
    """The OCPP frames the simulator sent (the ocpp library logs each one on simulator.v201.frames)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.sent: list[tuple[str, list[Any]]] = []
        self.received: list[tuple[str, list[Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in ("%s: send %s", "%s: receive message %s"):
            station_id, raw = record.args  # type: ignore[misc]
            frames = self.sent if "send" in record.msg else self.received
            frames.append((str(station_id), json.loads(str(raw))))

    def answers(self, station_id: str, action: str) -> list[dict[str, Any]]:
        """The CSMS's answers to the station's calls of ``action``."""
        ids = {frame[1] for sid, frame in self.sent if sid == station_id and frame[0] == 2 and frame[2] == action}
        return [frame[2] for sid, frame in self.received if sid == station_id and frame[0] == 3 and frame[1] in ids]

    def calls(self, station_id: str, action: str) -> list[dict[str, Any]]:
        return [frame[3] for sid, frame in self.sent if sid == station_id and frame[0] == 2 and frame[2] == action]


@pytest.fixture
def frames() -> Iterator[Frames]:
    handler = Frames()
    logger = logging.getLogger("simulator.v201.frames")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def simulate(server) -> AsyncIterator[Callable[..., Awaitable[StationState]]]:
    """``state = await simulate("sim1")``: run_station in a task, returned once the station is online."""
    runs: list[asyncio.Task] = []

    async def make(station_id: str = "sim201", *, evses: int = 2, password: str | None = None,
                   backoff: ReconnectBackoff | None = None, online: bool = True,
                   auto_charge: float | None = None) -> StationState:
        state = StationState.new(station_id, evses, meter_interval=0.2, password=password)
        runs.append(asyncio.create_task(run_station(
            f"{server}/ocpp", state, backoff=backoff or ReconnectBackoff(minimum=0.05, maximum=0.2),
            auto_charge=auto_charge)))
        if online:  # Accepted, and each connector's status reported
            await eventually(lambda: _true(state.online and all(
                c.sent_status for e in state.evses.values() for c in e.connectors.values())), timeout=10)
        return state

    yield make
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


async def _true(value: Any) -> Any:
    return value


async def connector_status(station_id: str, evse: int) -> str | None:
    connector = await Connector.objects.filter(station_id=station_id, number=evse, connector_id=1).afirst()
    return connector.status if connector else None


async def test_boot_reports_status_and_security_events(simulate, frames):
    state = await simulate("sim201", evses=2)
    station = await Station.objects.aget(pk="sim201")
    assert (station.ocpp_version, station.vendor, station.model, station.serial_number) == (
        "2.0.1", "CSMS", "Simulator 201", "SIM-sim201")
    assert [b["reason"] for b in frames.calls("sim201", "BootNotification")] == ["PowerUp"]
    await eventually(lambda: _true(len(frames.calls("sim201", "StatusNotification")) == 2))
    statuses = frames.calls("sim201", "StatusNotification")
    assert [(s["evseId"], s["connectorId"], s["connectorStatus"]) for s in statuses] == [
        (1, 1, "Available"), (2, 1, "Available")]
    assert [e["type"] for e in frames.calls("sim201", "SecurityEventNotification")] == [
        "StartupOfTheDevice", "SettingSystemTime"]
    assert await connector_status("sim201", 2) == "Available"
    assert state.accepted


async def test_get_base_report_is_sent_in_notify_report_parts(simulate, frames):
    state = await simulate("sim201")
    answer = await commands.send_command("sim201", "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
    assert answer == {"status": "Accepted"}
    parts = await eventually(lambda: _true(
        (p := frames.calls("sim201", "NotifyReport")) and not p[-1].get("tbc") and p))
    assert [p["seqNo"] for p in parts] == list(range(len(parts))) and len(parts) > 1
    assert all(p["tbc"] for p in parts[:-1]) and all(p["requestId"] == 7 for p in parts)
    items = [item for part in parts for item in part["reportData"]]
    assert len(items) == len(state.model.variables) and all(len(p["reportData"]) <= 20 for p in parts)
    by_name = {(i["component"]["name"], i["component"].get("evse", {}).get("id"), i["variable"]["name"]): i
               for i in items}
    password = by_name[("SecurityCtrlr", None, "BasicAuthPassword")]["variableAttribute"][0]
    assert password["mutability"] == "WriteOnly" and "value" not in password
    heartbeat = by_name[("OCPPCommCtrlr", None, "HeartbeatInterval")]
    assert heartbeat["variableCharacteristics"]["dataType"] == "integer"
    assert by_name[("EVSE", 2, "AvailabilityState")]["variableAttribute"][0]["value"] == "Available"
    assert ("TxCtrlr", None, "TxStartPoint") in by_name and ("SampledDataCtrlr", None, "TxUpdatedMeasurands") in by_name
    # The CSMS keeps it as the station's device model.
    await eventually(lambda: _is(DeviceVariable.objects.filter(station_id="sim201").acount(), len(items)))

    # ConfigurationInventory: only what can be set.
    await commands.send_command("sim201", "GetBaseReport", {"requestId": 8, "reportBase": "ConfigurationInventory"})
    config = await eventually(lambda: _true(
        (p := [x for x in frames.calls("sim201", "NotifyReport") if x["requestId"] == 8]) and not p[-1].get("tbc")
        and p))
    mutabilities = {i["variableAttribute"][0]["mutability"] for part in config for i in part["reportData"]}
    assert mutabilities == {"ReadWrite", "WriteOnly"}
    # GetReport of one component; of none that exists: EmptyResultSet.
    answer = await commands.send_command("sim201", "GetReport", {
        "requestId": 9, "componentVariable": [{"component": {"name": "EVSE", "evse": {"id": 1}}}]})
    assert answer == {"status": "Accepted"}
    report = await eventually(lambda: _true([x for x in frames.calls("sim201", "NotifyReport") if x["requestId"] == 9]))
    assert {i["component"]["evse"]["id"] for i in report[0]["reportData"]} == {1}
    answer = await commands.send_command("sim201", "GetReport", {
        "requestId": 10, "componentVariable": [{"component": {"name": "NoSuchCtrlr"}}]})
    assert answer == {"status": "EmptyResultSet"}


async def test_the_admins_base_report_and_variable_commands(simulate):
    """What the admin's device model page sends (stations.commands.device_model), with the simulator."""
    from stations.commands import device_model as dm
    from stations.services.device_model import VariableRef

    state = await simulate("sim201")
    status, _ = await dm.request_report("sim201", "FullInventory", actor="test")
    assert status == "Accepted"
    await eventually(lambda: _is(DeviceVariable.objects.filter(station_id="sim201").acount(), len(state.model.variables)))
    interval = VariableRef("SampledDataCtrlr", "TxUpdatedInterval")
    assert (await dm.set_variable("sim201", interval, "2", actor="test")).status == "Accepted"
    assert state.meter_interval == 2.0
    assert (await dm.read_variable("sim201", interval, actor="test")).value == "2"
    refused = await dm.set_variable("sim201", VariableRef("SecurityCtrlr", "SecurityProfile"), "3", actor="test")
    assert refused.status == "Rejected"


async def test_get_and_set_variables_from_the_device_model(simulate):
    state = await simulate("sim201")

    def item(component: str, variable: str, **more: Any) -> dict[str, Any]:
        return {"component": {"name": component}, "variable": {"name": variable}, **more}

    answer = await commands.send_command("sim201", "GetVariables", {"getVariableData": [
        item("OCPPCommCtrlr", "HeartbeatInterval"), item("SecurityCtrlr", "BasicAuthPassword"),
        item("NoSuchCtrlr", "Enabled"), item("TxCtrlr", "NoSuchVariable"),
        item("OCPPCommCtrlr", "HeartbeatInterval", attributeType="Target"),
    ]})
    results = answer["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Rejected", "UnknownComponent", "UnknownVariable", "NotSupportedAttributeType"]
    assert results[0]["attributeValue"] == str(state.heartbeat_interval)
    assert "attributeValue" not in results[1]

    answer = await commands.send_command("sim201", "SetVariables", {"setVariableData": [
        item("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="45"),
        item("SecurityCtrlr", "SecurityProfile", attributeValue="3"),
        item("SampledDataCtrlr", "TxUpdatedMeasurands", attributeValue="Energy.Active.Import.Register,Nonsense"),
        item("SampledDataCtrlr", "TxUpdatedMeasurands", attributeValue="Energy.Active.Import.Register,SoC"),
        item("NoSuchCtrlr", "Enabled", attributeValue="true"),
    ]})
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == [
        "Accepted", "Rejected", "Rejected", "Accepted", "UnknownComponent"]
    assert state.heartbeat_interval == 45
    assert state.model.value("SampledDataCtrlr", "TxUpdatedMeasurands") == "Energy.Active.Import.Register,SoC"


async def start(station_id: str, evse: int, token: str = "SIMTAG", remote_start_id: int = 42) -> dict[str, Any]:
    return await commands.send_command(station_id, "RequestStartTransaction", {
        "idToken": {"idToken": token, "type": "Central"}, "remoteStartId": remote_start_id, "evseId": evse})


def events(frames: Frames, station_id: str, transaction_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in frames.calls(station_id, "TransactionEvent")
            if transaction_id is None or e["transactionInfo"]["transactionId"] == transaction_id]


async def test_remote_start_meter_values_and_remote_stop(simulate, frames):
    state = await simulate("sim201")
    assert await start("sim201", 1) == {"status": "Accepted"}
    started = (await eventually(lambda: _true(events(frames, "sim201"))))[0]
    tx_id = started["transactionInfo"]["transactionId"]
    assert (started["eventType"], started["triggerReason"], started["seqNo"]) == ("Started", "RemoteStart", 0)
    assert started["transactionInfo"]["remoteStartId"] == 42 and started["evse"] == {"id": 1, "connectorId": 1}
    assert started["idToken"] == {"idToken": "SIMTAG", "type": "Central"}
    assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    await eventually(lambda: _true(len(events(frames, "sim201")) >= 4))
    updated = events(frames, "sim201")[1:]
    assert updated[0]["transactionInfo"]["chargingState"] == "Charging"
    assert updated[0]["triggerReason"] == "ChargingStateChanged" and updated[1]["triggerReason"] == "MeterValuePeriodic"
    sampled = updated[1]["meterValue"][0]["sampledValue"]
    assert {(v["measurand"], v.get("phase")) for v in sampled} == {
        ("Energy.Active.Import.Register", None), ("Power.Active.Import", None), ("SoC", None),
        ("Current.Import", "L1"), ("Current.Import", "L2"), ("Current.Import", "L3"),
        ("Voltage", "L1-N"), ("Voltage", "L2-N"), ("Voltage", "L3-N")}
    assert await connector_status("sim201", 1) in ("Occupied", "Charging")
    # Another start on the busy EVSE is refused; on the free one it is not.
    assert await start("sim201", 1) == {"status": "Rejected"}

    tx = await eventually(lambda: Transaction.objects.filter(charger_transaction_id=tx_id).afirst())
    assert await commands.send_command("sim201", "RequestStopTransaction", {"transactionId": tx_id}) == {
        "status": "Accepted"}
    ended = await eventually(lambda: _true([e for e in events(frames, "sim201", tx_id) if e["eventType"] == "Ended"]))
    assert ended[0]["transactionInfo"]["stoppedReason"] == "Remote" and ended[0]["triggerReason"] == "RemoteStop"
    assert ended[0]["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.End"
    seq = [e["seqNo"] for e in events(frames, "sim201", tx_id)]
    assert seq == list(range(len(seq)))
    assert state.evses[1].transaction is None
    await eventually(lambda: _stopped(tx.pk))
    assert await commands.send_command("sim201", "RequestStopTransaction", {"transactionId": tx_id}) == {
        "status": "Rejected"}


async def _stopped(pk: int) -> bool:
    return (await Transaction.objects.aget(pk=pk)).stopped_at is not None


async def test_remote_start_through_the_command_service(simulate, frames):
    await simulate("sim201")
    status = await commands.remote_start("sim201", 2, "APPTAG")
    assert status == "Accepted"
    started = (await eventually(lambda: _true(events(frames, "sim201"))))[0]
    assert started["evse"]["id"] == 2 and started["idToken"]["idToken"] == "APPTAG"
    assert isinstance(started["transactionInfo"]["remoteStartId"], int)
    tx = await eventually(lambda: Transaction.objects.filter(station_id="sim201", stopped_at=None).afirst())
    status, _, _ = await commands.remote_stop(transaction_id=tx.pk)
    assert status == "Accepted"
    await eventually(lambda: _stopped(tx.pk))


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_mobile_app_charges_at_the_simulator(simulate, mobile, path):
    """startCharging / stopCharging at a 2.0.1 station, as at a 1.6 one (tests/test_mobile_smoke.py)."""
    await simulate("sim201")
    client = await mobile(path)
    await client.result("subscribe", {"stationId": "sim201", "events": ["transaction.*", "meter.*", "remote.*"]})
    start = await client.request("startCharging", {"stationId": "sim201", "connectorId": 2, "idTag": "MOBILE"})
    correlation_id = start["result"]["correlationId"]
    started = await client.event("transaction.started", correlationId=correlation_id)
    data = started.get("data", started)
    assert data["stationId"] == "sim201" and data["connectorId"] == 2 and data["idTag"] == "MOBILE"
    tx_id = data["transactionId"]
    # The Started's reading is the register alone; the Updated ones that follow carry power and energy.
    if path == "/ws":
        assert isinstance(tx_id, int)
        meter = await client.event("meter.update", transactionId=tx_id)
        while not meter["data"]["power"]:
            meter = await client.event("meter.update", transactionId=tx_id)
        assert meter["data"]["power"] > 0 and meter["data"]["energy"] >= 0
    else:
        delta = await client.event("meter.values.delta", transactionId=tx_id)
        while not delta["delta"]:
            delta = await client.event("meter.values.delta", transactionId=tx_id)
        assert delta["delta"] > 0 and delta["unit"] == "Wh"
    await client.result("stopCharging", {"stationId": "sim201", "transactionId": tx_id, "connectorId": 2})
    stopped = await client.event("transaction.stopped", transactionId=tx_id)
    assert stopped.get("data", stopped)["reason"] == "Remote"


async def test_clock_aligned_readings(simulate, frames):
    await simulate("sim201")
    answer = await commands.send_command("sim201", "SetVariables", {"setVariableData": [{
        "component": {"name": "AlignedDataCtrlr"}, "variable": {"name": "Interval"}, "attributeValue": "1"}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    meter = (await eventually(lambda: _true(frames.calls("sim201", "MeterValues")), timeout=4))[0]
    assert meter["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
    await start("sim201", 1)
    clock = await eventually(lambda: _true(
        [e for e in events(frames, "sim201") if e["triggerReason"] == "MeterValueClock"]), timeout=4)
    assert clock[0]["meterValue"][0]["sampledValue"][0]["measurand"] == "Energy.Active.Import.Register"


async def test_reset_immediate_ends_the_transaction_and_reboots(simulate, frames):
    state = await simulate("sim201")
    await start("sim201", 1)
    await eventually(lambda: _true(len(events(frames, "sim201")) >= 2))
    assert await commands.send_command("sim201", "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    boots = await eventually(lambda: _true(len(b := frames.calls("sim201", "BootNotification")) == 2 and b))
    assert boots[1]["reason"] == "RemoteReset"
    ended = [e for e in events(frames, "sim201") if e["eventType"] == "Ended"]
    assert ended[0]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended[0]["triggerReason"] == "ResetCommand"
    await back_online(state)
    assert "ResetOrReboot" in [e["type"] for e in frames.calls("sim201", "SecurityEventNotification")]


async def back_online(state: StationState) -> None:
    """After a reboot: the station Accepted again, and the CSMS holding its new socket."""
    await eventually(lambda: _true(state.online), timeout=10)
    await eventually(lambda: Station.objects.filter(pk=state.station_id, is_online=True).aexists(), timeout=10)


async def test_reset_on_idle_waits_for_the_transaction(simulate, frames):
    state = await simulate("sim201")
    assert await commands.send_command("sim201", "Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    await eventually(lambda: _true(len(frames.calls("sim201", "BootNotification")) == 2))
    await back_online(state)
    await start("sim201", 1)
    tx_id = (await eventually(lambda: _true(events(frames, "sim201"))))[0]["transactionInfo"]["transactionId"]
    assert await commands.send_command("sim201", "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    await asyncio.sleep(0.5)
    assert len(frames.calls("sim201", "BootNotification")) == 2  # not while charging
    await commands.send_command("sim201", "RequestStopTransaction", {"transactionId": tx_id})
    await eventually(lambda: _true(len(frames.calls("sim201", "BootNotification")) == 3))


async def test_reset_of_one_evse_ends_its_transaction_only(simulate, frames):
    await simulate("sim201")
    await start("sim201", 1)
    await start("sim201", 2, token="OTHER", remote_start_id=43)
    await eventually(lambda: _true(len({e["evse"]["id"] for e in events(frames, "sim201") if "evse" in e}) == 2))
    assert await commands.send_command("sim201", "Reset", {"type": "Immediate", "evseId": 2}) == {"status": "Accepted"}
    ended = await eventually(lambda: _true([e for e in events(frames, "sim201") if e["eventType"] == "Ended"]))
    assert len(ended) == 1 and ended[0]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert len(frames.calls("sim201", "BootNotification")) == 1  # the station itself did not reboot
    assert await commands.send_command("sim201", "Reset", {"type": "OnIdle", "evseId": 1}) == {"status": "Scheduled"}
    assert await commands.send_command("sim201", "Reset", {"type": "Immediate", "evseId": 5}) == {"status": "Rejected"}


async def test_a_blocked_token_ends_the_transaction(simulate, frames):
    from stations.models import IdTag

    await IdTag.objects.acreate(id_tag="BLOCKED1", type="Central", status="Blocked")
    await simulate("sim201")
    assert await start("sim201", 1, token="BLOCKED1") == {"status": "Accepted"}
    ended = await eventually(lambda: _true([e for e in events(frames, "sim201") if e["eventType"] == "Ended"]))
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("Deauthorized",
                                                                                        "DeAuthorized")


async def test_change_availability_station_evse_connector(simulate, frames):
    state = await simulate("sim201")

    async def change(status: str, evse: dict[str, int] | None = None) -> str:
        payload: dict[str, Any] = {"operationalStatus": status, **({"evse": evse} if evse else {})}
        return (await commands.send_command("sim201", "ChangeAvailability", payload))["status"]

    assert await change("Inoperative", {"id": 2}) == "Accepted"
    await eventually(lambda: _is(connector_status("sim201", 2), "Unavailable"))
    assert await connector_status("sim201", 1) == "Available"
    assert await change("Operative", {"id": 2}) == "Accepted"
    await eventually(lambda: _is(connector_status("sim201", 2), "Available"))
    assert await change("Inoperative", {"id": 1, "connectorId": 1}) == "Accepted"
    await eventually(lambda: _is(connector_status("sim201", 1), "Unavailable"))
    assert await start("sim201", 1) == {"status": "Rejected"}
    assert await change("Operative", {"id": 1, "connectorId": 1}) == "Accepted"
    assert await change("Inoperative", {"id": 9}) == "Rejected"
    assert await change("Inoperative") == "Accepted"
    await eventually(lambda: _is(connector_status("sim201", 1), "Unavailable"))
    await eventually(lambda: _is(connector_status("sim201", 2), "Unavailable"))
    assert await change("Operative") == "Accepted"
    await eventually(lambda: _is(connector_status("sim201", 1), "Available"))
    # While charging: Scheduled, and applied when the transaction ends.
    await start("sim201", 2)
    tx_id = (await eventually(lambda: _true(events(frames, "sim201"))))[0]["transactionInfo"]["transactionId"]
    assert await change("Inoperative", {"id": 2}) == "Scheduled"
    await commands.send_command("sim201", "RequestStopTransaction", {"transactionId": tx_id})
    await eventually(lambda: _is(connector_status("sim201", 2), "Unavailable"))
    assert state.model.value("EVSE", "AvailabilityState", evse=2) == "Unavailable"


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_offline_transaction_events_are_sent_after_the_reconnect(simulate, frames):
    state = await simulate("sim201", backoff=ReconnectBackoff(minimum=0.6, maximum=0.6))
    await start("sim201", 1)
    tx_id = (await eventually(lambda: _true(events(frames, "sim201"))))[0]["transactionInfo"]["transactionId"]
    await eventually(lambda: _true(len(events(frames, "sim201")) >= 3))
    assert state.link is not None
    await state.link.close()  # the network drops: the station goes on charging
    await eventually(lambda: _true(not state.online))
    await eventually(lambda: _true(state.outbox), timeout=3)
    await eventually(lambda: _true(state.online), timeout=10)
    await eventually(lambda: _true(not state.outbox), timeout=10)
    sent = events(frames, "sim201", tx_id)
    offline = [e for e in sent if e.get("offline")]
    assert offline and all(e["eventType"] == "Updated" for e in offline)
    # In order and none lost; the one in flight when the socket dropped is sent again after the reconnect.
    seq = [e["seqNo"] for e in sent]
    assert seq == sorted(seq) and sorted(set(seq)) == list(range(len(set(seq))))
    assert len(seq) - len(set(seq)) <= 1
    assert len(frames.calls("sim201", "BootNotification")) == 1  # a reconnect is not a reboot
    stored = TransactionEvent.objects.filter(transaction__charger_transaction_id=tx_id)
    await eventually(lambda: _is(stored.filter(offline=True).acount(), len(offline)))
    await commands.send_command("sim201", "RequestStopTransaction", {"transactionId": tx_id})
    tx = await eventually(lambda: Transaction.objects.filter(charger_transaction_id=tx_id).afirst())
    await eventually(lambda: _stopped(tx.pk))


async def test_trigger_message_unlock_clear_cache_and_data_transfer(simulate, frames):
    state = await simulate("sim201")

    async def trigger(message: str, **more: Any) -> str:
        return (await commands.send_command("sim201", "TriggerMessage", {"requestedMessage": message, **more}))[
            "status"]

    assert await trigger("BootNotification") == "Rejected"  # F06.FR.17: Accepted already
    assert await trigger("Heartbeat") == "Accepted"
    await eventually(lambda: _true(frames.calls("sim201", "Heartbeat")))
    assert await trigger("MeterValues", evse={"id": 2}) == "Accepted"
    meter = (await eventually(lambda: _true(frames.calls("sim201", "MeterValues"))))[0]
    assert meter["evseId"] == 2 and meter["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert await trigger("StatusNotification", evse={"id": 1, "connectorId": 1}) == "Accepted"
    assert await trigger("TransactionEvent") == "Rejected"  # no transaction
    await start("sim201", 1)
    await eventually(lambda: _true(events(frames, "sim201")))
    assert await trigger("TransactionEvent", evse={"id": 1}) == "Accepted"
    await eventually(lambda: _true([e for e in events(frames, "sim201") if e["triggerReason"] == "Trigger"]))
    assert (await commands.send_command("sim201", "UnlockConnector", {"evseId": 1, "connectorId": 1}))[
        "status"] == "OngoingAuthorizedTransaction"
    assert (await commands.send_command("sim201", "UnlockConnector", {"evseId": 2, "connectorId": 1}))[
        "status"] == "Unlocked"
    assert (await commands.send_command("sim201", "UnlockConnector", {"evseId": 7, "connectorId": 1}))[
        "status"] == "UnknownConnector"
    assert await commands.send_command("sim201", "ClearCache", {}) == {"status": "Accepted"}
    answer = await commands.send_command("sim201", "DataTransfer", {"vendorId": VENDOR_ID, "data": {"ping": 1}})
    assert answer == {"status": "Accepted", "data": {"echo": {"ping": 1}}}
    assert (await commands.send_command("sim201", "DataTransfer", {"vendorId": "other"}))["status"] == \
        "UnknownVendorId"
    assert state.link is not None
    assert (await state.link.data_transfer("com.example", "hello", {"a": 1})).status in (
        "Accepted", "UnknownVendorId", "UnknownMessageId", "Rejected")


async def test_pending_boot_is_retried_and_answers_the_csms_meanwhile(simulate, frames, settings):
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    settings.OCPP_HEARTBEAT_INTERVAL = 1  # the interval a Pending answer gives
    state = await simulate("newsim", online=False)
    await eventually(lambda: _true(frames.calls("newsim", "BootNotification")))
    answer = await commands.send_command("newsim", "GetBaseReport", {"requestId": 1, "reportBase": "SummaryInventory"})
    assert answer == {"status": "Accepted"}
    await eventually(lambda: _true(frames.calls("newsim", "NotifyReport")))
    assert not frames.calls("newsim", "StatusNotification")  # nothing else while Pending
    await eventually(lambda: _true(len(frames.calls("newsim", "BootNotification")) >= 2), timeout=4)
    # The next Pending answer says 60 s; staff accept it meanwhile and the CSMS asks for the boot at once.
    settings.OCPP_HEARTBEAT_INTERVAL = 60
    await eventually(lambda: _true(frames.answers("newsim", "BootNotification")[-1]["interval"] == 60), timeout=4)
    assert {a["status"] for a in frames.answers("newsim", "BootNotification")} == {"Pending"}
    assert not state.online
    await Station.objects.filter(pk="newsim").aupdate(registration_status="Accepted")
    assert await commands.send_command("newsim", "TriggerMessage", {"requestedMessage": "BootNotification"}) == {
        "status": "Accepted"}
    await eventually(lambda: _true(state.online))
    await eventually(lambda: _true(frames.calls("newsim", "StatusNotification")))


async def test_basic_auth_password_set_and_reconnect(simulate, frames, settings):
    from asgiref.sync import sync_to_async

    from stations.services.connections import check_station_password, offer_next_password, set_station_password

    settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="pwsim", registration_status="Accepted")
    await sync_to_async(set_station_password)("pwsim", "first-password-0123")
    state = await simulate("pwsim", password="first-password-0123")
    new = "second-password-45678"
    # What the CSMS's rotation does first (stations/commands/device_model.py): offer it beside the current one.
    await sync_to_async(offer_next_password)("pwsim", new)
    answer = await commands.send_command("pwsim", "SetVariables", {"setVariableData": [{
        "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": new}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    await eventually(lambda: _true(state.password == new))
    await eventually(lambda: _true(state.online), timeout=10)
    # It reconnected with the new one (which the connect promoted), without a reboot.
    station = await Station.objects.aget(pk="pwsim")
    assert check_station_password(new, station.password_hash) and not station.next_password_hash
    assert len(frames.calls("pwsim", "BootNotification")) == 1
    assert "ReconfigurationOfSecurityParameters" in [
        e["type"] for e in frames.calls("pwsim", "SecurityEventNotification")]
    # A password the spec's length refuses (16-40) is Rejected.
    answer = await commands.send_command("pwsim", "SetVariables", {"setVariableData": [{
        "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "short"}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Rejected"


async def test_auto_charge_drivers_authorize_and_stop_locally(simulate, frames):
    await simulate("sim201", evses=1, auto_charge=0.3)
    ended = await eventually(lambda: _true([e for e in events(frames, "sim201") if e["eventType"] == "Ended"]),
                             timeout=10)
    token = frames.calls("sim201", "Authorize")[0]["idToken"]
    assert token["type"] == "ISO14443" and token["idToken"].startswith("DEMO-")
    tx_id = ended[0]["transactionInfo"]["transactionId"]
    started = events(frames, "sim201", tx_id)[0]
    assert started["triggerReason"] == "Authorized" and started["idToken"] == token
    assert "remoteStartId" not in started["transactionInfo"]
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    tx = await eventually(lambda: Transaction.objects.filter(charger_transaction_id=tx_id).afirst())
    await eventually(lambda: _stopped(tx.pk))


async def test_password_rotation_from_the_csms(simulate, frames, settings):
    """The admin's rotation (stations.commands.device_model.rotate_password) with the simulator."""
    from asgiref.sync import sync_to_async

    from stations.commands.device_model import rotate_password
    from stations.services.connections import check_station_password, set_station_password

    settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="pwsim", registration_status="Accepted")
    await sync_to_async(set_station_password)("pwsim", "first-password-0123")
    state = await simulate("pwsim", password="first-password-0123")
    rotation = await rotate_password("pwsim", actor="test")
    assert rotation.status == "Accepted" and rotation.promoted
    await eventually(lambda: _true(state.password == rotation.password))
    await back_online(state)
    station = await Station.objects.aget(pk="pwsim")
    assert check_station_password(rotation.password, station.password_hash)
    assert not check_station_password("first-password-0123", station.password_hash)


@pytest.mark.slow
async def test_simulate_charger_command_speaks_2_0_1(server):
    """``manage.py simulate_charger <id> --ocpp 2.0.1``: a process of its own, like ``make demo``'s."""
    from tests.conftest import ROOT, server_database_url

    charger = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "simulate_charger", "cmd201", "--ocpp", "2.0.1", "--connectors", "2",
        "--url", f"{server}/ocpp", cwd=ROOT, env={**os.environ, "DATABASE_URL": server_database_url()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await eventually(lambda: Connector.objects.filter(station_id="cmd201", number=2, status="Available").aexists(),
                         timeout=20)
        station = await Station.objects.aget(pk="cmd201")
        assert station.ocpp_version == "2.0.1" and station.is_online and station.model == "Simulator 201"
    finally:
        charger.terminate()
        out, _ = await charger.communicate()
    assert b"Simulating cmd201 (OCPP 2.0.1) with 2 EVSEs" in out
