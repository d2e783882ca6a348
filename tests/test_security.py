"""Security: idTags bound to a key, the development key in production, the admin's GETs.

The lockout after failed authentications is in tests/test_lockout.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse
from ocpp.routing import on
from ocpp.v16.enums import Action

from csms.models import Event
from mobileapi import services as mobile_services
from mobileapi.client import MobileClient
from mobileapi.models import ApiKey
from simulator.v16 import SimulatedCharger
from stations.models import Connector, RemoteStartRequest, Station, Transaction
from tests.conftest import ROOT, eventually, http_json, server_database_url

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_SECRET = "s" * 50


def error(reply: dict) -> tuple[int, str]:
    assert set(reply) == {"id", "error"}, reply
    return reply["error"]["code"], reply["error"]["message"]




# --- A tag bound to a key is that key's alone --------------------------------------------

@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_stolen_idtag_cannot_start_charging_on_the_websocket_api(mobile, charger_factory, path):
    """Today's failure: a key with no bound tags started with FLEET-1 (the `bound` key's); the
    session then showed in the bound key's getMySessions and the bound key could stop it."""
    await charger_factory(connectors=1)
    thief = await mobile(path, "other")
    reply = await thief.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "FLEET-1"})
    assert error(reply) == (403, "idTag FLEET-1 is bound to another API key")
    assert not await RemoteStartRequest.objects.filter(id_tag="FLEET-1").aexists()
    await asyncio.sleep(0.3)  # nothing was sent to the charger, so nothing starts
    assert not await Transaction.objects.filter(id_tag="FLEET-1").aexists()
    owner = await mobile(path, "bound")
    assert await owner.result("getMySessions") == []
    # Tags bound to nobody stay usable by any key; the owner still starts with its own tag.
    free = await thief.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "GUEST-7"},
                              timeout=15)
    assert free["status"] in ("pending", "Accepted")


async def test_binding_made_in_the_admin_applies_to_live_connections(mobile, charger_factory):
    """The rule reads the bindings from the database, not the connection's copy taken at auth."""
    from stations.models import IdTag

    await charger_factory(connectors=1)
    thief = await mobile("/ws", "other")
    owner_key = await ApiKey.objects.aget(name="Fleet")
    tag = await IdTag.objects.acreate(id_tag="FLEET-2")
    await sync_to_async(owner_key.id_tags.add)(tag)
    reply = await thief.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "FLEET-2"})
    assert error(reply) == (403, "idTag FLEET-2 is bound to another API key")


async def test_stolen_idtag_cannot_start_charging_on_the_http_api(server, keys, charger_factory):
    await charger_factory(connectors=1)
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", keys["other"],
                              {"idTag": "FLEET-1"})
    assert (status, body) == (403, {"error": {"code": 403, "message": "idTag FLEET-1 is bound to another API key"}})
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", keys["bound"],
                              {"idTag": "OTHER-9"})
    assert (status, body["error"]["message"]) == (403, "idTag OTHER-9 is not bound to this API key")
    assert not await RemoteStartRequest.objects.aexists()
    # The owner may, and without naming its only tag.
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", keys["bound"])
    assert status == 200 and body["status"] == "Accepted"

    async def started():
        return await Transaction.objects.filter(id_tag="FLEET-1", stopped_at__isnull=True).afirst()

    tx = await eventually(started)
    owner = await ApiKey.objects.aget(name="Fleet")
    assert tx.started_by_key_id == owner.pk
    status, _ = await http_json(server, "POST", f"/api/transactions/{tx.pk}/stop", keys["other"])
    assert status == 403


async def test_a_session_started_with_someone_elses_tag_stays_the_starters(mobile, charger_factory):
    """A session another key started with this key's tag (possible before the rule) is not
    listed or stoppable by the tag's owner; an RFID session with the tag is."""
    await charger_factory(connectors=2)
    other = await ApiKey.objects.aget(name="Other app")
    connectors = {c.number: c async for c in Connector.objects.filter(station_id="fora072")}
    station = await Station.objects.aget(pk="fora072")
    from django.utils import timezone

    stolen = await Transaction.objects.acreate(station=station, connector=connectors[1], id_tag="FLEET-1",
                                               meter_start=0, started_at=timezone.now(),
                                               started_by=f"apikey:{other.pk}")
    rfid = await Transaction.objects.acreate(station=station, connector=connectors[2], id_tag="FLEET-1",
                                             meter_start=0, started_at=timezone.now())
    owner = await mobile("/ws", "bound")
    assert [s["transactionId"] for s in await owner.result("getMySessions")] == [rfid.pk]
    reply = await owner.request("stopCharging", {"transactionId": stolen.pk})
    assert error(reply) == (403, "This transaction was not started with this API key or its idTags")
    starter = await mobile("/ws", "other")
    assert [s["transactionId"] for s in await starter.result("getMySessions")] == [stolen.pk]


# --- The development key in production ----------------------------------------------------------

def test_production_refuses_the_development_key_and_warns_at_start(daphne_process, tmp_path):
    """Today's failure: a database set up by `make run` keeps test-mobile-key-123, and a server
    started on it with CSMS_ENV=production authenticated it with both scopes, silently."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CSMS_"))}
    # What `make run` leaves in the database.
    setup = subprocess.run([sys.executable, "manage.py", "bootstrap_dev"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60, env={**clean, "DATABASE_URL": server_database_url()})
    assert setup.returncode == 0 and "test-mobile-key-123" in setup.stdout, setup.stderr[-500:]
    other = mobile_services.create_api_key("Partner", ["read:stations"])[1]
    logs = tmp_path / "logs"
    url, _ = daphne_process({
        "CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_SECRET, "DJANGO_DEBUG": "false",
        "ALLOWED_HOSTS": "*", "OCPP_REQUIRE_AUTH": "false", "OCPP_UNKNOWN_STATIONS": "accept",
        "MOBILE_REQUIRE_TLS": "false", "LOG_DIR": str(logs),
    })

    async def scenario():
        for path in ("/ws", "/mobile-client"):
            client = await MobileClient.connect(url, path)
            try:
                reply = await client.request("auth", {"apiKey": "test-mobile-key-123"})
                assert error(reply) == (401, "The development test key is refused in production")
                assert (await client.result("auth", {"apiKey": other}))["status"] == "ok"  # the server works
            finally:
                await client.close()

    asyncio.run(scenario())
    status, body = asyncio.run(http_json(url, "GET", "/api/stations", "test-mobile-key-123"))
    assert (status, body["error"]["message"]) == (401, "The development test key is refused in production")
    assert asyncio.run(http_json(url, "GET", "/api/stations", other))[0] == 200
    logged = "".join(path.read_text() for path in Path(logs).glob("app-*.log"))
    for expected in (
        "csms.W001: ALLOWED_HOSTS contains '*'",
        "csms.W002: OCPP_REQUIRE_AUTH is false",
        "csms.W003: OCPP_UNKNOWN_STATIONS=accept",
        "csms.W005: MOBILE_REQUIRE_TLS is false",
        "csms.W010: The database holds a development API key",
        "refused the development API key test-mob",
    ):
        assert expected in logged, (expected, logged[-3000:])


def test_production_checks_name_the_unsafe_settings():
    """`manage.py check` (and check --deploy) show the same warnings as the server's start."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CSMS_", "ALLOWED_HOSTS", "OCPP_"))}
    env = {**clean, "CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_SECRET, "ALLOWED_HOSTS": "*",
           "OCPP_REQUIRE_AUTH": "false", "OCPP_UNKNOWN_STATIONS": "pending"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-1000:]
    for check_id in ("csms.W001", "csms.W002", "csms.W003"):
        assert check_id in done.stderr, done.stderr[-2000:]
    # The defaults of production pass without these warnings.
    safe = {**clean, "CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_SECRET, "ALLOWED_HOSTS": "csms.example.com"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=safe)
    assert done.returncode == 0 and "csms.W" not in done.stderr, done.stderr[-1000:]


def test_certificate_headers_without_a_proxy_are_named():
    """OCPP_CLIENT_CERT_HEADERS without BEHIND_PROXY: csms/tls.py reads no certificate, so say so."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CSMS_", "ALLOWED_HOSTS", "OCPP_"))}
    base = {**clean, "CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_SECRET, "ALLOWED_HOSTS": "csms.example.com",
            "OCPP_CLIENT_CERT_HEADERS": "true"}
    found = {}
    for behind_proxy in ("false", "true"):
        done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env={**base, "BEHIND_PROXY": behind_proxy})
        assert done.returncode == 0, done.stderr[-1000:]
        found[behind_proxy] = "csms.W007" in done.stderr
    assert found == {"false": True, "true": False}


# --- The admin's GETs command nothing ------------------------------------------------------------

class CountingCharger(SimulatedCharger):
    """Counts the GetConfiguration calls it answers."""

    configuration_reads = 0

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None):
        self.configuration_reads += 1
        return super().on_get_configuration(key)


async def test_opening_the_configuration_page_sends_no_command(server, charger_factory):
    """Today's failure: a GET of the configuration page (a reload, a prefetch) sent GetConfiguration."""
    from tests.admin_support import make_support
    from tests.test_admin import BrowserSession

    await sync_to_async(make_support)()
    charger = await charger_factory("fora072", connectors=1, cls=CountingCharger)
    browser = BrowserSession(server.replace("ws://", "http://"))  # the real server, its CSRF and cookies
    await asyncio.to_thread(browser.login, "agent")
    url = reverse("admin:stations_station_configuration", args=["fora072"])
    text = await asyncio.to_thread(browser.open, url)
    assert charger.cp.configuration_reads == 0
    assert not await Event.objects.filter(kind="station.command").aexists()
    assert 'id="read-configuration"' in text and '<table id="configuration">' not in text  # a button instead
    # Reading is a POST: then the charger is asked, and the table shown.
    text = await asyncio.to_thread(browser.open, url, {})
    assert '<table id="configuration">' in text and "HeartbeatInterval" in text
    assert charger.cp.configuration_reads == 1
    # Changing a key from that page: ChangeConfiguration, then the configuration read again.
    text = await asyncio.to_thread(browser.open, url, {"key": "HeartbeatInterval", "value": "77"})
    assert "ChangeConfiguration: the charger answered Accepted" in text
    assert "<td>77</td>" in text and charger.cp.configuration_reads == 2
    sent = [e.data["action"] async for e in Event.objects.filter(kind="station.command").order_by("seq")]
    assert sent == ["GetConfiguration", "ChangeConfiguration", "GetConfiguration"]
