"""OCPP 2.0.1 block B, the device model: GetBaseReport and the NotifyReport parts that answer it (stored
as DeviceVariable rows), GetVariables and SetVariables (stations/commands/device_model.py), with the
ocpp library's v201 ChargePoint as the station over a real socket (tests/ocpp201.py). Named after the
OCTT 2.0.1 CSMS test cases (TC_B_06_CSMS ...)."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.v201 import call

from csms.models import Event
from stations.commands import device_model as dm
from stations.errors import DomainError, InvalidValue
from stations.models import DeviceVariable
from stations.services.device_model import VariableRef
from tests.conftest import eventually
from tests.ocpp201 import now_iso

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = "user:agent"


def entry(component: str, variable: str, value: str | None = "1", *, mutability: str = "ReadWrite",
          evse: int | None = None, connector: int | None = None, attribute_type: str = "Actual",
          **characteristics: Any) -> dict[str, Any]:
    """One reportData entry (snake case, as the library's call takes it)."""
    comp: dict[str, Any] = {"name": component}
    if evse is not None:
        comp["evse"] = {"id": evse, **({"connector_id": connector} if connector is not None else {})}
    attribute: dict[str, Any] = {"type": attribute_type, "mutability": mutability}
    if value is not None:
        attribute["value"] = value
    return {"component": comp, "variable": {"name": variable}, "variable_attribute": [attribute],
            "variable_characteristics": {"data_type": "string", "supports_monitoring": False, **characteristics}}


async def report(cp: Any, request_id: int, seq_no: int, tbc: bool, data: list[dict[str, Any]]) -> None:
    await cp.call(call.NotifyReport(request_id=request_id, generated_at=now_iso(), seq_no=seq_no, tbc=tbc,
                                    report_data=data))


async def rows(station_id: str) -> dict[tuple[str, str, int, int, str], DeviceVariable]:
    return {(row.component, row.variable, row.evse, row.connector, row.attribute_type): row
            async for row in DeviceVariable.objects.filter(station_id=station_id)}


async def test_tc_b_13_full_inventory_report_in_parts_is_stored(station201):
    cp = await station201("cs201")
    status, request_id = await dm.request_report("cs201", "FullInventory", actor=ACTOR)
    assert status == "Accepted"
    sent = await cp.wait_for("GetBaseReport")
    assert sent == {"request_id": request_id, "report_base": "FullInventory"}
    await report(cp, request_id, 0, True, [
        entry("OCPPCommCtrlr", "OfflineThreshold", "300", data_type="integer", unit="s", min_limit=0, max_limit=3600),
        entry("SecurityCtrlr", "BasicAuthPassword", None, mutability="WriteOnly"),
    ])
    assert not await Event.objects.filter(kind="station.device_model.reported").aexists()  # not complete yet
    await report(cp, request_id, 1, False, [
        entry("EVSE", "Power", "22000", mutability="ReadOnly", evse=1, data_type="decimal", unit="W"),
        entry("Connector", "ConnectorType", "cType2", mutability="ReadOnly", evse=1, connector=1,
              data_type="OptionList", values_list="cType2,sType2"),
    ])
    stored = await rows("cs201")
    threshold = stored[("OCPPCommCtrlr", "OfflineThreshold", 0, 0, "Actual")]
    assert (threshold.value, threshold.mutability, threshold.data_type, threshold.unit, threshold.min_limit,
            threshold.max_limit, threshold.writable) == ("300", "ReadWrite", "integer", "s", 0, 3600, True)
    password = stored[("SecurityCtrlr", "BasicAuthPassword", 0, 0, "Actual")]
    assert (password.value, password.mutability, password.writable) == ("", "WriteOnly", True)
    assert stored[("EVSE", "Power", 1, 0, "Actual")].writable is False
    connector = stored[("Connector", "ConnectorType", 1, 1, "Actual")]
    assert (connector.value, connector.values_list) == ("cType2", "cType2,sType2")
    done = await Event.objects.aget(kind="station.device_model.reported")
    assert {key: done.data[key] for key in ("stationId", "requestId", "seqNo", "variables", "skipped")} == {
        "stationId": "cs201", "requestId": request_id, "seqNo": 1, "variables": 4, "skipped": 0}


async def test_tc_b_12_configuration_inventory_updates_what_is_stored(station201):
    cp = await station201("cs201")
    status, request_id = await dm.request_report("cs201", "ConfigurationInventory", actor=ACTOR)
    assert status == "Accepted" and (await cp.wait_for("GetBaseReport"))["report_base"] == "ConfigurationInventory"
    await report(cp, request_id, 0, False, [entry("HeartbeatCtrlr", "Interval", "300")])
    await report(cp, request_id + 1, 0, False, [entry("HeartbeatCtrlr", "Interval", "120")])
    stored = await rows("cs201")
    assert len(stored) == 1 and stored[("HeartbeatCtrlr", "Interval", 0, 0, "Actual")].value == "120"
    logged = await Event.objects.filter(kind="station.command").alast()
    assert logged is not None and logged.data["action"] == "GetBaseReport" and logged.actor == ACTOR


async def test_get_custom_report_by_component_and_criteria_is_stored_like_a_base_report(station201):
    cp = await station201("cs201")
    refs = [VariableRef("OCPPCommCtrlr", ""), VariableRef("EVSE", "AvailabilityState", evse=1)]
    status, request_id = await dm.request_custom_report("cs201", refs, ["Available"], actor=ACTOR)
    assert status == "Accepted"
    sent = await cp.wait_for("GetReport")
    assert sent == {"request_id": request_id, "component_criteria": ["Available"], "component_variable": [
        {"component": {"name": "OCPPCommCtrlr"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]}
    await report(cp, request_id, 0, False, [entry("EVSE", "AvailabilityState", "Available", evse=1)])
    assert (await rows("cs201"))[("EVSE", "AvailabilityState", 1, 0, "Actual")].value == "Available"
    cp.answers["GetReport"] = {"status": "EmptyResultSet"}
    status, _ = await dm.request_custom_report("cs201", criteria=["Problem"], actor=ACTOR)
    assert status == "EmptyResultSet"


async def test_large_report_with_a_malformed_entry_keeps_the_rest(station201):
    """A part of 1,200 entries (2 attributes each: 2,400 rows, in statements of 500), one of them
    unreadable (a negative EVSE id the schema lets through) and one repeated: all the others are stored."""
    cp = await station201("cs201")
    data = [{"component": {"name": "Ctrlr"}, "variable": {"name": f"V{n}"},
             "variable_attribute": [{"value": str(n)}, {"type": "Target", "value": str(n + 1)}]} for n in range(1200)]
    data[700]["component"]["evse"] = {"id": -1}
    data.append(entry("Ctrlr", "V3", "again"))
    await report(cp, 7, 0, False, data)
    assert await DeviceVariable.objects.filter(station_id="cs201").acount() == 1199 * 2
    assert (await DeviceVariable.objects.aget(station_id="cs201", variable="V3", attribute_type="Actual")).value == \
        "again"
    assert not await DeviceVariable.objects.filter(station_id="cs201", variable="V700").aexists()
    done = await Event.objects.aget(kind="station.device_model.reported")
    assert (done.data["variables"], done.data["skipped"]) == (1199 * 2 + 1, 1)


async def test_tc_b_06_get_variables_single_value_is_stored(station201):
    cp = await station201("cs201")
    cp.variables[("OCPPCommCtrlr", "OfflineThreshold")] = "300"
    result = await dm.read_variable("cs201", VariableRef("OCPPCommCtrlr", "OfflineThreshold"), actor=ACTOR)
    assert (result.status, result.value) == ("Accepted", "300")
    sent = await cp.wait_for("GetVariables")
    assert sent["get_variable_data"][0]["component"] == {"name": "OCPPCommCtrlr"}
    assert sent["get_variable_data"][0]["variable"] == {"name": "OfflineThreshold"}
    assert sent["get_variable_data"][0].get("attribute_type", "Actual") == "Actual"
    assert (await DeviceVariable.objects.aget(station_id="cs201", variable="OfflineThreshold")).value == "300"


async def test_tc_b_07_get_variables_multiple_values_in_one_request(station201):
    cp = await station201("cs201")
    cp.variables[("OCPPCommCtrlr", "OfflineThreshold")] = "300"
    cp.variables[("AuthCtrlr", "AuthorizeRemoteStart")] = "true"
    refs = [VariableRef("OCPPCommCtrlr", "OfflineThreshold"), VariableRef("AuthCtrlr", "AuthorizeRemoteStart"),
            VariableRef("AuthCtrlr", "Nothing")]
    results = await dm.read_variables("cs201", refs, actor=ACTOR)
    assert [(result.status, result.value) for result in results] == [
        ("Accepted", "300"), ("Accepted", "true"), ("UnknownVariable", None)]
    sent = await cp.wait_for("GetVariables")
    assert [item["variable"]["name"] for item in sent["get_variable_data"]] == [
        "OfflineThreshold", "AuthorizeRemoteStart", "Nothing"]
    stored = await rows("cs201")
    assert {key[1]: row.value for key, row in stored.items()} == {"OfflineThreshold": "300",
                                                                  "AuthorizeRemoteStart": "true"}


async def test_get_variables_unknown_variable_stores_nothing(station201):
    await station201("cs201")
    result = await dm.read_variable("cs201", VariableRef("OCPPCommCtrlr", "UnknownVariable"), actor=ACTOR)
    assert (result.status, result.value) == ("UnknownVariable", None)
    assert not await DeviceVariable.objects.filter(station_id="cs201").aexists()


async def test_get_variables_of_an_evse_component(station201):
    cp = await station201("cs201")
    cp.variables[("EVSE", "AvailabilityState")] = "Available"
    ref = VariableRef("EVSE", "AvailabilityState", evse=2)
    assert (await dm.read_variable("cs201", ref, actor=ACTOR)).value == "Available"
    sent = await cp.wait_for("GetVariables")
    assert sent["get_variable_data"][0]["component"] == {"name": "EVSE", "evse": {"id": 2}}
    assert (await DeviceVariable.objects.aget(station_id="cs201", component="EVSE")).evse == 2


async def test_tc_b_09_set_variables_single_value_is_stored_once_accepted(station201):
    cp = await station201("cs201")
    await report(cp, 1, 0, False, [entry("OCPPCommCtrlr", "OfflineThreshold", "300", data_type="integer")])
    ref = VariableRef("OCPPCommCtrlr", "OfflineThreshold")
    result = await dm.set_variable("cs201", ref, "600", actor=ACTOR)
    assert result.status == "Accepted"
    sent = await cp.wait_for("SetVariables")
    assert sent["set_variable_data"][0]["attribute_value"] == "600"
    assert cp.variables[("OCPPCommCtrlr", "OfflineThreshold")] == "600"
    row = await DeviceVariable.objects.aget(station_id="cs201", variable="OfflineThreshold")
    assert (row.value, row.data_type) == ("600", "integer")  # the report's description stays


async def test_basic_auth_password_is_not_set_as_a_plain_variable(station201):
    cp = await station201("cs201")
    with pytest.raises(InvalidValue):
        await dm.set_variable("cs201", VariableRef("SecurityCtrlr", "BasicAuthPassword"), "x" * 20, actor=ACTOR)
    assert cp.received == [] and not await Event.objects.filter(kind="station.command").aexists()


@pytest.mark.parametrize("status, stored", [("Rejected", "300"), ("RebootRequired", "600")])
async def test_tc_b_11_set_variables_refused_or_after_reboot(station201, status, stored):
    cp = await station201("cs201")
    await report(cp, 1, 0, False, [entry("OCPPCommCtrlr", "OfflineThreshold", "300")])
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": status, "component": item["component"], "variable": item["variable"],
         "attribute_status_info": {"reason_code": "InvalidValue"}} for item in request["set_variable_data"]]}
    result = await dm.set_variable("cs201", VariableRef("OCPPCommCtrlr", "OfflineThreshold"), "600", actor=ACTOR)
    assert (result.status, result.reason) == (status, "InvalidValue")
    assert (await DeviceVariable.objects.aget(station_id="cs201")).value == stored


async def test_device_model_commands_refused_for_a_1_6_station(charger_factory):
    await charger_factory("fora072", connectors=1)
    with pytest.raises(DomainError):
        await dm.request_report("fora072", actor=ACTOR)

    async def nothing_stored():
        return not await DeviceVariable.objects.aexists()

    assert await eventually(nothing_stored)


async def test_write_only_values_are_never_stored(station201):
    """A WriteOnly attribute (a secret) is stored without its value, whether a report or a set brings it."""
    cp = await station201("cs201")
    await report(cp, 1, 0, False, [entry("ISO15118Ctrlr", "SeccId", "from-the-report", mutability="WriteOnly"),
                                   entry("OCPPCommCtrlr", "OfflineThreshold", "300")])
    assert (await DeviceVariable.objects.aget(station_id="cs201", variable="SeccId")).value == ""
    result = await dm.set_variable("cs201", VariableRef("ISO15118Ctrlr", "SeccId"), "a-secret-set", actor=ACTOR)
    assert result.status == "Accepted" and cp.variables[("ISO15118Ctrlr", "SeccId")] == "a-secret-set"
    assert (await DeviceVariable.objects.aget(station_id="cs201", variable="SeccId")).value == ""
    await dm.set_variable("cs201", VariableRef("OCPPCommCtrlr", "OfflineThreshold"), "600", actor=ACTOR)
    assert (await DeviceVariable.objects.aget(station_id="cs201", variable="OfflineThreshold")).value == "600"


async def test_a_station_s_attributes_are_capped(station201, settings, caplog):
    """OCPP_DEVICE_MODEL_MAX_ATTRIBUTES: new attributes beyond it are skipped (the event's skipped), updates
    of stored ones are kept, and the report logs it once."""
    settings.OCPP_DEVICE_MODEL_MAX_ATTRIBUTES = 5
    cp = await station201("cs201")
    caplog.set_level("WARNING", logger="stations.services.device_model")
    await report(cp, 7, 0, True, [entry("C", f"V{n}", "0") for n in range(4)])
    await report(cp, 7, 1, True, [entry("C", "V0", "updated")] + [entry("C", f"V{n}", "1") for n in range(4, 7)])
    await report(cp, 7, 2, False, [entry("C", "V9", "2")])
    stored = await rows("cs201")
    assert sorted(variable for _, variable, *_ in stored) == ["V0", "V1", "V2", "V3", "V4"]
    assert stored[("C", "V0", 0, 0, "Actual")].value == "updated"
    done = await Event.objects.aget(kind="station.device_model.reported")
    assert (done.data["variables"], done.data["skipped"]) == (6, 3)
    assert len([r for r in caplog.records if "OCPP_DEVICE_MODEL_MAX_ATTRIBUTES" in r.getMessage()]) == 1
