"""services.provisioning: what a charger says about itself (boot, status, data transfer, firmware),
the registration an operator gives it, and stations as an operator provisions them."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from stations import services
from stations.errors import Conflict, InvalidValue
from stations.models import Connector, Station, Transaction
from stations.ocpp.v16.provisioning import boot_info
from tests.fast.conftest import ago, events, kinds

pytestmark = pytest.mark.django_db

BOOT = services.BootInfo(vendor="Alfen", model="Eve", serial_number="SN-1", firmware_version="6.1", iccid="8931",
                         imsi="2040", meter_type="MID", meter_serial_number="M-9")
BOOT_16 = {"charge_point_vendor": "Alfen", "charge_point_model": "Eve", "charge_box_serial_number": "SN-1"}


# --- Boot and registration ----------------------------------------------------------------------

def test_boot_stores_what_the_charger_says_and_answers_its_registration(station: Station) -> None:
    assert services.record_boot("fora072", BOOT) == "Accepted"
    station.refresh_from_db()
    assert (station.vendor, station.model, station.serial_number, station.firmware_version) == (
        "Alfen", "Eve", "SN-1", "6.1")
    assert (station.iccid, station.imsi, station.meter_type, station.meter_serial_number) == (
        "8931", "2040", "MID", "M-9")
    assert station.last_boot_at is not None and station.last_activity == station.last_boot_at
    services.set_registration_status("fora072", "Pending", actor="user:root")
    assert services.record_boot("fora072", services.BootInfo(vendor="Alfen", model="Eve")) == "Pending"
    assert Station.objects.get(pk="fora072").firmware_version == ""  # a boot says it all again


def test_a_charge_point_serial_number_wins_over_the_charge_boxs(station: Station) -> None:
    services.record_boot("fora072", boot_info({**BOOT_16, "charge_point_serial_number": "CP-1"}))  # the 1.6 adapter
    assert Station.objects.get(pk="fora072").serial_number == "CP-1"


def test_registration_changes_are_in_the_event_log_with_who_made_them(station: Station) -> None:
    services.set_registration_status("fora072", "Rejected", actor="user:root")
    assert services.registration_status("fora072") == "Rejected"
    assert events("station.registration.changed") == [{"stationId": "fora072", "status": "Rejected"}]
    assert services.registration_status("nobody") == ""


# --- Connector status ---------------------------------------------------------------------------

def test_a_status_notification_updates_the_connector_and_is_announced(station: Station) -> None:
    services.update_connector_status("fora072", 1, "Faulted", "GroundFailure", info="RCD", vendor_error_code="E12",
                                      timestamp=ago(2))
    connector = Connector.objects.get(station=station, number=1)
    assert (connector.status, connector.error_code, connector.info, connector.vendor_error_code) == (
        "Faulted", "GroundFailure", "RCD", "E12")
    [event] = events("connector.status.changed")[-1:]
    assert event == {"stationId": "fora072", "connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure",
                     "transactionId": None, "timestamp": services.iso(connector.updated_at)}
    services.update_connector_status("fora072", 1, "Available")
    assert events("connector.status.changed")[-1]["errorCode"] is None  # NoError reads as none


def test_a_connector_seen_for_the_first_time_is_made_and_connector_0_is_not_announced(station: Station) -> None:
    services.update_connector_status("fora072", 3, "Available")
    assert Connector.objects.filter(station=station, number=3).exists()
    before = len(kinds())
    services.update_connector_status("fora072", 0, "Unavailable")
    assert Connector.objects.get(station=station, number=0).status == "Unavailable"
    assert len(kinds()) == before  # connector 0 is the station: its status comes from the connectors


def test_an_implausible_status_time_is_replaced_and_one_that_is_no_date_refused(station: Station) -> None:
    services.update_connector_status("fora072", 1, "Charging", timestamp="1999-01-01T00:00:00Z")
    updated_at = Connector.objects.get(station=station, number=1).updated_at
    assert updated_at is not None and (timezone.now() - updated_at).total_seconds() < 5
    with pytest.raises(InvalidValue):
        services.update_connector_status("fora072", 1, "Available", timestamp="yesterday")
    with pytest.raises(InvalidValue):
        services.update_connector_status("fora072", 2**40, "Available")
    assert Connector.objects.get(station=station, number=1).status == "Charging"


# --- Data transfer and firmware -------------------------------------------------------------------

def test_data_transfer_is_accepted_only_for_configured_vendors(station: Station, settings: Settings) -> None:
    settings.OCPP_DATA_TRANSFER_VENDORS = {"com.alfen"}
    assert services.record_data_transfer("fora072", "com.alfen", "temp", "41") == "Accepted"
    assert services.record_data_transfer("fora072", "com.other", None, None) == "UnknownVendorId"
    assert events("station.data_transfer") == [
        {"stationId": "fora072", "vendorId": "com.alfen", "messageId": "temp", "data": "41"},
        {"stationId": "fora072", "vendorId": "com.other", "messageId": None, "data": None},
    ]


def test_firmware_and_diagnostics_status_are_logged(station: Station) -> None:
    services.record_firmware_status("fora072", "station.firmware.status", "Installing")
    services.record_firmware_status("fora072", "station.diagnostics.status", "Uploaded")
    assert events("station.firmware.status") == [{"stationId": "fora072", "status": "Installing"}]
    assert events("station.diagnostics.status") == [{"stationId": "fora072", "status": "Uploaded"}]


# --- Stations as an operator provisions them ------------------------------------------------------

def test_provision_station_creates_then_changes_nothing(db: None, settings: Settings) -> None:
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    created = services.provision_station("new1", name="Depot", actor="system:test")
    assert (created.created, created.changes) == (True, ("registration Pending", "name 'Depot'", "password generated"))
    assert len(created.password) >= 16
    assert services.check_station_password(created.password, Station.objects.get(pk="new1").password_hash)
    again = services.provision_station("new1", name="Depot", actor="system:test")
    assert (again.changed, again.password) == (False, "")
    assert kinds() == ["station.registration.changed", "station.password.set"]


def test_provision_station_changes_only_what_is_given(station: Station) -> None:
    result = services.provision_station("fora072", accepted=True, password="a-long-enough-password")
    assert result.changes == ("password set",)  # it was Accepted already; the password it had none of
    assert services.provision_station("fora072", password="a-long-enough-password").changed is False
    result = services.provision_station("fora072", name="Renamed")
    assert (result.changes, Station.objects.get(pk="fora072").name) == (("name '' -> 'Renamed'",), "Renamed")


@pytest.mark.parametrize(("arguments", "message"), [
    ({"station_id": "a/b"}, "'a/b' is not a station identity (1 to 64 characters, no spaces, '/' or '\\')"),
    ({"station_id": "ok1", "password": ""}, "the password is empty (leave it out to have one generated)"),
    ({"station_id": "ok1", "password": "short"}, "A station password needs at least 16 characters"),
])
def test_provision_station_refusals_leave_nothing(db: None, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception) as refused:
        services.provision_station(**arguments)
    assert str(refused.value) == message
    assert not Station.objects.exists()
    assert kinds() == []


def test_remove_station_refuses_a_connected_one_and_one_with_transactions(station: Station) -> None:
    with pytest.raises(Conflict):
        services.remove_station("fora072")
    Station.objects.filter(pk="fora072").update(is_online=False)
    connector = Connector.objects.get(station=station, number=1)
    Transaction.objects.create(station=station, connector=connector, id_tag="T", meter_start=0,
                               started_at=timezone.now())
    with pytest.raises(Conflict):
        services.remove_station("fora072")
    Transaction.objects.all().delete()
    assert services.remove_station("fora072") is True
    assert services.remove_station("fora072") is False
    assert not Connector.objects.exists()
