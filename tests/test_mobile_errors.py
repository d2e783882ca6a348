"""Every documented error code; the connection stays usable after each."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from mobileapi.client import MobileClient
from mobileapi.registry import ACTIONS, action
from simulator.v16 import SimulatedCharger
from stations.models import Station

pytestmark = pytest.mark.django_db(transaction=True)


async def still_usable(client: MobileClient) -> None:
    assert (await client.result("ping"))["pong"] is True


def error(reply: dict) -> tuple[int, str]:
    assert set(reply) == {"id", "error"}, reply
    return reply["error"]["code"], reply["error"]["message"]


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_400_bad_json_keeps_the_connection(mobile, path):
    client = await mobile(path)
    await client.send("{not json")
    reply = await client.receive()
    assert reply["id"] is None and reply["error"]["code"] == 400 and "Invalid JSON" in reply["error"]["message"]
    await client.send('{"id": "x1", "action": ')  # truncated, but the id is readable
    reply = await client.receive()
    assert reply["id"] == "x1" and reply["error"]["code"] == 400
    await still_usable(client)


@pytest.mark.parametrize(
    "message, expected",
    [
        ({"id": "m1"}, "Missing action"),
        ({"id": "m1", "action": 5}, "action must be a non-empty string"),
        ({"id": "m1", "action": "fly"}, "Unknown action 'fly'"),
        ({"id": "m1", "action": "getConnectorStatus", "params": {"stationId": "fora072", "connectorId": "two"}},
         "params.connectorId: 'two' is not of type 'integer'"),
        ({"id": "m1", "action": "getConnectorStatus", "params": {"stationId": "fora072"}},
         "params: 'connectorId' is a required property"),
        ({"id": "m1", "action": "getStations", "params": [1]}, "params must be an object"),
        ({"id": "m1", "action": "getEventsSince", "params": {"limit": 1001, "eventId": "evt-1-1"}},
         "params.limit: 1001 is greater than the maximum of 1000"),
        ({"id": "m1", "action": "getEventsSince", "params": {"eventId": "nope"}},
         "params.eventId: eventId 'nope' is not of the form evt-<ms>-<sequence>"),
        ({"id": "m1", "action": "getEventsSince", "params": {}}, "params: give 'eventId' or 'since'"),
        ({"id": "m1", "action": "subscribe", "params": {"events": ["transaction.start"]}},
         "params.events: 'transaction.start' matches no event"),
        ({"id": "m1", "action": "stopCharging", "params": {"connectorId": 1}},
         "params: give 'transactionId', or 'stationId' and 'connectorId'"),
        ({"id": "m1", "action": "ping", "params": {"unexpected": 1}},
         "params: Additional properties are not allowed ('unexpected' was unexpected)"),
        ([1, 2], "A request must be a JSON object {id, action, params}"),
    ],
)
async def test_400_names_the_problem(mobile, message, expected):
    client = await mobile("/ws")
    await client.send(message)
    reply = await client.receive()
    code, text = error(reply)
    assert code == 400 and text.startswith(expected), text
    assert reply["id"] == (message.get("id") if isinstance(message, dict) else None)
    await still_usable(client)


async def test_401_before_auth_and_for_a_bad_key(mobile, keys):
    client = await mobile("/ws", persona=None)
    assert error(await client.request("getStations")) == (401, "Not authenticated: send auth first")
    assert error(await client.request("ping")) == (401, "Not authenticated: send auth first")
    assert error(await client.request("auth", {"apiKey": "wrong"})) == (401, "Invalid apiKey")
    assert (await client.result("auth", {"apiKey": keys["full"]}))["status"] == "ok"
    await still_usable(client)


async def test_401_for_an_inactive_key(mobile, keys):
    from mobileapi.models import ApiKey

    await ApiKey.objects.filter(name="Other app").aupdate(is_active=False)
    client = await mobile("/mobile-client", persona=None)
    assert error(await client.request("auth", {"apiKey": keys["other"]})) == (401, "Invalid apiKey")


async def test_403_scopes(mobile):
    reader = await mobile("/ws", "readonly")
    assert error(await reader.request("startCharging", {"stationId": "x", "connectorId": 1, "idTag": "T"})) == (
        403, "Missing scope write:charging")
    assert error(await reader.request("stopCharging", {"transactionId": 1})) == (403, "Missing scope write:charging")
    assert isinstance(await reader.result("getStations"), list)
    kiosk = await mobile("/ws", "charging")
    for action_name in ("getStations", "subscribe", "getEventsSince"):
        code, text = error(await kiosk.request(action_name))
        assert (code, text) == (403, "Missing scope read:stations")
    assert await kiosk.result("getMySessions") == []


async def test_403_idtag_not_bound_to_the_key(mobile, charger_factory):
    await charger_factory(connectors=1)
    fleet = await mobile("/ws", "bound")
    assert error(await fleet.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "X"})) == (
        403, "idTag X is not bound to this API key")
    # Without idTag, the key's only bound tag is used.
    start = await fleet.result("startCharging", {"stationId": "fora072", "connectorId": 1})
    started = await fleet.result("subscribe", {"stationId": "fora072"})
    assert start["status"] == "pending" and started["subscriptionId"]


async def test_403_stopping_someone_elses_transaction(mobile, charger_factory):
    await charger_factory(connectors=1)
    owner = await mobile("/ws", "full")
    await owner.result("subscribe", {"events": ["transaction.started"]})
    await owner.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "OWNER"})
    tx_id = (await owner.event("transaction.started"))["data"]["transactionId"]
    stranger = await mobile("/ws", "other")
    assert error(await stranger.request("stopCharging", {"transactionId": tx_id}))[0] == 403
    assert (await owner.result("stopCharging", {"transactionId": tx_id}))["status"] == "pending"


async def test_404s(mobile, charger_factory, settings):
    settings.MOBILE_WS_RATE_LIMIT = "100/1"
    await charger_factory(connectors=2)
    client = await mobile("/ws")
    cases = [
        ("getConnectorStatus", {"stationId": "nowhere", "connectorId": 1}, "Unknown station nowhere"),
        ("getConnectorStatus", {"stationId": "fora072", "connectorId": 7}, "Unknown connector 7 on station fora072"),
        ("startCharging", {"stationId": "nowhere", "connectorId": 1, "idTag": "T"}, "Unknown station nowhere"),
        ("startCharging", {"stationId": "fora072", "connectorId": 9, "idTag": "T"},
         "Unknown connector 9 on station fora072"),
        ("stopCharging", {"transactionId": 424242}, "No active transaction matches"),
        ("stopCharging", {"stationId": "fora072", "connectorId": 1}, "No active transaction matches"),
        ("getMeterValuesRecent", {"stationId": "nowhere"}, "Unknown station nowhere"),
        ("subscribe", {"stationId": "nowhere"}, "Unknown station nowhere"),
        ("unsubscribe", {"subscriptionId": "sub-1-001"}, "Unknown subscription sub-1-001"),
    ]
    for action_name, params, message in cases:
        assert error(await client.request(action_name, params)) == (404, message), action_name
    await still_usable(client)


async def test_409_offline_and_busy(mobile, charger_factory):
    await Station.objects.acreate(pk="sleeper")
    charger = await charger_factory(connectors=1)
    client = await mobile("/ws")
    assert error(await client.request("startCharging", {"stationId": "sleeper", "connectorId": 1, "idTag": "T"})) == (
        409, "Station sleeper is offline")
    await charger.cp.send_status(1, "Charging")
    assert error(await client.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "T"})) == (
        409, "Connector 1 is busy (Charging)")


class SilentCharger(SimulatedCharger):
    async def route_message(self, raw_msg):
        if "RemoteStartTransaction" not in raw_msg:
            await super().route_message(raw_msg)


async def test_504_when_the_charger_does_not_answer(mobile, charger_factory, settings):
    settings.OCPP_COMMAND_TIMEOUT = 1
    await charger_factory(connectors=1, cls=SilentCharger)
    client = await mobile("/mobile-client")
    await client.result("subscribe", {"events": ["remote.start.result"]})
    reply = await client.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "T"})
    assert error(reply) == (504, "RemoteStart timeout")
    result = await client.event("remote.start.result")
    assert result["status"] == "Timeout"
    # The /ws dialect was told "pending"; it learns the outcome from the event.
    ws_client = await mobile("/ws")
    await ws_client.result("subscribe", {"events": ["remote.start.result"]})
    pending = await ws_client.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "T"})
    assert pending["status"] == "pending"
    timed_out = await ws_client.event("remote.start.result", correlationId=pending["correlationId"])
    assert timed_out["data"]["status"] == "Timeout"


async def test_pings_answered_while_a_start_waits_for_the_charger(mobile, charger_factory, settings):
    settings.OCPP_COMMAND_TIMEOUT = 2
    await charger_factory(connectors=1, cls=SilentCharger)
    client = await mobile("/mobile-client")
    await client.send({"id": "slow", "action": "startCharging",
                       "params": {"stationId": "fora072", "connectorId": 1, "idTag": "T"}})
    began = asyncio.get_running_loop().time()
    assert (await client.result("ping"))["pong"] is True
    assert asyncio.get_running_loop().time() - began < 1
    assert error(await client.reply_to("slow"))[0] == 504


@pytest.mark.parametrize("path, limit", [("/ws", 1024 * 1024), ("/mobile-client", 32 * 1024)])
async def test_413_message_too_large(mobile, path, limit):
    client = await mobile(path)
    await client.send({"id": "big", "action": "ping", "params": {"pad": "x" * limit}})
    reply = await client.receive()
    assert reply == {"id": "big", "error": {"code": 413, "message": f"Message too large: limit is {limit} bytes"}}
    await client.send({"id": "fits", "action": "ping", "pad": "x" * (limit - 200)})
    assert "result" in await client.receive()
    await still_usable(client)


@pytest.mark.parametrize("path, burst", [("/ws", 10), ("/mobile-client", 50)])
async def test_429_rate_limit_with_retry_after(mobile, path, burst):
    client = await mobile(path)  # auth spent one token
    for n in range(burst + 5):
        await client.send({"id": n, "action": "ping"})
    replies = [await client.receive() for _ in range(burst + 5)]
    limited = [r for r in replies if "error" in r]
    assert len(limited) >= 5 and all(r["error"]["code"] == 429 for r in limited)
    assert all(r["error"]["retryAfterMs"] > 0 for r in limited)
    assert sorted(r["id"] for r in replies) == list(range(burst + 5))  # every message answered
    await asyncio.sleep(max(r["error"]["retryAfterMs"] for r in limited) / 1000)
    await still_usable(client)


@pytest.fixture
def exploding_action():
    @action("explodeForTest")
    async def explode(conn, params):
        raise RuntimeError("something nobody expected")

    yield
    del ACTIONS["explodeForTest"]


async def test_500_has_a_correlation_id_found_in_the_log(mobile, exploding_action, caplog):
    client = await mobile("/ws")
    with caplog.at_level(logging.ERROR, logger="mobileapi"):
        reply = await client.request("explodeForTest")
    code, text = error(reply)
    correlation_id = reply["error"]["correlationId"]
    assert (code, text) == (500, "Internal error") and correlation_id.startswith("err-")
    logged = [r for r in caplog.records if correlation_id in r.getMessage()]
    assert logged and logged[0].exc_info and "something nobody expected" in str(logged[0].exc_info[1])
    await still_usable(client)


async def test_every_message_is_logged_with_the_key_id_never_the_key(mobile, keys, caplog):
    with caplog.at_level(logging.INFO, logger="mobileapi"):
        client = await mobile("/ws")
        await client.result("getStations")
        await client.request("nope")
    lines = [r.getMessage() for r in caplog.records if r.name == "mobileapi"]
    assert any(line.startswith("[WS-API:AUTH]") for line in lines)
    assert any(line.startswith("[WS-API:GETSTATIONS]") and "code=200" in line for line in lines)
    assert any(line.startswith("[WS-API:NOPE]") or "code=400" in line for line in lines)
    assert not any(keys["full"] in line for line in lines)
    assert json.dumps(lines)


async def test_outcome_is_recorded_when_the_app_leaves_while_waiting(mobile, charger_factory, settings):
    from csms.models import Event
    from tests.conftest import eventually

    settings.OCPP_COMMAND_TIMEOUT = 1
    await charger_factory(connectors=1, cls=SilentCharger)
    client = await mobile("/mobile-client")
    await client.send({"id": "s", "action": "startCharging",
                       "params": {"stationId": "fora072", "connectorId": 1, "idTag": "T"}})
    await asyncio.sleep(0.2)
    await client.close()  # gone before the charger's (non-)answer

    async def recorded():
        return await Event.objects.filter(kind="remote.start.result", data__status="Timeout").aexists()

    await eventually(recorded, timeout=5)
