"""OCPP 2.0.1 block A, A01: the CSMS rotates a station's basic-auth password with SetVariables
(SecurityCtrlr.BasicAuthPassword; stations/commands/device_model.rotate_password). The station, the ocpp
library's v201 ChargePoint over a real socket (tests/ocpp201.py), answers, reconnects with the new password
and is accepted; the old one is refused. Named after the OCTT 2.0.1 test cases TC_A_09/TC_A_10."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from ocpp.routing import on
from ocpp.v201 import call_result

from csms.models import Event
from stations import services
from stations.commands import device_model as dm
from stations.models import Station
from stations.services.connections import check_station_password
from tests.conftest import eventually
from tests.ocpp201 import Station201, connect201

pytestmark = pytest.mark.django_db(transaction=True)

OLD = "the-old-station-password-201"
ACTOR = "user:agent"
PASSWORD_KEY = ("SecurityCtrlr", "BasicAuthPassword")


@pytest.fixture
def profile_1(fast_settings):
    fast_settings.OCPP_REQUIRE_AUTH = True
    Station.objects.create(pk="cs201")
    services.set_station_password("cs201", OLD)
    return fast_settings


async def refused(server: str, password: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as refusal:
        await connect201(f"{server}/ocpp", "cs201", password)
    return refusal.value.response.status_code


async def offline() -> bool:
    return not (await Station.objects.aget(pk="cs201")).is_online


async def test_tc_a_09_password_rotated_station_reconnects_with_the_new_one(server, station201, profile_1, caplog):
    caplog.set_level(logging.DEBUG)
    cp = await station201("cs201", password=OLD)
    rotation = await dm.rotate_password("cs201", actor=ACTOR)
    assert (rotation.status, rotation.promoted, rotation.pending) == ("Accepted", True, False)
    new = rotation.password
    assert 16 <= len(new) <= 40 and new.isalnum() and new != OLD
    sent = await cp.wait_for("SetVariables")
    assert sent["set_variable_data"] == [{"component": {"name": "SecurityCtrlr"},
                                          "variable": {"name": "BasicAuthPassword"}, "attribute_value": new}]
    assert cp.variables[PASSWORD_KEY] == new
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password(new, station.password_hash) and station.next_password_hash == ""
    # A01: the station disconnects and reconnects with the new password; the old one no longer works.
    await cp._connection.close()
    await eventually(offline)
    assert await refused(server, OLD) == 403
    again = await station201("cs201", password=new)
    assert (await Station.objects.aget(pk="cs201")).is_online and again.received == []
    # Recorded without the password; the password change itself is an event of its own.
    command = await Event.objects.aget(kind="station.command")
    assert command.actor == ACTOR and command.data["outcome"] == "ok" and new not in str(command.data)
    assert command.data["payload"]["setVariableData"][0]["attributeValue"] == "(new password)"
    assert await Event.objects.filter(kind="station.password.set", actor=ACTOR).acount() == 1
    # Nor is it logged (the command's own lines are: the capture works).
    assert any("SetVariables" in record.getMessage() for record in caplog.records)
    assert not [record for record in caplog.records if new in record.getMessage()]


async def test_tc_a_10_password_rotation_rejected_keeps_the_old_one(server, station201, profile_1):
    cp = await station201("cs201", password=OLD)
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "Rejected", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    rotation = await dm.rotate_password("cs201", actor=ACTOR)
    assert (rotation.status, rotation.password, rotation.promoted, rotation.pending) == ("Rejected", "", False, False)
    offered = (await cp.wait_for("SetVariables"))["set_variable_data"][0]["attribute_value"]
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password(OLD, station.password_hash) and station.next_password_hash == ""
    await cp._connection.close()
    await eventually(offline)
    assert await refused(server, offered) == 403
    await station201("cs201", password=OLD)
    assert not await Event.objects.filter(kind="station.password.set", actor=ACTOR).aexists()


async def test_password_taken_after_a_reboot_both_work_until_the_station_uses_the_new_one(
    server, station201, profile_1
):
    cp = await station201("cs201", password=OLD)
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "RebootRequired", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    rotation = await dm.rotate_password("cs201", actor=ACTOR)
    assert (rotation.status, rotation.promoted, rotation.pending) == ("RebootRequired", False, True)
    # Until its reboot the station still connects with the old password...
    await cp._connection.close()
    await eventually(offline)
    cp = await station201("cs201", password=OLD)
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password(OLD, station.password_hash) and station.next_password_hash
    # ...and its first connect with the new one makes it the password: the old one stops working.
    await cp._connection.close()
    await eventually(offline)
    await station201("cs201", password=rotation.password)
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password(rotation.password, station.password_hash) and station.next_password_hash == ""
    assert await Event.objects.filter(kind="station.password.set").acount() == 1  # by the connect: no actor


class SlowStation(Station201):
    """Answers SetVariables only after the CSMS stopped waiting (it has taken the password meanwhile)."""

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **extra: Any) -> call_result.SetVariables:
        await asyncio.sleep(2)
        return super().on_set_variables(set_variable_data, **extra)


async def test_rotation_unanswered_keeps_both_until_the_station_connects_with_the_new_one(
    server, station201, profile_1, settings
):
    settings.OCPP_COMMAND_TIMEOUT = 1
    cp = await station201("cs201", password=OLD, cls=SlowStation)
    rotation = await dm.rotate_password("cs201", actor=ACTOR)
    assert (rotation.status, rotation.pending, rotation.promoted) == ("Timeout", True, False)
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password(OLD, station.password_hash) and station.next_password_hash
    command = await Event.objects.aget(kind="station.command")
    assert command.data["outcome"] == "timeout" and rotation.password not in str(command.data)
    await cp._connection.close()
    await eventually(offline)
    await station201("cs201", password=rotation.password)
    assert check_station_password(rotation.password, (await Station.objects.aget(pk="cs201")).password_hash)
    assert await refused(server, OLD) == 403


async def test_password_set_from_the_admin_drops_a_pending_rotation(server, station201, profile_1):
    cp = await station201("cs201", password=OLD)
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "RebootRequired", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    rotation = await dm.rotate_password("cs201", actor=ACTOR)
    await sync_to_async(services.set_station_password)("cs201", "a-third-password-set-by-hand")
    await cp._connection.close()
    await eventually(offline)
    assert await refused(server, rotation.password) == 403


async def test_a_rotation_waiting_refuses_another_until_a_password_is_set_by_hand(server, station201, profile_1):
    """A rotation the station took without confirming it (RebootRequired) is not overwritten by a second one:
    a second the station refused would drop the password it holds and lock it out."""
    cp = await station201("cs201", password=OLD)
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "RebootRequired", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    first = await dm.rotate_password("cs201", actor=ACTOR)
    assert first.pending
    sent = len(cp.received)
    with pytest.raises(services.Conflict, match="set the station's password by hand"):
        await dm.rotate_password("cs201", actor=ACTOR)
    assert len(cp.received) == sent  # nothing sent
    # The station still gets in with the password it holds, which then becomes its password.
    await cp._connection.close()
    await eventually(offline)
    cp = await station201("cs201", password=first.password)
    assert check_station_password(first.password, (await Station.objects.aget(pk="cs201")).password_hash)
    # With no rotation waiting, the next one goes out.
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "RebootRequired", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    assert (await dm.rotate_password("cs201", actor=ACTOR)).pending
    # A password set by hand cancels the waiting one: a rotation may start again.
    await sync_to_async(services.set_station_password)("cs201", "a-third-password-set-by-hand")
    assert (await dm.rotate_password("cs201", actor=ACTOR)).pending
