"""services.connections: may a station connect (security profile 1, the unknown-station policy),
and which channel holds its socket. The handshake itself is tests/test_ocpp_charger.py's."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from stations import services
from stations.errors import DomainError
from stations.models import Station
from tests.fast.conftest import events, kinds, many

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"


# --- Passwords ------------------------------------------------------------------------------------

def test_a_station_password_is_stored_salted_and_checked() -> None:
    stored = services.hash_station_password(PASSWORD)
    assert stored.startswith("sha256$") and PASSWORD not in stored
    assert stored != services.hash_station_password(PASSWORD)  # a salt of its own each time
    assert services.check_station_password(PASSWORD, stored)
    assert not services.check_station_password(PASSWORD + "x", stored)
    assert not services.check_station_password(PASSWORD, "not-a-hash")


def test_set_station_password_generates_one_or_refuses_a_short_one(db: None) -> None:
    Station.objects.create(pk="cp1")
    generated = services.set_station_password("cp1", None)
    assert len(generated) >= 16
    assert services.check_station_password(generated, Station.objects.get(pk="cp1").password_hash)
    with pytest.raises(DomainError, match="at least 16 characters"):
        services.set_station_password("cp1", "fifteen-chars!!")
    assert services.set_station_password("cp1", PASSWORD) == PASSWORD


# --- May it connect ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "status"), [("accept", "Accepted"), ("pending", "Pending")])
def test_an_unknown_station_is_registered_by_the_policy(db: None, settings: Settings, policy: str, status: str) -> None:
    settings.OCPP_UNKNOWN_STATIONS = policy
    settings.OCPP_REQUIRE_AUTH = False
    decision = services.check_station_connect("new1", None)
    assert decision == services.ConnectDecision(True, registration_status=status)
    assert Station.objects.get(pk="new1").registration_status == status
    assert kinds() == []  # online only once the socket is accepted (station_connected)


def test_an_unknown_station_is_refused_by_the_reject_policy_or_required_auth(db: None, settings: Settings) -> None:
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    assert services.check_station_connect("new1", None) == services.ConnectDecision(False, "unknown station")
    settings.OCPP_UNKNOWN_STATIONS = "accept"
    settings.OCPP_REQUIRE_AUTH = True
    assert services.check_station_connect("new1", PASSWORD).reason == "unknown station cannot authenticate"
    assert not Station.objects.exists()


def test_a_station_with_a_password_must_present_it(db: None, settings: Settings) -> None:
    settings.OCPP_REQUIRE_AUTH = False
    Station.objects.create(pk="cp1", registration_status="Pending")
    services.set_station_password("cp1", PASSWORD)
    Decision = services.ConnectDecision
    assert services.check_station_connect("cp1", None) == Decision(False, "missing credentials")
    assert services.check_station_connect("cp1", "wrong-password-1") == Decision(False, "wrong password")
    accepted = services.ConnectDecision(True, registration_status="Pending")
    assert services.check_station_connect("cp1", PASSWORD) == accepted


def test_required_auth_refuses_a_station_without_a_password(db: None, settings: Settings) -> None:
    settings.OCPP_REQUIRE_AUTH = True
    Station.objects.create(pk="open1")
    decision = services.check_station_connect("open1", None)
    assert decision == services.ConnectDecision(False, "station has no password and authentication is required")


def test_the_batched_check_decides_each_handshake_as_alone(db: None, settings: Settings) -> None:
    """check_station_connect.many (the group commit's form): one read, one INSERT, each by its own rule."""
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    settings.OCPP_REQUIRE_AUTH = False
    Station.objects.create(pk="known1", registration_status="Accepted")
    services.set_station_password("known1", PASSWORD)
    calls = [(("known1", PASSWORD), {}), (("known1", "wrong-password-123"), {}), (("new1", None), {}),
             (("new1", None), {}), ((), {"station_id": "new2", "password": None})]
    assert many(services.check_station_connect)(calls) == [
        (True, services.ConnectDecision(True, registration_status="Accepted")),
        (True, services.ConnectDecision(False, "wrong password")),
        (True, services.ConnectDecision(True, registration_status="Pending")),
        (True, services.ConnectDecision(True, registration_status="Pending")),
        (True, services.ConnectDecision(True, registration_status="Pending")),
    ]
    assert set(Station.objects.values_list("pk", flat=True)) == {"known1", "new1", "new2"}


# --- Which channel holds the socket ---------------------------------------------------------------------

def test_connected_then_reconnected_on_another_channel(db: None) -> None:
    Station.objects.create(pk="cp1")
    assert services.station_connected("cp1", "p1!a") == ""
    assert services.station_connected("cp1", "p2!b") == "p1!a"  # the new socket replaces the old one
    station = Station.objects.get(pk="cp1")
    assert (station.is_online, station.channel_name) == (True, "p2!b")
    assert [e["stationId"] for e in events("station.connected")] == ["cp1"]  # it never went offline
    # The old socket's close, arriving after the new one's accept, does not take the station offline.
    assert services.station_disconnected("cp1", "p1!a") is False
    assert Station.objects.get(pk="cp1").is_online
    assert services.station_disconnected("cp1", "p2!b") is True
    assert services.station_disconnected("cp1", "p2!b") is False
    assert [e["stationId"] for e in events("station.disconnected")] == ["cp1"]


def test_disconnected_with_the_holders_last_activity_or_keeping_the_stored_one(db: None) -> None:
    Station.objects.create(pk="cp1")
    Station.objects.create(pk="cp2")
    services.station_connected("cp1", "p1!a")
    services.station_connected("cp2", "p1!b")
    seen = timezone.now() - dt.timedelta(seconds=30)
    services.station_disconnected("cp1", "p1!a", seen)
    stored = Station.objects.get(pk="cp2").last_activity
    services.station_disconnected("cp2", "p1!b", keep_activity=True)
    assert Station.objects.get(pk="cp1").last_activity == seen
    assert Station.objects.get(pk="cp2").last_activity == stored


def test_the_batched_connect_marks_each_online_once(db: None) -> None:
    for pk in ("cp1", "cp2"):
        Station.objects.create(pk=pk)
    services.station_connected("cp2", "p1!old")
    outcomes = many(services.station_connected)([(("cp1", "p2!a"), {}), (("cp2", "p2!b"), {})])
    assert outcomes == [(True, ""), (True, "p1!old")]
    assert dict(Station.objects.values_list("pk", "channel_name")) == {"cp1": "p2!a", "cp2": "p2!b"}
    assert [e["stationId"] for e in events("station.connected")] == ["cp2", "cp1"]
    assert many(services.station_connected)([(("cp1", "p2!a"), {}), (("cp1", "p2!c"), {})]) is None  # one by one


def test_stations_on_a_process_channels(db: None) -> None:
    Station.objects.create(pk="cp1")
    Station.objects.create(pk="cp2")
    services.station_connected("cp1", "p1!a")
    services.station_connected("cp2", "p2!b")
    assert services.stations_on_channels("p1!") == [("cp1", "p1!a")]
