"""F Remote control, B Reset, C ClearCache, P DataTransfer for OCPP 2.0.1 stations, over real sockets.

The station is the ocpp library's v201 ChargePoint (tests/ocpp201.py); the commands come from the mobile
API (both endpoints), the remote-command service and the HTTP API, as they do for 1.6 chargers. Test names
carry the OCTT 2.0.1 CSMS test case ids (OCPP 2.0.1 Part 6).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from ocpp.v201 import call

from csms.models import Event
from stations import commands
from stations import ocpp as adapters
from stations.errors import Conflict, InvalidValue
from stations.models import IdTag, RemoteStartRequest, Transaction
from tests.admin_support import make_support
from tests.conftest import http_json
from tests.ocpp201 import Station201, energy
from tests.test_admin import ServerLikeAsyncClient, post

pytestmark = pytest.mark.django_db(transaction=True)


async def _ready(station201: Any, station_id: str = "cs201", evses: int = 1) -> Station201:
    cp = await station201(station_id)
    for evse in range(1, evses + 1):
        await cp.status(evse, "Available")
    return cp


async def _token(token: str = "APP-TOKEN", token_type: str = "Central") -> None:
    await IdTag.objects.acreate(id_tag=token, type=token_type, status="Accepted")


async def _start_from_app(client: Any, cp: Station201, station_id: str = "cs201", evse: int = 1,
                          token: str = "APP-TOKEN") -> tuple[str, dict[str, Any]]:
    """startCharging; returns its correlationId and the RequestStartTransaction the station got."""
    reply = await client.result("startCharging", {"stationId": station_id, "connectorId": evse, "idTag": token})
    request = await cp.wait_for("RequestStartTransaction")
    return reply["correlationId"], request


# --- F02 / F01: remote start -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_tc_f_02_remote_start_first_carries_the_correlation_id(station201, mobile, path) -> None:
    """TC_F_02_CSMS: RequestStartTransaction (idToken with the token's type, evseId, remoteStartId); the
    TransactionEvent that names the remoteStartId is the start the app asked for (transaction.started with
    its correlationId), then a remote stop with the station's own transactionId (TC_E_21_CSMS)."""
    await _token()
    cp = await _ready(station201)
    client = await mobile(path)
    await client.result("subscribe", {"stationId": "cs201", "events": ["transaction.*", "remote.*"]})
    correlation_id, request = await _start_from_app(client, cp)
    assert request["id_token"] == {"id_token": "APP-TOKEN", "type": "Central"} and request["evse_id"] == 1
    remote_start_id = request["remote_start_id"]
    asked = await RemoteStartRequest.objects.aget(pk=remote_start_id)
    assert asked.correlation_id == correlation_id and asked.station_id == "cs201"
    assert client.field(await client.event("remote.start.result", correlationId=correlation_id),
                        "status") == "Accepted"

    await cp.transaction_event("Started", "TX-F02", trigger_reason="RemoteStart", token="APP-TOKEN",
                               remote_start_id=remote_start_id, charging_state="Charging",
                               meter_value=[energy(1000)])
    started = await client.event("transaction.started", correlationId=correlation_id)
    tx_id = client.field(started, "transactionId")
    assert client.field(started, "idTag") == "APP-TOKEN" and client.field(started, "connectorId") == 1
    assert isinstance(tx_id, str if path == "/mobile-client" else int)

    stop = await client.result("stopCharging", {"transactionId": tx_id})
    assert stop["transactionId"] == tx_id and stop["status"] in ("pending", "Accepted")
    assert (await cp.wait_for("RequestStopTransaction"))["transaction_id"] == "TX-F02"
    assert client.field(await client.event("remote.stop.result", transactionId=tx_id), "status") == "Accepted"
    await cp.transaction_event("Ended", "TX-F02", trigger_reason="RemoteStop", stopped_reason="Remote",
                               meter_value=[energy(2500, context="Transaction.End")])
    stopped = await client.event("transaction.stopped", transactionId=tx_id)
    assert client.field(stopped, "correlationId") == stop["correlationId"]
    assert client.field(stopped, "energy") == 1500


async def test_tc_f_01_remote_start_cable_plugin_first(station201, mobile) -> None:
    """TC_F_01_CSMS: the EV is plugged in (Occupied, a transaction started without a token); the app's start
    is sent to the Occupied EVSE and the Updated event with its remoteStartId makes it the app's start."""
    await _token()
    cp = await _ready(station201)
    await cp.status(1, "Occupied")
    await cp.transaction_event("Started", "TX-F01", trigger_reason="CablePluggedIn", charging_state="EVConnected")
    client = await mobile("/ws")
    await client.result("subscribe", {"stationId": "cs201", "events": ["transaction.*"]})
    correlation_id, request = await _start_from_app(client, cp)
    await cp.transaction_event("Updated", "TX-F01", trigger_reason="RemoteStart", token="APP-TOKEN",
                               remote_start_id=request["remote_start_id"], charging_state="Charging")
    started = await client.event("transaction.started", correlationId=correlation_id)
    tx = await Transaction.objects.aget(charger_transaction_id="TX-F01")
    assert started["data"]["transactionId"] == tx.pk and tx.start_correlation_id == correlation_id


async def test_a_rejected_remote_start_frees_the_evse(station201, mobile) -> None:
    """The station rejects the start: the app hears Rejected and the EVSE is free for the next start."""
    await _token()
    cp = await _ready(station201)
    cp.answers["RequestStartTransaction"] = {"status": "Rejected"}
    client = await mobile("/mobile-client")
    reply = await client.result("startCharging", {"stationId": "cs201", "connectorId": 1, "idTag": "APP-TOKEN"})
    assert reply["status"] == "Rejected"
    assert not await RemoteStartRequest.objects.filter(station_id="cs201").aexists()  # forgotten: free again
    cp.answers.pop("RequestStartTransaction")
    assert (await client.result("startCharging", {"stationId": "cs201", "connectorId": 1,
                                                  "idTag": "APP-TOKEN"}))["status"] == "Accepted"


async def test_a_token_without_a_row_is_sent_as_central_and_its_row_type_otherwise(station201) -> None:
    cp = await _ready(station201, evses=2)
    await _token("CARD-1", "ISO14443")
    assert await commands.remote_start("cs201", 1, "NO-ROW") == "Accepted"
    assert (await cp.wait_for("RequestStartTransaction"))["id_token"] == {"id_token": "NO-ROW", "type": "Central"}
    assert await commands.remote_start("cs201", 2, "CARD-1") == "Accepted"
    second = await cp.wait_for("RequestStartTransaction", 2)
    assert second["id_token"] == {"id_token": "CARD-1", "type": "ISO14443"} and second["evse_id"] == 2
    assert second["remote_start_id"] != (await cp.wait_for("RequestStartTransaction"))["remote_start_id"]


async def test_remote_start_on_an_evse_the_station_does_not_have_is_not_sent(station201) -> None:
    cp = await _ready(station201)
    with pytest.raises(commands.NotFound, match="Unknown connector 5 on station cs201"):
        await commands.remote_start("cs201", 5, "APP-TOKEN")
    assert not [name for name, _ in cp.received if name == "RequestStartTransaction"]


# --- F05 Unlock, F06 Trigger ----------------------------------------------------------------------

async def test_tc_f_06_unlock_connector(station201, server, keys) -> None:
    """TC_F_06_CSMS: UnlockConnector with evseId and connectorId; the answer's status as the station said."""
    cp = await _ready(station201)
    status, answer = await http_json(server, "POST", "/api/stations/cs201/commands/unlock", keys["operator"],
                                     {"connector": 1})
    assert (status, answer) == (200, {"status": "Unlocked"})
    assert await cp.wait_for("UnlockConnector") == {"evse_id": 1, "connector_id": 1}
    cp.answers["UnlockConnector"] = {"status": "UnknownConnector"}
    answer = await commands.operate("cs201", "unlock", {"connector": 1, "connector_id": 3}, actor="test")
    assert answer == {"status": "UnknownConnector"}
    assert await cp.wait_for("UnlockConnector", 2) == {"evse_id": 1, "connector_id": 3}


@pytest.mark.parametrize("message, connector, expected", [
    ("StatusNotification", 1, {"requested_message": "StatusNotification", "evse": {"id": 1, "connector_id": 1}}),
    ("Heartbeat", None, {"requested_message": "Heartbeat"}),
    ("TransactionEvent", 1, {"requested_message": "TransactionEvent", "evse": {"id": 1}}),
    ("MeterValues", 1, {"requested_message": "MeterValues", "evse": {"id": 1}}),
    ("MeterValues", None, {"requested_message": "MeterValues"}),  # TC_F_12_CSMS: all EVSE
    ("TransactionEvent", None, {"requested_message": "TransactionEvent"}),  # TC_F_14_CSMS
    ("BootNotification", None, {"requested_message": "BootNotification"}),
])
async def test_tc_f_12_13_14_trigger_message(station201, message, connector, expected) -> None:
    """TC_F_12_CSMS (MeterValues, all EVSE), TC_F_13/14_CSMS (TransactionEvent, one EVSE / all) and the other
    triggers: TriggerMessage with 2.0.1's requestedMessage values, evse for one EVSE, none for all."""
    cp = await _ready(station201)
    params: dict[str, Any] = {"message": message}
    if connector is not None:
        params["connector"] = connector
    assert await commands.operate("cs201", "trigger_message", params, actor="test") == {"status": "Accepted"}
    assert await cp.wait_for("TriggerMessage") == expected


# --- B11/B12 Reset ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ({"type": "OnIdle"}, {"type": "OnIdle"}),  # TC_B_20_CSMS
    ({"type": "Immediate"}, {"type": "Immediate"}),  # TC_B_22_CSMS
    ({"type": "Soft"}, {"type": "OnIdle"}),  # 1.6's words mapped
    ({"type": "Hard"}, {"type": "Immediate"}),
    ({"type": "OnIdle", "evse": 1}, {"type": "OnIdle", "evse_id": 1}),  # TC_B_25_CSMS
])
async def test_tc_b_20_22_25_reset(station201, server, keys, given, expected) -> None:
    cp = await _ready(station201)
    status, answer = await http_json(server, "POST", "/api/stations/cs201/commands/reset", keys["operator"], given)
    assert (status, answer) == (200, {"status": "Accepted"})
    assert await cp.wait_for("Reset") == expected
    event = await Event.objects.filter(kind="station.command", station_id="cs201").alast()
    assert event is not None and event.data["action"] == "Reset" and event.data["answer"] == {"status": "Accepted"}


async def test_tc_b_21_reset_on_idle_scheduled_during_a_transaction(station201) -> None:
    """TC_B_21_CSMS: OnIdle during a transaction is Scheduled; the station ends it, then reboots."""
    cp = await _ready(station201)
    await cp.transaction_event("Started", "TX-B21", token="APP-TOKEN", charging_state="Charging")
    cp.answers["Reset"] = {"status": "Scheduled"}
    assert await commands.operate("cs201", "reset", {"type": "OnIdle"}, actor="test") == {"status": "Scheduled"}
    await cp.transaction_event("Ended", "TX-B21", trigger_reason="EVCommunicationLost",
                               stopped_reason="EVDisconnected", charging_state="Idle")
    assert (await cp.boot("RemoteReset")).status == "Accepted"
    tx = await Transaction.objects.aget(charger_transaction_id="TX-B21")
    assert tx.stopped_at is not None


# --- C ClearCache ----------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["Accepted", "Rejected"])
async def test_tc_c_37_38_clear_cache(station201, server, keys, answer) -> None:
    """TC_C_37_CSMS (Accepted) / TC_C_38_CSMS (Rejected): ClearCache and the station's word for it."""
    cp = await _ready(station201)
    cp.answers["ClearCache"] = {"status": answer}
    status, reply = await http_json(server, "POST", "/api/stations/cs201/commands/clear_cache", keys["operator"], {})
    assert (status, reply) == (200, {"status": answer})
    assert await cp.wait_for("ClearCache") == {}


# --- P DataTransfer --------------------------------------------------------------------------------

async def test_tc_p_01_data_transfer_to_the_station(station201) -> None:
    """TC_P_01_CSMS: DataTransfer from the CSMS (vendorId, messageId, data as sent); the station's answer back."""
    cp = await _ready(station201)
    cp.answers["DataTransfer"] = {"status": "Accepted", "data": {"echo": [1, 2]}}
    answer = await commands.operate("cs201", "data_transfer",
                                    {"vendor_id": "com.example", "message_id": "hello", "data": '{"a": 1}'},
                                    actor="test")
    assert answer == {"status": "Accepted", "data": {"echo": [1, 2]}}
    assert await cp.wait_for("DataTransfer") == {"vendor_id": "com.example", "message_id": "hello",
                                                 "data": '{"a": 1}'}


async def test_tc_p_02_data_transfer_from_the_station(station201) -> None:
    """TC_P_02_CSMS: a station's DataTransfer for a vendor the CSMS does not know: UnknownVendorId."""
    cp = await _ready(station201)
    answer = await cp.call(call.DataTransfer(vendor_id="com.unknown", message_id="x", data={"any": ["json"]}))
    assert answer.status == "UnknownVendorId"


# --- What a version cannot say ---------------------------------------------------------------------

async def test_device_model_commands_are_refused_for_a_16_charger(charger_factory) -> None:
    charger = await charger_factory("fora072", connectors=1)
    with pytest.raises(Conflict, match="get_base_report cannot be sent to an OCPP 1.6 station"):
        await commands.operate("fora072", "get_base_report", {"report_base": "FullInventory"}, actor="test")
    with pytest.raises(InvalidValue, match="an OCPP 1.6 station resets only as a whole"):
        await commands.operate("fora072", "reset", {"type": "OnIdle", "evse": 1}, actor="test")
    with pytest.raises(InvalidValue, match="connectorId must be 1 for an OCPP 1.6 station"):
        await commands.operate("fora072", "unlock", {"connector": 1, "connector_id": 2}, actor="test")
    with pytest.raises(InvalidValue, match="OCPP 1.6 has no TransactionEvent to trigger"):
        await commands.operate("fora072", "trigger_message", {"message": "TransactionEvent"}, actor="test")
    # 2.0.1's words reach a 1.6 charger as its own (OnIdle = Soft).
    assert await commands.operate("fora072", "reset", {"type": "OnIdle"}, actor="test") == {"status": "Accepted"}
    assert charger.state is not None


async def test_get_configuration_reads_a_16_key_as_its_201_variable(station201) -> None:
    """get_configuration / change_configuration for a 2.0.1 station: GetVariables / SetVariables of the variable
    the specification names for the 1.6 key (or Component.Variable), read back as configuration rows."""
    cp = await station201("cs201")
    cp.variables[("OCPPCommCtrlr", "HeartbeatInterval")] = "300"
    answer = await commands.operate("cs201", "change_configuration", {"key": "HeartbeatInterval", "value": "60"},
                                    actor="test")
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert cp.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "60"
    answer = await commands.operate("cs201", "get_configuration",
                                    {"keys": ["HeartbeatInterval", "TxCtrlr.Nope"]}, actor="test")
    assert adapters.BY_VERSION["2.0.1"].configuration(answer) == (
        [{"key": "HeartbeatInterval", "value": "60", "readonly": False}], ["TxCtrlr.Nope"])
    event = await Event.objects.filter(kind="station.command", station_id="cs201").alast()
    assert event is not None and event.data["answer"] == {"variables": 2, "accepted": 1}  # a summary, no values
    with pytest.raises(InvalidValue, match="name it Component.Variable"):
        await commands.operate("cs201", "get_configuration", {"keys": ["NoSuchKey"]}, actor="test")


# --- The admin's "Act on the charger" panel --------------------------------------------------------

def _check_the_panels() -> None:
    from stations.admin import operations
    from stations.models import Station

    stations = {station.ocpp_version: station for station in Station.objects.filter(pk__in=["cs201", "fora072"])}
    names = {version: [op.name for op in operations.panel(station)] for version, station in stations.items()}
    device_model = {"get_base_report", "get_report", "get_variables", "set_variables"}
    assert device_model <= set(names["2.0.1"]) and not device_model & set(names["1.6"])
    assert set(names["1.6"]) == set(names["2.0.1"]) - device_model
    # The forms speak the version's words: OnIdle/Immediate and an EVSE for 2.0.1, Soft/Hard and none for 1.6.
    reset = operations.form_of(operations.REGISTRY["reset"])
    form_201, form_16 = reset(stations["2.0.1"]), reset(stations["1.6"])
    assert [value for value, _ in form_201.fields["type"].choices] == ["OnIdle", "Immediate"]
    assert [value for value, _ in form_16.fields["type"].choices] == ["Soft", "Hard"]
    assert "evse" in form_201.fields and "evse" not in form_16.fields
    report_16 = operations.form_of(operations.REGISTRY["get_base_report"])(stations["1.6"])
    assert report_16.unavailable == "An OCPP 1.6 station has no request a base report."


@pytest.fixture
async def admin_agent(transactional_db: None) -> ServerLikeAsyncClient:
    client = ServerLikeAsyncClient()
    await client.aforce_login(await sync_to_async(make_support)())
    return client


async def test_the_admin_panel_offers_what_the_station_version_has(station201, charger_factory, admin_agent) -> None:
    cp = await _ready(station201)
    await charger_factory("fora072", connectors=1)
    await sync_to_async(_check_the_panels)()

    page = await post(admin_agent, "cs201", "reset", {"type": "Immediate", "evse": "1"})
    assert "Station cs201: Reset: the charger answered Accepted" in page
    assert await cp.wait_for("Reset") == {"type": "Immediate", "evse_id": 1}
    page = await post(admin_agent, "cs201", "get_base_report", {"report_base": "FullInventory"})
    assert "GetBaseReport: the charger answered Accepted" in page
    assert (await cp.wait_for("GetBaseReport"))["report_base"] == "FullInventory"
    page = await post(admin_agent, "cs201", "remote_start", {"connector": "1", "id_tag": "SUPPORT-1"})
    assert "RequestStartTransaction on connector 1: the charger answered Accepted" in page
    request = await cp.wait_for("RequestStartTransaction")
    asked = await RemoteStartRequest.objects.aget(pk=request["remote_start_id"])
    assert asked.actor.startswith("user:") and asked.actor_name == "agent"  # the staff member who asked


def _start_choices(station_id: str) -> tuple[list[Any], str]:
    from stations.admin import operations
    from stations.models import Station

    form = operations.RemoteStartForm(Station.objects.get(pk=station_id))
    return list(form.fields["connector"].choices), form.unavailable


async def test_the_admin_offers_a_start_on_an_evse_plugged_in_first(station201) -> None:
    """F01 from the admin: an EVSE whose transaction has no token yet (cable plugged in first) is offered;
    one whose transaction has a token is not."""
    cp = await _ready(station201, evses=2)
    await cp.status(1, "Occupied")
    await cp.transaction_event("Started", "TX-PLUG", trigger_reason="CablePluggedIn", charging_state="EVConnected")
    await cp.transaction_event("Started", "TX-CARD", evse_id=2, token="CARD", charging_state="Charging")
    choices, unavailable = await sync_to_async(_start_choices)("cs201")
    assert choices == [(1, "Connector 1 (Occupied)")] and unavailable == ""


@pytest.mark.parametrize("command, params", [
    ("set_variables", {"component": "SecurityCtrlr", "variable": "BasicAuthPassword", "value": "x" * 20}),
    ("set_variables", {"component": "securityctrlr", "variable": "basicauthpassword", "value": "x" * 20}),
    ("change_configuration", {"key": "SecurityCtrlr.BasicAuthPassword", "value": "x" * 20}),
    # The action as it is (station_command, the HTTP API's raw form) too.
    ("SetVariables", {"setVariableData": [{"component": {"name": "SecurityCtrlr"},
                                           "variable": {"name": "BasicAuthPassword"}, "attributeValue": "x" * 20}]}),
])
async def test_the_password_is_no_variable_a_command_sets(station201, command, params) -> None:
    """Its value would land in the command's event and not become the password the CSMS checks."""
    cp = await _ready(station201)
    with pytest.raises(InvalidValue, match="SecurityCtrlr.BasicAuthPassword is set by rotating"):
        await commands.operate("cs201", command, params, actor="test")
    assert not [name for name, _ in cp.received if name == "SetVariables"]
    assert not await Event.objects.filter(kind="station.command").aexists()
