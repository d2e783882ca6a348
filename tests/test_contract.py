"""The mobile contract to the letter, as a new user meets it (issue 11), over real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from csms.events import call_service, emit
from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations.models import Tariff
from tests.conftest import ROOT, http_json, server_database_url

pytestmark = pytest.mark.django_db(transaction=True)


async def charge(client: MobileClient, station: str, connector: int) -> tuple[str, int]:
    """startCharging on ``client`` until transaction.started; (correlationId, transactionId)."""
    start = await client.result("startCharging", {"stationId": station, "connectorId": connector,
                                                  "idTag": "MOBILE_TEST_USER"})
    correlation_id = start["correlationId"]
    started = await client.event("transaction.started", correlationId=correlation_id)
    return correlation_id, client.field(started, "transactionId")


# --- 1. A fresh install has a tariff -----------------------------------------------------------


async def test_bootstrap_dev_creates_the_documents_tariff_so_cost_is_a_number(charger_factory, mobile):
    out = io.StringIO()
    await call_service(call_command, "bootstrap_dev", stdout=out)
    assert "0.10 EUR/kWh" in out.getvalue()
    tariff = await Tariff.objects.aget()
    assert (tariff.price_per_kwh, tariff.currency, tariff.is_default) == (Decimal("0.10"), "EUR", True)
    again = io.StringIO()
    await call_service(call_command, "bootstrap_dev", stdout=again)
    assert "0.10 EUR/kWh" not in again.getvalue() and await Tariff.objects.acount() == 1

    await charger_factory("fora072", connectors=2, meter_interval=0.2)
    client = await mobile("/ws")
    _, tx_id = await charge(client, "fora072", 1)
    await asyncio.sleep(0.5)
    await client.result("stopCharging", {"transactionId": tx_id})
    stopped = (await client.event("transaction.stopped", transactionId=tx_id))["data"]
    assert stopped["currency"] == "EUR" and isinstance(stopped["cost"], float)
    assert stopped["cost"] == pytest.approx(stopped["energy"] / 1000 * 0.10, abs=0.01)
    (session,) = await client.result("getMySessions")
    assert (session["cost"], session["currency"]) == (stopped["cost"], "EUR")


async def test_bootstrap_dev_leaves_an_operators_tariffs_alone(transactional_db):
    await Tariff.objects.acreate(name="Night", price_per_kwh=Decimal("0.25"), currency="CHF", is_default=False)
    out = io.StringIO()
    await call_service(call_command, "bootstrap_dev", stdout=out)
    assert await Tariff.objects.acount() == 1 and "EUR/kWh" not in out.getvalue()


# --- 2. Outcomes go to the connection that asked -------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_outcomes_reach_only_the_connection_that_issued_the_command(charger_factory, mobile, path):
    await charger_factory("fora072", connectors=2)
    await charger_factory("other", connectors=1)
    issuer = await mobile(path)
    sibling = await mobile(path)  # the same key, subscribed to transaction.* of another station only
    await sibling.result("subscribe", {"stationId": "other", "events": ["transaction.*"]})
    quiet = await mobile(path)  # the same key, no subscription at all
    correlation_id, tx_id = await charge(issuer, "fora072", 1)
    await issuer.event("remote.start.result", correlationId=correlation_id)
    stop = await issuer.result("stopCharging", {"transactionId": tx_id})
    await issuer.event("remote.stop.result", correlationId=stop["correlationId"])
    await issuer.event("transaction.stopped", correlationId=stop["correlationId"])
    await asyncio.sleep(0.5)
    for client in (sibling, quiet):
        with pytest.raises(asyncio.TimeoutError):
            client.events.append(await client.receive(timeout=0.3))
        assert client.events == []


# --- 3. One pending RemoteStart per connector ---------------------------------------------------


class SlowToAnswer(SimulatedCharger):
    """Answers RemoteStartTransaction after 1.5 s (a charger on a slow link)."""

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        await asyncio.sleep(1.5)
        return SimulatedCharger.on_remote_start(self, id_tag, connector_id, charging_profile)


@pytest.mark.parametrize("api", ["/ws", "/mobile-client", "/api/"])
async def test_second_start_while_one_is_pending_is_409(charger_factory, mobile, server, keys, api):
    charger = await charger_factory("fora072", connectors=2, cls=SlowToAnswer)
    first = await mobile("/ws")
    await first.send({"id": "first", "action": "startCharging",
                      "params": {"stationId": "fora072", "connectorId": 1, "idTag": "MOBILE_TEST_USER"}})
    await first.reply_to("first")
    await asyncio.sleep(0.3)  # the first RemoteStart is with the charger now

    if api == "/api/":
        status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start",
                                       keys["full"], {"idTag": "MOBILE_TEST_USER"})
        assert status == 409, body
        message = json.dumps(body)
    else:
        second = await mobile(api, "other")
        reply = await second.request("startCharging",
                                     {"stationId": "fora072", "connectorId": 1, "idTag": "OTHER_USER"})
        assert reply["error"]["code"] == 409, reply
        message = reply["error"]["message"]
    assert "pending" in message
    # The other connector is free to start meanwhile.
    other = await mobile("/ws", "other")
    assert (await other.result("startCharging", {"stationId": "fora072", "connectorId": 2,
                                                 "idTag": "OTHER_USER"}))["status"] == "pending"
    # Once the transaction started (pending over), the connector is busy, still 409 but no longer "pending".
    await first.event("transaction.started", timeout=10, connectorId=1)
    assert charger.state.connectors[1].session is not None


class SlowToRefuse(SimulatedCharger):
    """Refuses RemoteStartTransaction after 1.5 s."""

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        await asyncio.sleep(1.5)
        return call_result.RemoteStartTransaction(status="Rejected")


async def test_start_is_possible_again_once_the_pending_one_timed_out(charger_factory, mobile, fast_settings):
    fast_settings.OCPP_COMMAND_TIMEOUT = 1  # the slow charger answers after 1.5 s: Timeout

    await charger_factory("fora072", connectors=1, cls=SlowToRefuse)
    client = await mobile("/ws")
    start = await client.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "A"})
    result = await client.event("remote.start.result", correlationId=start["correlationId"])
    assert result["data"]["status"] == "Timeout"
    await asyncio.sleep(1)  # the late answer came and went
    reply = await client.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "A"})
    assert reply.get("result", {}).get("status") == "pending", reply


# --- 4. One JSON type per field ---------------------------------------------------------------------


def _types(value, found: dict[str, set[str]], where: str, parent: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                continue  # null is "not known", allowed beside any type
            if isinstance(item, (dict, list)):
                _types(item, found, where, key)
            else:
                # "id" names different things: a station's (string), a connector's (number), a request's.
                name = f"{parent}.{key}" if key == "id" else key
                found.setdefault(name, set()).add(f"{type(item).__name__}@{where}")
    elif isinstance(value, list):
        for item in value:
            _types(item, found, where, parent)


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_every_field_has_one_json_type_in_a_whole_session(charger_factory, mobile, path):
    await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    await charger_factory("fora072", connectors=2, meter_interval=0.15)
    client = await mobile(path)
    received: list[tuple[str, dict]] = []
    receive = client.receive

    async def recording(timeout: float = 5) -> dict:
        message = await receive(timeout)
        received.append((message.get("event") or "reply", message))
        return message

    client.receive = recording
    await client.result("subscribe", {"events": ["all"]})
    await client.result("getStations")
    correlation_id, tx_id = await charge(client, "fora072", 1)
    for _ in range(4):
        await client.event("meter.update" if path == "/ws" else "meter.values.delta", timeout=5)
    await client.result("getConnectorStatus", {"stationId": "fora072", "connectorId": 1})
    await client.result("getMeterValuesRecent", {"stationId": "fora072", "connectorId": 1})
    await client.result("getMySessions")
    stop = await client.result("stopCharging", {"transactionId": tx_id})
    await client.event("transaction.stopped", correlationId=stop["correlationId"])
    await client.result("getConnectorStatus", {"stationId": "fora072", "connectorId": 1})
    await client.result("getMySessions")
    await client.result("getRecentTransactions")
    recent = await client.result("getEventsRecent", {"limit": 200})
    await client.result("getEventsSince", {"eventId": recent["events"][0]["eventId"], "limit": 200})
    found: dict[str, set[str]] = {}
    for where, message in received:
        _types(message, found, where)
    mixed = {key: sorted(kinds) for key, kinds in found.items() if len({k.split("@")[0] for k in kinds}) > 1}
    assert not mixed, mixed
    assert {k.split("@")[0] for k in found["energy"]} == {"int"}


# --- 5. A cursor from the future ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_the_documents_event_id_example_is_a_cursor_from_the_future(mobile, path):
    client = await mobile(path)
    reply = await client.request("getEventsSince", {"eventId": "evt-1730000000000-1234"})
    assert reply["error"]["code"] == 400, reply
    assert "ahead of this server's newest event" in reply["error"]["message"]
    # The newest one is a valid cursor: nothing yet, no error.
    await call_service(emit, "connector.status.changed", "A", {"stationId": "A", "connectorId": 1, "status": "Available"})
    newest = (await client.result("getEventsRecent", {"limit": 1}))["cursor"]["lastEventId"]
    page = await client.result("getEventsSince", {"eventId": newest})
    assert page["events"] == [] and page["cursor"]["lastEventId"] == newest


async def test_the_http_event_feed_refuses_a_cursor_from_the_future(server, keys):
    status, body = await http_json(server, "GET", "/api/events?since=evt-1730000000000-1234", keys["full"])
    assert status == 400 and "ahead of this server's newest event" in json.dumps(body), body


# --- 6. The documents name real actions -----------------------------------------------------------------


def test_documented_probes_use_actions_that_exist():
    import mobileapi.actions  # noqa: F401
    from mobileapi.registry import ACTIONS

    names = set()
    for doc in ("docs/operations.md", "README.md", "docs/deployment.md"):
        text = (ROOT / doc).read_text()
        names |= set(re.findall(r'"action"\s*:\s*\\?"(\w+)', text))
        names |= set(re.findall(r"`((?:get|start|stop|un)?[sS]ubscribe|(?:get|start|stop)[A-Z]\w*)`", text))
    assert names and not names - set(ACTIONS), names - set(ACTIONS)


async def test_what_the_start_order_guarantees(charger_factory, mobile):
    """docs/mobile-api.md 4.5: the charger's own events keep its order (Preparing, transaction.started,
    Charging); remote.start.result is matched by correlationId, wherever it falls among them."""
    await charger_factory("fora072", connectors=3)
    client = await mobile("/ws")
    await client.result("subscribe", {"events": ["connector.status.changed", "transaction.*", "remote.*"]})

    def seq(event: dict) -> int:
        return int(event["eventId"].rsplit("-", 1)[1])

    for connector in (1, 2, 3):
        start = await client.result("startCharging", {"stationId": "fora072", "connectorId": connector,
                                                      "idTag": "MOBILE_TEST_USER"})
        correlation_id = start["correlationId"]
        started = await client.event("transaction.started", correlationId=correlation_id)
        result = await client.event("remote.start.result", correlationId=correlation_id)
        preparing = await client.event("connector.status.changed", connectorId=connector, status="Preparing")
        charging = await client.event("connector.status.changed", connectorId=connector, status="Charging")
        assert seq(preparing) < seq(started) < seq(charging)
        assert result["data"]["status"] == "Accepted"


# --- 7. station_command on the in-memory layer ---------------------------------------------------------


async def test_station_command_without_a_shared_layer_fails_at_once_with_the_reason(daphne_process):
    url, _ = daphne_process(env={"REDIS_URL": ""})
    ws = await connect(f"{url}/ocpp", "fora072")
    charger = SimulatedCharger(ChargerState.new("fora072", 1, 5.0), ws)
    serve = asyncio.create_task(charger.start())
    try:
        await charger.boot()
        env = {**os.environ, "DATABASE_URL": server_database_url(), "REDIS_URL": ""}
        began = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "manage.py", "station_command", "fora072", "GetConfiguration"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        elapsed = time.monotonic() - began
    finally:
        serve.cancel()
        await ws.close()
    assert done.returncode != 0, done.stdout
    assert elapsed < 10, elapsed
    assert "in-memory channel layer" in done.stderr and "REDIS_URL" in done.stderr, done.stderr


# --- 8. make run listens on loopback by default -------------------------------------------------------


def test_make_run_binds_loopback_unless_told():
    def daphne_line(*args: str) -> str:
        out = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return next(line for line in out.stdout.splitlines() if "daphne" in line and " -b " in line)

    assert " -b 127.0.0.1 " in daphne_line()
    assert " -b 0.0.0.0 " in daphne_line("HOST=0.0.0.0")
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"\|\s*`HOST`\s*\|\s*`127\.0\.0\.1`", readme) and "HOST=0.0.0.0" in readme

