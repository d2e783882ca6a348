"""TLS at daphne's own endpoint: OCPP security profile 2 and wss:// for mobile apps.

One real daphne process listens on a plain port and on a TLS port
(``-e ssl:...``) with a self-signed certificate made for this run. With
profile 2 required, a charger gets in over wss:// with its password and is
refused over plain ws://, password or not; mobile apps and the HTTP API
likewise; a 2.0.1 station as a 1.6 one. The same over nginx, and profile 3
(client certificates, which only nginx verifies), is in tests/test_deploy.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import websockets
from ocpp.v16 import call

from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations import services
from stations.models import Station
from tests.conftest import ROOT, eventually, free_port, server_database_url
from tests.ocpp201 import Station201, connect201

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-station-password-01"


@pytest.fixture
def client_tls(tls_certificate) -> ssl.SSLContext:
    """What a charger or an app that trusts the server's certificate uses."""
    return ssl.create_default_context(cafile=str(tls_certificate[0]))


@pytest.fixture
def profile_2_server(daphne_process, tls_certificate):
    """(plain ws:// URL, wss:// URL) of one daphne requiring TLS from chargers and apps."""
    cert, key = tls_certificate
    tls_port = free_port()
    plain_url, _ = daphne_process(
        {"TLS_PORTS": str(tls_port), "OCPP_REQUIRE_TLS": "true", "OCPP_REQUIRE_AUTH": "true",
         "MOBILE_REQUIRE_TLS": "true"},
        args=["-e", f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
    )
    return plain_url, f"wss://127.0.0.1:{tls_port}"


@pytest.fixture
def station_with_password(transactional_db):
    Station.objects.create(pk="sec2")
    services.set_station_password("sec2", PASSWORD)


async def test_charger_over_wss_with_its_password_is_served(profile_2_server, client_tls, station_with_password):
    _, tls_url = profile_2_server
    ws = await connect(f"{tls_url}/ocpp", "sec2", PASSWORD, ssl=client_tls)
    cp = SimulatedCharger(ChargerState.new("sec2", 1), ws)
    task = asyncio.create_task(cp.start())
    try:
        assert ws.subprotocol == "ocpp1.6"
        assert await cp.boot() == "Accepted"
        await cp.call(call.Heartbeat())
        assert (await Station.objects.aget(pk="sec2")).is_online
    finally:
        task.cancel()
        await ws.close()


async def test_plain_ws_charger_is_refused_when_profile_2_is_required(profile_2_server, station_with_password):
    plain_url, _ = profile_2_server
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{plain_url}/ocpp", "sec2", PASSWORD)  # the right password, in the clear
    assert refused.value.response.status_code == 403
    assert not (await Station.objects.aget(pk="sec2")).is_online


async def test_profile_2_still_needs_the_password(profile_2_server, client_tls, station_with_password):
    _, tls_url = profile_2_server
    for password in (None, "wrong-password-but-long-enough"):
        with pytest.raises(websockets.InvalidStatus):
            await connect(f"{tls_url}/ocpp", "sec2", password, ssl=client_tls)


async def test_a_client_that_does_not_trust_the_certificate_cannot_connect(profile_2_server, station_with_password):
    _, tls_url = profile_2_server
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(f"{tls_url}/ocpp", "sec2", PASSWORD, ssl=ssl.create_default_context())


async def test_mobile_app_over_wss_and_refused_in_the_clear(profile_2_server, client_tls, keys, station_with_password):
    plain_url, tls_url = profile_2_server
    for path in ("/ws", "/mobile-client"):
        app = await MobileClient.connect(tls_url, path, keys["full"], ssl=client_tls)
        try:
            stations = await app.result("getStations")
            assert [s["id"] for s in stations] == ["sec2"]
        finally:
            await app.close()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await MobileClient.connect(plain_url, path)
        assert refused.value.response.status_code == 403


def get(url: str, context: ssl.SSLContext | None = None, **headers: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_http_api_keys_only_over_https(profile_2_server, client_tls, keys, station_with_password):
    plain_url, tls_url = profile_2_server
    https = tls_url.replace("wss://", "https://")
    plain = plain_url.replace("ws://", "http://")
    status, body = await asyncio.to_thread(get, f"{https}/api/stations", client_tls, **{"X-API-Key": keys["full"]})
    assert status == 200 and body[0]["id"] == "sec2"
    status, body = await asyncio.to_thread(get, f"{plain}/api/stations", **{"X-API-Key": keys["full"]})
    assert (status, body["error"]["code"]) == (403, 403)
    status, _ = await asyncio.to_thread(get, f"{plain}/api/health")  # probes need no key, nor TLS
    assert status == 200


async def test_the_simulator_and_the_smoke_client_speak_wss(
    profile_2_server, tls_certificate, keys, station_with_password
):
    _, tls_url = profile_2_server
    cert = str(tls_certificate[0])
    env = {**os.environ, "DATABASE_URL": server_database_url()}
    simulator = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_charger", "sec2", "--connectors", "1", "--url", f"{tls_url}/ocpp",
         "--password", PASSWORD, "--ca-file", cert],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async def online():
            return (await Station.objects.aget(pk="sec2")).is_online

        await eventually(online, timeout=30)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "mobile_client", "--url", tls_url, "--api-key", keys["full"],
             "--ca-file", cert, "--no-charge"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "sec2 Available online=True" in done.stdout
    finally:
        simulator.terminate()
        simulator.wait(10)


@pytest.mark.parametrize(
    ("scope", "behind_proxy", "secure"),
    [
        ({"scheme": "wss"}, False, True),  # uvicorn, hypercorn
        ({"scheme": "ws"}, False, False),
        ({"server": ("127.0.0.1", 8443)}, False, True),  # daphne's TLS endpoint: the port tells
        ({"server": ("127.0.0.1", 8081)}, False, False),
        ({"headers": [(b"x-forwarded-proto", b"https")]}, True, True),  # nginx in front
        ({"headers": [(b"x-forwarded-proto", b"http")]}, True, False),
        # Without a proxy in front, the header is the client's own claim: ignored.
        ({"headers": [(b"x-forwarded-proto", b"https")]}, False, False),
    ],
)
def test_is_secure(settings, scope, behind_proxy, secure):
    from csms.tls import is_secure

    settings.TLS_PORTS = {8443}
    settings.BEHIND_PROXY = behind_proxy
    assert is_secure(scope) is secure


# --- OCPP 2.0.1 stations: the same profile 2 ---------------------------------------------------

async def test_tc_a_04_2_0_1_station_over_wss_with_its_password(profile_2_server, client_tls, station_with_password):
    """TC_A_04_CSMS: TLS with the server's certificate, then Basic auth (profile 2), for a 2.0.1 station."""
    plain_url, tls_url = profile_2_server
    ws = await connect201(f"{tls_url}/ocpp", "sec2", PASSWORD, ssl=client_tls)
    cp = Station201("sec2", ws)
    task = asyncio.create_task(cp.start())
    try:
        assert ws.subprotocol == "ocpp2.0.1"
        assert (await cp.boot()).status == "Accepted"
        assert (await Station.objects.aget(pk="sec2")).ocpp_version == "2.0.1"
    finally:
        task.cancel()
        await ws.close()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect201(f"{plain_url}/ocpp", "sec2", PASSWORD)  # the right password, in the clear
    assert refused.value.response.status_code == 403
    for password in (None, "wrong-password-but-long-enough"):
        with pytest.raises(websockets.InvalidStatus):
            await connect201(f"{tls_url}/ocpp", "sec2", password, ssl=client_tls)


# --- Profile 3: what nginx says of a client certificate ---------------------------------------------

def nginx_headers(verify: str | None, subject: str | None = None) -> dict:
    headers = []
    if verify is not None:
        headers.append((b"x-ssl-client-verify", verify.encode()))
    if subject is not None:
        headers.append((b"x-ssl-client-s-dn", subject.encode("latin1")))
    return {"headers": headers}


@pytest.mark.parametrize(
    ("scope", "behind_proxy", "expected"),
    [
        (nginx_headers("SUCCESS", "CN=cs1,O=Example CPO,C=NL"), True, (True, "cs1")),
        (nginx_headers("SUCCESS", "C=NL,O=Example CPO,CN=cs1"), True, (True, "cs1")),  # order does not matter
        (nginx_headers("SUCCESS", "CN=cs\\,1"), True, (True, "cs,1")),  # RFC 4514 escapes
        (nginx_headers("SUCCESS", "CN=caf\\C3\\A9"), True, (True, "café")),  # non-ASCII as UTF-8 hex
        (nginx_headers("SUCCESS", "O=Example CPO"), True, (True, None)),  # no CN
        (nginx_headers("SUCCESS", "CN=cs1,CN=cs2"), True, (True, None)),  # two: which one?
        (nginx_headers("SUCCESS", "CN=cs1\\"), True, (True, None)),  # unreadable
        (nginx_headers("FAILED:certificate has expired", "CN=cs1"), True, (False, None)),
        (nginx_headers("NONE"), True, None),  # no certificate: the password decides
        (nginx_headers(None), True, None),
        # Without a proxy in front, the headers are the client's own claim: ignored.
        (nginx_headers("SUCCESS", "CN=cs1"), False, None),
    ],
)
def test_client_certificate(settings, scope, behind_proxy, expected):
    from csms.tls import client_certificate

    settings.BEHIND_PROXY = behind_proxy
    settings.OCPP_CLIENT_CERT_HEADERS = True
    certificate = client_certificate(scope)
    assert (certificate and (certificate.verified, certificate.common_name)) == expected


@pytest.mark.parametrize(("behind_proxy", "cert_headers", "read"),
                         [(True, True, True), (True, False, False), (False, True, False), (False, False, False)])
def test_client_certificate_headers_need_both_settings(settings, behind_proxy, cert_headers, read):
    """BEHIND_PROXY alone does not say the proxy overwrites the certificate headers (an old
    nginx snippet, another proxy): a client's own SUCCESS and CN must not count then."""
    from csms.tls import client_certificate

    settings.BEHIND_PROXY = behind_proxy
    settings.OCPP_CLIENT_CERT_HEADERS = cert_headers
    certificate = client_certificate(nginx_headers("SUCCESS", "CN=cs1"))
    assert (certificate is not None) == read
