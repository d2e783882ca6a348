"""The admin of a 2.0.1 station's device model (stations/admin/device_model.py) with Django's test
client, against a 2.0.1 station on a real socket (tests/ocpp201.py): the searchable table, a set and a
read per variable, "Get base report", and the password's rotation shown once. A 1.6 station keeps its
configuration page."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from stations import services
from stations.models import DeviceVariable, Station
from stations.services.connections import check_station_password
from tests.admin_support import PASSWORD, make_support
from tests.test_admin import ServerLikeAsyncClient
from tests.test_ocpp201_device_model import entry, report

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def agent(transactional_db) -> ServerLikeAsyncClient:
    client = ServerLikeAsyncClient()
    await client.aforce_login(await sync_to_async(make_support)())
    return client


@pytest.fixture
async def operator(transactional_db) -> ServerLikeAsyncClient:
    """Staff who may operate stations and set their passwords (support plus change_station)."""
    def make() -> User:
        user = make_support("operator")
        user.user_permissions.add(Permission.objects.get(codename="change_station"))
        return user

    client = ServerLikeAsyncClient()
    await client.aforce_login(await sync_to_async(make)())
    return client


@pytest.fixture
async def viewer(transactional_db) -> ServerLikeAsyncClient:
    """Staff who may look at stations but not operate them."""
    def make() -> User:
        user = User.objects.create_user("viewer", "viewer@example.com", PASSWORD, is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_station"))
        return user

    client = ServerLikeAsyncClient()
    await client.aforce_login(await sync_to_async(make)())
    return client


def url(name: str, station_id: str = "cs201") -> str:
    return reverse(f"admin:stations_station_{name}", args=[station_id])


async def follow(client: ServerLikeAsyncClient, path: str, data: dict[str, str]) -> str:
    response = await client.post(path, data)
    assert response.status_code == 302, response.status_code
    return (await client.get(response["Location"])).content.decode()


async def test_station_page_offers_the_device_model_for_2_0_1_and_configuration_for_1_6(
    station201, charger_factory, operator
):
    agent = operator
    await station201("cs201")
    page = (await agent.get(url("change"))).content.decode()
    assert url("device_model") in page and 'id="op-get-base-report"' in page and 'id="op-rotate-password"' in page
    assert 'id="op-read-configuration"' not in page
    await charger_factory("fora072", connectors=1)
    page = (await agent.get(url("change", "fora072"))).content.decode()
    assert 'id="op-read-configuration"' in page and 'id="op-rotate-password"' not in page
    assert url("device_model", "fora072") not in page
    # The 1.6 station's device model address leads to its configuration page.
    response = await agent.get(url("device_model", "fora072"))
    assert response.status_code == 302 and response["Location"] == url("configuration", "fora072")


async def test_device_model_table_search_set_and_read(station201, agent):
    cp = await station201("cs201")
    await report(cp, 1, 0, False, [
        entry("OCPPCommCtrlr", "OfflineThreshold", "300", unit="s"),
        entry("EVSE", "Power", "22000", mutability="ReadOnly", evse=1, unit="W"),
        entry("SecurityCtrlr", "BasicAuthPassword", None, mutability="WriteOnly"),
    ])
    page = (await agent.get(url("device_model"))).content.decode()
    assert '<table id="device-model">' in page and "3 variable attributes stored" in page
    assert re.search(r"<code>OfflineThreshold</code>.*?<td>300</td>\s*<td>ReadWrite</td>\s*<td>s</td>", page, re.S)
    assert 'aria-label="New value of EVSE.Power"' not in page  # read-only: no set form
    assert 'aria-label="New value of OCPPCommCtrlr.OfflineThreshold"' in page
    assert 'aria-label="New value of SecurityCtrlr.BasicAuthPassword"' not in page and "set by Rotate password" in page
    searched = (await agent.get(url("device_model") + "?q=power")).content.decode()
    assert "<code>Power</code>" in searched and "OfflineThreshold" not in searched
    identity = {"component": "OCPPCommCtrlr", "component_instance": "", "evse": "0", "connector": "0",
                "variable": "OfflineThreshold", "variable_instance": "", "attribute_type": "Actual"}
    page = await follow(agent, url("device_model"), {**identity, "action": "set", "value": "600", "q": "Offline"})
    assert "SetVariables OCPPCommCtrlr.OfflineThreshold: the charger answered Accepted" in page
    assert (await cp.wait_for("SetVariables"))["set_variable_data"][0]["attribute_value"] == "600"
    assert (await DeviceVariable.objects.aget(variable="OfflineThreshold")).value == "600"
    cp.variables[("OCPPCommCtrlr", "OfflineThreshold")] = "900"
    page = await follow(agent, url("device_model"), {**identity, "action": "read"})
    assert "GetVariables OCPPCommCtrlr.OfflineThreshold: the charger answered Accepted, value &#x27;900&#x27;" in page
    assert (await DeviceVariable.objects.aget(variable="OfflineThreshold")).value == "900"


async def test_get_base_report_button(station201, agent):
    cp = await station201("cs201")
    page = await follow(agent, url("device_model"), {"action": "report", "report_base": "ConfigurationInventory"})
    assert "GetBaseReport ConfigurationInventory: the charger answered Accepted" in page
    assert (await cp.wait_for("GetBaseReport"))["report_base"] == "ConfigurationInventory"
    # The station page's button asks for the full inventory.
    await follow(agent, url("device_model"), {"action": "report", "report_base": "FullInventory"})
    assert (await cp.wait_for("GetBaseReport", 2))["report_base"] == "FullInventory"


async def test_rotate_password_shows_the_new_one_once(station201, operator, fast_settings):
    agent = operator
    fast_settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="cs201")
    await sync_to_async(services.set_station_password)("cs201", "the-old-station-password")
    cp = await station201("cs201", password="the-old-station-password")
    response = await agent.post(url("rotate_password"))
    assert response.status_code == 302
    shown = (await agent.get(response["Location"])).content.decode()
    new = cp.variables[("SecurityCtrlr", "BasicAuthPassword")]
    assert '<code id="secret"' in shown and new in shown and "the old password no longer works" in shown
    assert check_station_password(new, (await Station.objects.aget(pk="cs201")).password_hash)
    assert new not in (await agent.get(response["Location"])).content.decode()  # once


async def test_rotation_rejected_is_an_error_and_keeps_the_password(station201, operator, fast_settings):
    agent = operator
    fast_settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="cs201")
    await sync_to_async(services.set_station_password)("cs201", "the-old-station-password")
    cp = await station201("cs201", password="the-old-station-password")
    cp.answers["SetVariables"] = lambda request: {"set_variable_result": [
        {"attribute_status": "Rejected", "component": item["component"], "variable": item["variable"]}
        for item in request["set_variable_data"]]}
    page = await follow(agent, url("rotate_password"), {})
    assert "the charger answered Rejected; the old password stays" in page
    assert check_station_password("the-old-station-password", (await Station.objects.aget(pk="cs201")).password_hash)


async def test_support_may_not_rotate_a_password(station201, agent, fast_settings):
    """Support operates stations but may not set their passwords (docs/admin.md): no button, 403."""
    fast_settings.OCPP_REQUIRE_AUTH = True
    await Station.objects.acreate(pk="cs201")
    await sync_to_async(services.set_station_password)("cs201", "the-old-station-password")
    cp = await station201("cs201", password="the-old-station-password")
    page = (await agent.get(url("change"))).content.decode()
    assert 'id="op-get-base-report"' in page and 'id="op-rotate-password"' not in page
    assert (await agent.post(url("rotate_password"))).status_code == 403
    assert [name for name, _ in cp.received] == []
    station = await Station.objects.aget(pk="cs201")
    assert check_station_password("the-old-station-password", station.password_hash) and not station.next_password_hash


async def test_viewer_sees_the_device_model_but_cannot_act(station201, viewer):
    cp = await station201("cs201")
    await report(cp, 1, 0, False, [entry("OCPPCommCtrlr", "OfflineThreshold", "300")])
    page = (await viewer.get(url("device_model"))).content.decode()
    assert "<code>OfflineThreshold</code>" in page and 'name="action"' not in page
    assert (await viewer.post(url("device_model"), {"action": "report"})).status_code == 403
    assert (await viewer.post(url("rotate_password"))).status_code == 403
    assert [name for name, _ in cp.received] == []


async def test_a_2_0_1_station_s_configuration_is_its_device_model(agent, station201):
    await station201("cs201")
    response = await agent.get(reverse("admin:stations_station_configuration", args=["cs201"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:stations_station_device_model", args=["cs201"])


async def test_a_write_only_value_is_never_shown(station201, agent):
    """A WriteOnly attribute's value (one stored before values were dropped) is not on the page."""
    await station201("cs201")
    await DeviceVariable.objects.acreate(station_id="cs201", component="ISO15118Ctrlr", variable="SeccId",
                                         value="a-stored-secret", mutability="WriteOnly")
    page = (await agent.get(url("device_model"))).content.decode()
    assert "<code>SeccId</code>" in page and "a-stored-secret" not in page and "(write-only)" in page
