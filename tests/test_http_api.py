"""The HTTP API under /api/ over real sockets, and its OpenAPI document checked by schemathesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from mobileapi.services import create_api_key
from stations.models import Station, Transaction
from tests.conftest import ROOT, eventually, http_json

pytestmark = pytest.mark.django_db(transaction=True)




async def test_health_and_readiness(server):
    assert await http_json(server, "GET", "/api/health") == (200, {"status": "ok"})
    assert await http_json(server, "GET", "/api/ready") == (
        200, {"status": "ready", "database": True, "channelLayer": True})


async def test_keys_and_scopes(server, keys):
    status, body = await http_json(server, "GET", "/api/stations")
    assert status == 401 and body == {"error": {"code": 401, "message": "Missing or invalid X-API-Key"}}
    assert (await http_json(server, "GET", "/api/stations", "wrong-key"))[0] == 401
    status, body = await http_json(server, "GET", "/api/stations", keys["charging"])
    assert status == 403 and body["error"]["message"] == "Missing scope read:stations"
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", keys["readonly"],
                              {"idTag": "X"})
    assert status == 403 and body["error"]["message"] == "Missing scope write:charging"


async def test_stations_start_stop_transactions_events(server, keys, charger_factory):
    await charger_factory("fora072", connectors=2)
    key = keys["full"]
    status, stations = await http_json(server, "GET", "/api/stations", key)
    assert status == 200 and stations[0]["id"] == "fora072" and stations[0]["status"] == "Available"
    assert [c["id"] for c in stations[0]["connectors"]] == [1, 2]
    status, body = await http_json(server, "GET", "/api/stations/nope", key)
    assert status == 404 and body["error"]["message"] == "Unknown station nope"
    status, body = await http_json(server, "GET", "/api/stations/fora072/connectors/9", key)
    assert status == 404
    status, body = await http_json(server, "GET", "/api/stations/fora072/connectors/abc", key)
    assert status == 400 and body["error"]["code"] == 400

    status, started = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", key,
                                 {"idTag": "HTTP-1"})
    assert status == 200 and started["status"] == "Accepted" and started["correlationId"].startswith("corr-")

    async def running():
        return await Transaction.objects.filter(id_tag="HTTP-1", stopped_at__isnull=True).afirst()

    tx = await eventually(running)
    assert tx.started_by_key_id is not None and tx.start_correlation_id == started["correlationId"]
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", key, {"idTag": "HTTP-2"})
    assert status == 409  # busy
    status, connector = await http_json(server, "GET", "/api/stations/fora072/connectors/1", key)
    assert status == 200 and connector["transactionId"] == tx.pk

    status, body = await http_json(server, "POST", f"/api/transactions/{tx.pk}/stop", keys["other"])
    assert status == 403  # not this key's transaction
    status, stopped = await http_json(server, "POST", f"/api/transactions/{tx.pk}/stop", key)
    assert status == 200 and stopped["status"] == "Accepted" and stopped["transactionId"] == tx.pk

    async def done():
        return await Transaction.objects.filter(pk=tx.pk, stopped_at__isnull=False).aexists()

    await eventually(done)
    status, page = await http_json(server, "GET", "/api/transactions?status=completed&stationId=fora072&limit=5", key)
    assert status == 200 and [t["transactionId"] for t in page["items"]] == [tx.pk] and not page["items"][0]["active"]
    status, page = await http_json(server, "GET", "/api/transactions?status=active", key)
    assert page["items"] == []
    status, page = await http_json(server, "GET", "/api/transactions", keys["other"])
    assert page["items"] == []  # only the key's own
    status, page = await http_json(server, "GET", "/api/transactions?limit=0", key)
    assert status == 400

    status, events = await http_json(server, "GET", "/api/events?limit=3", key)
    assert status == 200 and len(events["events"]) == 3 and events["hasMore"]
    status, rest = await http_json(server, "GET", f"/api/events?since={events['lastEventId']}&limit=1000", key)
    kinds = [e["kind"] for e in rest["events"]]
    assert "transaction.started" in kinds and "transaction.stopped" in kinds and not rest["hasMore"]
    seqs = [int(e["eventId"].rsplit("-", 1)[1]) for e in events["events"] + rest["events"]]
    assert seqs == sorted(set(seqs))  # in order, none twice
    status, body = await http_json(server, "GET", "/api/events?since=garbage", key)
    assert status == 400


def test_openapi_document_and_schemathesis(daphne_process):
    raw_key = create_api_key("Schemathesis", ["read:stations", "write:charging"])[1]
    url, _ = daphne_process({"OCPP_COMMAND_TIMEOUT": "2"})
    base = url.replace("ws://", "http://")
    with urllib.request.urlopen(f"{base}/api/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.") and "/api/stations" in document["paths"]
    assert document["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-Key"
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", f"{base}/api/openapi.json",
         "--header", f"X-API-Key: {raw_key}", "--max-examples", "30", "--request-timeout", "30", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--seed", "1", "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=500,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "schemathesis.txt").write_text(done.stdout)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    operations = {path: set(methods) for path, methods in document["paths"].items()}
    assert sum(len(m) for m in operations.values()) == 9
    assert "9 selected" in done.stdout or "9 operations" in done.stdout, done.stdout[-3000:]


# --- Any registered command: POST /api/stations/{id}/commands/{name} --------------------------------

async def test_any_registered_command_and_its_errors(server, keys, charger_factory, settings):
    from tests.test_commands import SilentOnReset

    key = keys["operator"]
    await charger_factory("fora072", connectors=2, cls=SilentOnReset)
    url = "/api/stations/fora072/commands"
    assert await http_json(server, "POST", f"{url}/unlock", key, {"connector": 2}) == (200, {"status": "Unlocked"})
    assert await http_json(server, "POST", f"{url}/clear_cache", key) == (200, {"status": "Accepted"})
    status, answer = await http_json(server, "POST", f"{url}/get_configuration", key, {"keys": ["Nope"]})
    assert status == 200 and answer == {"configurationKey": [], "unknownKey": ["Nope"]}
    assert await http_json(server, "POST", f"{url}/warp", key, {}) == (
        404, {"error": {"code": 404, "message": "Unknown command warp"}})
    assert await http_json(server, "POST", "/api/stations/ghost/commands/clear_cache", key) == (
        404, {"error": {"code": 404, "message": "Unknown station ghost"}})
    assert await http_json(server, "POST", f"{url}/reset", key, {"type": "Medium"}) == (
        400, {"error": {"code": 400, "message": "type must be one of Soft, Hard"}})
    assert (await http_json(server, "POST", f"{url}/reset", key, b"[1]"))[0] == 400
    for app in ("readonly", "full"):  # a phone app's key, even with write:charging, operates no charger
        status, body = await http_json(server, "POST", f"{url}/reset", keys[app], {"type": "Soft"})
        assert status == 403 and body["error"]["message"] == "Missing scope operate:stations"
    settings.OCPP_COMMAND_TIMEOUT = 1
    status, body = await http_json(server, "POST", f"{url}/reset", key, {"type": "Hard"})
    assert status == 504 and body["error"]["message"] == "Reset timeout: station fora072 did not answer in 1 s"
    await Station.objects.acreate(pk="sleeper")
    status, body = await http_json(server, "POST", "/api/stations/sleeper/commands/clear_cache", key)
    assert status == 409 and body["error"]["message"] == "Station sleeper is offline"


async def test_a_command_the_charger_answers_with_a_callerror_is_502(server, keys, charger_factory):
    from ocpp.v16 import ChargePoint as BareChargePoint

    class Bare(BareChargePoint):
        def __init__(self, state, connection):
            super().__init__(state.station_id, connection)
            self.state, self.tasks = state, set()

        async def boot(self):
            return None

    await charger_factory(cls=Bare)
    status, body = await http_json(server, "POST", "/api/stations/fora072/commands/reset", keys["operator"],
                                   {"type": "Soft"})
    assert status == 502 and "NotImplemented" in body["error"]["message"]


async def test_start_and_stop_as_commands_follow_the_keys_rules(server, keys, charger_factory):
    await charger_factory("fora072", connectors=2)
    url = "/api/stations/fora072/commands"
    status, body = await http_json(server, "POST", f"{url}/remote_start", keys["operator"], {"connector": 1,
                                                                                             "idTag": "OPS"})
    assert status == 403 and body["error"]["message"] == "Missing scope write:charging"
    status, body = await http_json(server, "POST", f"{url}/remote_start", keys["bound"], {"connector": 1,
                                                                                          "idTag": "OTHER"})
    assert status == 403
    status, started = await http_json(server, "POST", f"{url}/remote_start", keys["bound"], {"connector": 1})
    assert status == 200 and started["status"] == "Accepted" and started["correlationId"].startswith("corr-")

    async def running():
        return await Transaction.objects.filter(id_tag="FLEET-1", stopped_at__isnull=True).afirst()

    tx = await eventually(running)
    status, body = await http_json(server, "POST", f"{url}/remote_stop", keys["other"], {"transaction": tx.pk})
    assert status == 403 and body["error"]["message"] == "This transaction was not started with this API key or its idTags"
    status, stopped = await http_json(server, "POST", f"{url}/remote_stop", keys["bound"], {"transaction": tx.pk})
    assert status == 200 and stopped["status"] == "Accepted" and stopped["correlationId"].startswith("corr-stop-")
