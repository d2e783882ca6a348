"""A Security for OCPP 2.0.1 stations: profile 1 (HTTP Basic), profile 3's certificate as nginx
passes it (the live nginx is in tests/test_deploy.py, profile 2 at daphne's TLS port in
tests/test_tls.py), and SecurityEventNotification stored as events and shown in the admin.

Tests are named after the OCTT 2.0.1 CSMS test cases (TC_A_xx_CSMS) where one applies; the
security event has no CSMS test case of its own (use case A04).
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from django.test import Client
from django.urls import reverse
from ocpp.exceptions import OCPPError
from ocpp.v201 import call
from websockets import Subprotocol

from csms.models import Event
from simulator.v16 import ChargerState, SimulatedCharger, basic_auth_header
from stations import services
from stations.models import Station
from stations.services.security import record_security_event
from tests.admin_support import make_superuser
from tests.ocpp201 import SUBPROTOCOL, Station201, now_iso

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-station-password-201"


@pytest.fixture
def profile_1(fast_settings):
    """Authentication required (production's default): a station with a password."""
    fast_settings.OCPP_REQUIRE_AUTH = True
    Station.objects.create(pk="csa1")
    services.set_station_password("csa1", PASSWORD)
    return fast_settings


async def refused_status(url: str, headers: dict[str, str] | None = None, subprotocol: str = SUBPROTOCOL) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=[Subprotocol(subprotocol)], additional_headers=headers)
    return refused.value.response.status_code


async def open_socket(url: str, headers: dict[str, str], subprotocol: str = SUBPROTOCOL):
    return await websockets.connect(url, subprotocols=[Subprotocol(subprotocol)], additional_headers=headers)


def basic(user: str, password: str) -> dict[str, str]:
    return basic_auth_header(user, password)


# --- Profile 1: HTTP Basic ----------------------------------------------------------------

async def test_tc_a_01_basic_auth_valid_username_and_password(server, station201, profile_1):
    cp = await station201("csa1", password=PASSWORD, boot=False)
    assert (await cp.boot()).status == "Accepted"
    await cp.status(1, "Available")
    station = await Station.objects.aget(pk="csa1")
    assert station.is_online and station.ocpp_version == "2.0.1"


async def test_tc_a_02_basic_auth_username_not_the_station_id_is_refused(server, profile_1):
    status = await refused_status(f"{server}/ocpp/csa1", basic("csa1Invalid", PASSWORD))
    assert status == 403
    assert not (await Station.objects.aget(pk="csa1")).is_online


async def test_tc_a_03_basic_auth_invalid_password_is_refused_and_counted(server, profile_1):
    profile_1.AUTH_FAILURE_LIMIT = 2
    for _ in range(2):
        assert await refused_status(f"{server}/ocpp/csa1", basic("csa1", "not-the-password-at-all")) == 403
    # The address is locked out now: the right password waits too (429, as for 1.6).
    assert await refused_status(f"{server}/ocpp/csa1", basic("csa1", PASSWORD)) == 429


async def test_missing_credentials_are_refused(server, profile_1):
    assert await refused_status(f"{server}/ocpp/csa1") == 403


# --- Profile 3: the certificate nginx verified (headers trusted only with BEHIND_PROXY and
# OCPP_CLIENT_CERT_HEADERS) ------------------------------------------------------------------

def verified(common_name: str, verify: str = "SUCCESS") -> dict[str, str]:
    """What deploy/nginx/csms-proxy.conf passes for a client certificate nginx verified."""
    return {"X-SSL-Client-Verify": verify, "X-SSL-Client-S-DN": f"CN={common_name},O=Test CPO,C=NL",
            "X-Forwarded-Proto": "https"}


@pytest.fixture
def profile_3(profile_1):
    profile_1.BEHIND_PROXY = True
    profile_1.OCPP_CLIENT_CERT_HEADERS = True
    profile_1.OCPP_REQUIRE_TLS = True
    Station.objects.create(pk="csa3")  # no password at all: its certificate is its credential
    return profile_1


async def test_tc_a_07_client_certificate_cn_is_the_station_id(server, profile_3):
    """Profile 3 for both versions: no password needed, the one csa1 has included."""
    for station_id in ("csa1", "csa3"):
        ws = await open_socket(f"{server}/ocpp/{station_id}", verified(station_id))
        cp = Station201(station_id, ws)
        serving = asyncio.create_task(cp.start())
        try:
            assert (await cp.boot()).status == "Accepted"
        finally:
            serving.cancel()
            await ws.close()
    ws = await open_socket(f"{server}/ocpp/csa3", verified("csa3"), "ocpp1.6")
    charger = SimulatedCharger(ChargerState.new("csa3", 1), ws)
    serving = asyncio.create_task(charger.start())
    try:
        assert ws.subprotocol == "ocpp1.6"
        assert await charger.boot() == "Accepted"
    finally:
        serving.cancel()
        await ws.close()


async def test_a_certificate_of_another_station_is_refused_and_counted(server, profile_3):
    profile_3.AUTH_FAILURE_LIMIT = 2
    for headers in (verified("csa1"), verified("csa3", verify="FAILED:certificate has expired")):
        assert await refused_status(f"{server}/ocpp/csa3", headers) == 403
    assert not (await Station.objects.aget(pk="csa3")).is_online
    # Counted like wrong passwords: locked out, its own certificate waits too.
    assert await refused_status(f"{server}/ocpp/csa3", verified("csa3")) == 429


async def test_a_subject_with_two_common_names_is_refused(server, profile_3):
    headers = {**verified("csa3"), "X-SSL-Client-S-DN": "CN=csa3,CN=csa1"}
    assert await refused_status(f"{server}/ocpp/csa3", headers) == 403


async def test_no_certificate_falls_back_to_the_password(server, station201, profile_3):
    """nginx passes NONE where no certificate was asked for (the profile 2 port)."""
    headers = {**basic("csa1", PASSWORD), "X-SSL-Client-Verify": "NONE", "X-Forwarded-Proto": "https"}
    ws = await open_socket(f"{server}/ocpp/csa1", headers)
    await ws.close()
    headers = {"X-SSL-Client-Verify": "NONE", "X-Forwarded-Proto": "https"}
    assert await refused_status(f"{server}/ocpp/csa3", headers) == 403  # no password, no certificate


async def test_certificate_headers_without_a_proxy_are_ignored(server, profile_1):
    """A client sending nginx's headers itself proves nothing: without BEHIND_PROXY they are not read."""
    profile_1.OCPP_CLIENT_CERT_HEADERS = True
    await Station.objects.acreate(pk="csa3")
    assert await refused_status(f"{server}/ocpp/csa3", verified("csa3")) == 403
    assert await refused_status(f"{server}/ocpp/csa1", verified("csa1")) == 403


async def test_certificate_headers_behind_a_proxy_not_trusted_for_them_are_ignored(server, profile_3):
    """BEHIND_PROXY alone (a proxy that may pass a client's own headers): forged headers log no one in,
    the password rules apply. The hole of a deployment that kept an old nginx snippet or another proxy."""
    profile_3.OCPP_CLIENT_CERT_HEADERS = False
    profile_3.AUTH_FAILURE_LIMIT = 2
    for _ in range(3):  # presents no credentials: refused, never counted, never locked out
        assert await refused_status(f"{server}/ocpp/csa3", verified("csa3")) == 403
    assert await refused_status(f"{server}/ocpp/csa1", verified("csa1")) == 403
    assert not await Station.objects.filter(is_online=True).aexists()
    # A claimed certificate of another station does not stand in the way of the right password.
    ws = await open_socket(f"{server}/ocpp/csa1", {**verified("csa3"), **basic("csa1", PASSWORD)})
    await ws.close()


async def test_an_unknown_station_with_a_certificate_follows_the_unknown_station_policy(server, profile_3):
    profile_3.OCPP_UNKNOWN_STATIONS = "reject"
    assert await refused_status(f"{server}/ocpp/csa-new", verified("csa-new")) == 403
    assert not await Station.objects.filter(pk="csa-new").aexists()
    profile_3.OCPP_UNKNOWN_STATIONS = "pending"
    ws = await open_socket(f"{server}/ocpp/csa-new", verified("csa-new"))
    await ws.close()
    assert (await Station.objects.aget(pk="csa-new")).registration_status == "Pending"


async def test_profile_3_reconnect_storm_in_one_group_commit(server, profile_3):
    """Handshakes of one batch are decided together (one query), an unknown station among them one by one."""
    profile_3.OCPP_UNKNOWN_STATIONS = "accept"
    await Station.objects.abulk_create([Station(pk=f"storm{n}") for n in range(8)])
    ids = [f"storm{n}" for n in range(8)] + ["storm-new"]
    sockets = await asyncio.gather(*(open_socket(f"{server}/ocpp/{station_id}", verified(station_id))
                                     for station_id in ids))
    for ws in sockets:
        await ws.close()
    assert await Station.objects.filter(pk__startswith="storm").acount() == 9


def test_certificate_decisions_together(transactional_db):
    from stations.services.security import check_certificate_connect

    Station.objects.create(pk="cs-a", registration_status="Accepted")
    Station.objects.create(pk="cs-p", registration_status="Pending")
    many = check_certificate_connect.many  # type: ignore[attr-defined]
    decisions = many([(("cs-a",), {}), ((), {"station_id": "cs-p"})])
    assert [(ok, d.accepted, d.registration_status) for ok, d in decisions] == [
        (True, True, "Accepted"), (True, True, "Pending")]
    assert many([(("cs-a",), {}), (("cs-unknown",), {})]) is None  # registers it: one by one


# --- A04 SecurityEventNotification ----------------------------------------------------------

async def security_event(cp: Station201, event_type: str, tech_info: str | None = None, timestamp: str | None = None):
    return await cp.call(call.SecurityEventNotification(type=event_type, timestamp=timestamp or now_iso(),
                                                        tech_info=tech_info))


async def test_a04_security_event_notification_is_stored_as_an_event(server, station201):
    cp = await station201("csa4")
    sent = now_iso()
    answer = await security_event(cp, "TamperDetectionActivated", "cover opened", sent)
    assert answer is not None  # an empty SecurityEventNotificationResponse
    event = await Event.objects.aget(kind="station.security_event")
    assert event.station_id == "csa4"
    assert event.data == {"stationId": "csa4", "type": "TamperDetectionActivated", "timestamp": sent,
                          "techInfo": "cover opened"}
    await security_event(cp, "StartupOfTheDevice")
    assert (await Event.objects.filter(kind="station.security_event").order_by("-seq").afirst()).data["techInfo"] is None


async def test_a04_tech_info_up_to_255_characters_longer_refused(server, station201):
    cp = await station201("csa4")
    await security_event(cp, "InvalidMessages", "x" * 255)
    assert len((await Event.objects.aget(kind="station.security_event")).data["techInfo"]) == 255
    with pytest.raises(OCPPError):  # the 2.0.1 schema's limit: FormatViolation / TypeConstraintViolation
        await cp.call(call.SecurityEventNotification(type="InvalidMessages", timestamp=now_iso(),
                                                     tech_info="x" * 256), suppress=False)
    assert await Event.objects.filter(kind="station.security_event").acount() == 1


async def test_a04_a_pending_station_may_report_security_events(server, station201, fast_settings):
    """B02: a Pending station may send SecurityEventNotification (it is not SecurityError)."""
    fast_settings.OCPP_UNKNOWN_STATIONS = "pending"
    cp = await station201("csa5", boot=False)
    assert (await cp.boot()).status == "Pending"
    await security_event(cp, "FailedToAuthenticateAtCsms", "three times")
    assert await Event.objects.filter(kind="station.security_event", station_id="csa5").aexists()


def test_security_events_in_the_admin_findable_and_escaped(transactional_db):
    from csms.events import emit

    Station.objects.create(pk="csa6")
    record_security_event("csa6", "InvalidFirmwareSignature", "2026-12-01T10:00:00Z", "<script>alert(1)</script>")
    emit("station.connected", "csa6", {"stationId": "csa6", "timestamp": "2026-12-01T10:00:00Z"})
    client = Client()
    client.force_login(make_superuser())
    events = client.get(reverse("admin:csms_event_changelist"), {"kind": "station.security_event"})
    text = events.content.decode()
    assert events.status_code == 200
    assert "Security event InvalidFirmwareSignature: &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)" not in text
    assert "Connected" not in text.split("result_list")[-1]  # only the security events are listed
    # The type filter offers the kind; the station's page lists its recent events, this one among them.
    assert "?kind=station.security_event" in client.get(reverse("admin:csms_event_changelist")).content.decode()
    page = client.get(reverse("admin:stations_station_change", args=["csa6"])).content.decode()
    assert "Security event InvalidFirmwareSignature" in page



async def test_a_1_6_station_reports_security_events_as_the_whitepaper_says(charger_factory):
    from ocpp.v16 import call as call16

    charger = await charger_factory("wp16")
    await charger.cp.call(call16.SecurityEventNotification(type="FirmwareUpdated", timestamp="2026-12-01T10:00:00Z",
                                                           tech_info="1.2.4"))
    event = await Event.objects.filter(kind="station.security_event", station_id="wp16").alast()
    assert event.data["type"] == "FirmwareUpdated" and event.data["techInfo"] == "1.2.4"
