"""A failure budget per client address for mobile auth, /api/ keys and OCPP basic auth.

Today's failure: no lockout at all (~535 wrong `auth` attempts/s with 50
connections, 426 OCPP basic-auth guesses/s). Each test spends a budget of 5
failures from 127.0.0.1, then checks the refusal (the right credentials too,
until the backoff passes), that another address (127.0.0.2, also loopback)
is unaffected, and the Prometheus counter of refusals.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time

import pytest
import websockets
from asgiref.sync import sync_to_async

from mobileapi.client import MobileClient
from simulator.v16 import connect
from stations import services
from stations.models import Station

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 5
BACKOFF = 1.5  # seconds of the first lockout
ELSEWHERE = {"local_addr": ("127.0.0.2", 0)}  # another client address on the loopback


@pytest.fixture
def budget(settings):
    settings.AUTH_FAILURE_LIMIT = BUDGET
    settings.AUTH_FAILURE_WINDOW = 60
    settings.AUTH_LOCKOUT_SECONDS = BACKOFF
    settings.AUTH_LOCKOUT_MAX_SECONDS = 60
    settings.MOBILE_WS_RATE_LIMIT = settings.MOBILE_CLIENT_RATE_LIMIT = "1000/1"  # not what is measured here
    return settings


def error(reply: dict) -> tuple[int, str]:
    assert set(reply) == {"id", "error"}, reply
    return reply["error"]["code"], reply["error"]["message"]


def host_port(server: str) -> tuple[str, int]:
    host, port = server.removeprefix("ws://").split(":")
    return host, int(port)


async def api(server: str, path: str, key: str | None, source: str = "127.0.0.1", headers: dict | None = None):
    """(status, headers, JSON body) of a GET to the HTTP API from ``source``."""
    def run():
        connection = http.client.HTTPConnection(*host_port(server), timeout=15, source_address=(source, 0))
        try:
            connection.request("GET", path, headers={**({"X-API-Key": key} if key else {}), **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
        finally:
            connection.close()

    return await asyncio.to_thread(run)


async def refusals(server: str, endpoint: str) -> float:
    """csms_auth_lockout_refusals_total{endpoint=...} as /metrics exports it (for the whole test process)."""
    def run():
        connection = http.client.HTTPConnection(*host_port(server), timeout=15)
        try:
            connection.request("GET", "/metrics")
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    text = await asyncio.to_thread(run)
    match = re.search(rf'^csms_auth_lockout_refusals_total{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


# --- Mobile auth (/ws and /mobile-client share one budget with /api/) ------------------------

async def test_mobile_auth_locks_out_an_address_after_its_budget(server, keys, budget):
    before = {endpoint: await refusals(server, endpoint) for endpoint in ("ws", "mobile-client")}
    app = await MobileClient.connect(server, "/ws")
    try:
        for _ in range(20):  # successes never count against the budget
            assert (await app.result("auth", {"apiKey": keys["full"]}))["status"] == "ok"
        for attempt in range(BUDGET):
            assert error(await app.request("auth", {"apiKey": f"guess-{attempt}"})) == (401, "Invalid apiKey")
        began = time.monotonic()
        locked = await app.request("auth", {"apiKey": "guess-more"})
        assert locked["error"]["code"] == 429 and "Too many failed authentications" in locked["error"]["message"]
        assert 0 < locked["error"]["retryAfterMs"] <= BACKOFF * 1000 + 1000
        # The right key waits too: a lockout that let it through would confirm a guess.
        assert error(await app.request("auth", {"apiKey": keys["full"]}))[0] == 429
        other_endpoint = await MobileClient.connect(server, "/mobile-client")
        try:
            assert error(await other_endpoint.request("auth", {"apiKey": keys["full"]}))[0] == 429
        finally:
            await other_endpoint.close()
        status, headers, _ = await api(server, "/api/stations", keys["full"])
        assert status == 429  # one budget for every place an API key is tried
        # Another address is not affected.
        elsewhere = await MobileClient.connect(server, "/ws", keys["full"], **ELSEWHERE)
        await elsewhere.close()
        assert await refusals(server, "ws") - before["ws"] == 2
        assert await refusals(server, "mobile-client") - before["mobile-client"] == 1
        # After the backoff, the right key is accepted again.
        await asyncio.sleep(max(0.0, BACKOFF - (time.monotonic() - began)) + 0.2)
        assert (await app.result("auth", {"apiKey": keys["full"]}))["status"] == "ok"
    finally:
        await app.close()


async def test_each_further_lockout_lasts_twice_as_long(server, keys, budget):
    app = await MobileClient.connect(server, "/mobile-client")
    try:
        for attempt in range(BUDGET):
            await app.request("auth", {"apiKey": f"guess-{attempt}"})
        first = (await app.request("auth", {"apiKey": "x"}))["error"]["retryAfterMs"]
        await asyncio.sleep(first / 1000 + 0.1)
        for attempt in range(BUDGET):
            assert error(await app.request("auth", {"apiKey": f"again-{attempt}"}))[0] == 401
        second = (await app.request("auth", {"apiKey": "x"}))["error"]["retryAfterMs"]
        assert second > BACKOFF * 1000 * 1.5  # 2 x BACKOFF
    finally:
        await app.close()


# --- /api/ X-API-Key ---------------------------------------------------------------------------

async def test_api_key_header_locks_out_an_address_after_its_budget(server, keys, budget):
    before = await refusals(server, "api")
    for attempt in range(BUDGET):
        status, _, body = await api(server, "/api/stations", f"guess-{attempt}")
        assert status == 401 and body["error"]["message"] == "Missing or invalid X-API-Key"
    began = time.monotonic()
    status, headers, body = await api(server, "/api/stations", "guess-more")
    assert status == 429 and body["error"]["code"] == 429
    assert "Too many failed authentications" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= BACKOFF + 1
    assert (await api(server, "/api/stations", keys["full"]))[0] == 429
    assert (await api(server, "/api/health", None))[0] == 200  # no key asked, nothing refused
    assert (await api(server, "/api/stations", keys["full"], source="127.0.0.2"))[0] == 200
    assert await refusals(server, "api") - before == 2
    await asyncio.sleep(max(0.0, BACKOFF - (time.monotonic() - began)) + 0.2)
    assert (await api(server, "/api/stations", keys["full"]))[0] == 200


async def test_behind_a_proxy_the_forwarded_address_is_counted(server, keys, budget):
    budget.BEHIND_PROXY = True
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for attempt in range(BUDGET):
        assert (await api(server, "/api/stations", f"guess-{attempt}", headers=attacker))[0] == 401
    assert (await api(server, "/api/stations", keys["full"], headers=attacker))[0] == 429
    # Everyone else comes through the same proxy (127.0.0.1) and is not locked out.
    assert (await api(server, "/api/stations", keys["full"], headers={"X-Forwarded-For": "203.0.113.6"}))[0] == 200
    # Only the address our proxy added (the last one) counts: prepending another one does not escape.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.5"}
    assert (await api(server, "/api/stations", keys["full"], headers=spoofed))[0] == 429
    # Not behind a proxy, the header is the client's claim and is ignored. (From 127.0.0.2: uvicorn
    # itself applies X-Forwarded-For of connections from 127.0.0.1, its default trusted proxy.)
    budget.BEHIND_PROXY = False
    assert (await api(server, "/api/stations", keys["full"], source="127.0.0.2", headers=attacker))[0] == 200


# --- OCPP basic auth ---------------------------------------------------------------------------

async def handshake_status(server: str, password: str, **options) -> int:
    """101 if the charger's handshake opens, else the HTTP status that refused it."""
    try:
        ws = await connect(f"{server}/ocpp", "fora072", password, **options)
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def test_ocpp_basic_auth_locks_out_an_address_after_its_budget(server, budget):
    await Station.objects.acreate(pk="fora072", registration_status="Accepted")
    password = await sync_to_async(services.set_station_password)("fora072", "the-right-password-123")
    before = await refusals(server, "ocpp")
    for attempt in range(BUDGET):
        assert await handshake_status(server, f"wrong-password-{attempt:02}") == 403
    began = time.monotonic()
    # The server offers the websocket.http.response extension (uvicorn): 429 with Retry-After.
    try:
        await connect(f"{server}/ocpp", "fora072", "wrong-again")
        raise AssertionError("a locked-out address opened a socket")
    except websockets.InvalidStatus as refused:
        assert refused.response.status_code == 429
        assert 1 <= int(refused.response.headers["Retry-After"]) <= BACKOFF + 1
    assert await handshake_status(server, password) == 429  # the right password waits too
    assert await handshake_status(server, password, **ELSEWHERE) == 101  # another address does not
    assert await refusals(server, "ocpp") - before == 2
    await asyncio.sleep(max(0.0, BACKOFF - (time.monotonic() - began)) + 0.2)
    assert await handshake_status(server, password) == 101


async def test_ocpp_without_credentials_spends_no_budget(server, budget):
    """A charger that presents no password guesses nothing: it is refused, never locked out."""
    await Station.objects.acreate(pk="fora072", registration_status="Accepted")
    password = await sync_to_async(services.set_station_password)("fora072", "the-right-password-123")
    for _ in range(BUDGET * 2):
        assert await handshake_status(server, None) == 403
    assert await handshake_status(server, password) == 101


# --- The budget itself -----------------------------------------------------------------------------

def test_budget_memory_is_bounded_while_addresses_rotate(settings):
    from csms import lockout

    settings.AUTH_FAILURE_LIMIT, settings.AUTH_FAILURE_WINDOW = 3, 60
    settings.AUTH_LOCKOUT_SECONDS, settings.AUTH_LOCKOUT_MAX_SECONDS = 60, 900
    settings.AUTH_LOCKOUT_MAX_ADDRESSES = 1000
    budget = lockout.FailureBudget("test")
    for n in range(50_000):
        budget.record_failure(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(budget) == 1000
    # The most recent addresses are the ones remembered.
    for _ in range(2):
        budget.record_failure("10.0.195.79")  # n = 49999
    assert budget.retry_after("10.0.195.79") > 59 and budget.retry_after("10.0.0.1") == 0


def test_ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4(settings):
    from csms import lockout

    settings.BEHIND_PROXY = False
    one = lockout.client_address({"client": ("2001:db8:1:2:aaaa::1", 1)})
    assert one == lockout.client_address({"client": ("2001:db8:1:2:ffff::9", 1)}) == "2001:db8:1:2::/64"
    assert one != lockout.client_address({"client": ("2001:db8:1:3::1", 1)})
    assert lockout.client_address({"client": ("::ffff:192.0.2.7", 1)}) == "192.0.2.7"
    assert lockout.client_address({}) == "unknown"
    settings.BEHIND_PROXY = True
    assert lockout.client_address({"headers": [(b"x-forwarded-for", b"evil\nline")], "client": ("127.0.0.1", 1)}) == (
        "evilline")
