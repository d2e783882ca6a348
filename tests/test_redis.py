"""The Redis channel layer: measured pitfalls and the command service across processes.

These need the local Redis; they skip without it, and fail in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from ocpp.v16 import call

from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations import commands
from stations.models import Station, Transaction
from tests.conftest import REDIS_TEST_URL, ROOT, eventually, server_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


async def test_idle_socket_outlives_redis_read_timeout(redis_layer, charger_factory):
    """redis-py 8 times socket reads out after 5 s; idle consumers used to die with 1011."""
    charger = await charger_factory()
    await asyncio.sleep(7)
    assert charger.ws.close_code is None
    assert await commands.send_command("fora072", "ClearCache") == {"status": "Accepted"}
    await charger.cp.call(call.Heartbeat())


@pytest.mark.slow
async def test_two_hundred_chargers_connect_and_answer_at_once(redis_layer, server, settings):
    """redis-py 8's pool of 100 connections made the 101st concurrent user fail."""
    # All 200 in flight at once, as this is about the Redis pool: admission
    # control (tests/test_storm.py) would refuse half of them with 503.
    settings.WS_MAX_PENDING_HANDSHAKES = 0
    ids = [f"burst{n:03}" for n in range(200)]
    sockets = await asyncio.gather(*(connect(f"{server}/ocpp", station_id) for station_id in ids))
    clients = [SimulatedCharger(ChargerState.new(station_id, 1), ws) for station_id, ws in zip(ids, sockets)]
    tasks = [asyncio.create_task(cp.start()) for cp in clients]
    try:
        assert all(ws.subprotocol == "ocpp1.6" for ws in sockets)

        async def all_online():
            return await Station.objects.filter(is_online=True).acount() == 200

        await eventually(all_online, timeout=30)
        answers = await asyncio.gather(
            *(commands.send_command(station_id, "ClearCache", timeout=20) for station_id in ids),
            return_exceptions=True,
        )
        assert [repr(a) for a in answers if isinstance(a, BaseException)] == []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_layer_survives_three_hundred_concurrent_operations(redis_layer):
    """With redis-py 8's default pool (100), 200 of 300 concurrent group_add/send failed
    with MaxConnectionsError - what a burst of subscribing clients does."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(300)]
    added = await asyncio.gather(*(layer.group_add("burst", c) for c in channels), return_exceptions=True)
    assert [repr(r) for r in added if isinstance(r, BaseException)] == []
    sent = await asyncio.gather(*(layer.send(c, {"type": "ping"}) for c in channels), return_exceptions=True)
    assert [repr(r) for r in sent if isinstance(r, BaseException)] == []
    received = await asyncio.wait_for(asyncio.gather(*(layer.receive(c) for c in channels)), 20)
    assert len(received) == 300
    await layer.flush()


async def run_charger(url: str, station_id: str, state: ChargerState | None = None):
    state = state or ChargerState.new(station_id, 2, meter_interval=0.2)
    ws = await connect(f"{url}/ocpp", station_id)
    cp = SimulatedCharger(state, ws)
    task = asyncio.create_task(cp.start())
    await cp.boot()
    return cp, ws, task


async def test_commands_reach_chargers_on_other_processes(redis_layer, daphne_process):
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer}
    url_a, _ = daphne_process(env)
    url_b, _ = daphne_process(env)
    cp_a, ws_a, task_a = await run_charger(url_a, "on-a")
    cp_b, ws_b, task_b = await run_charger(url_b, "on-b")
    try:
        # This test process is a third process on the same Redis.
        assert await commands.send_command("on-a", "ClearCache") == {"status": "Accepted"}
        assert await commands.send_command("on-b", "ClearCache") == {"status": "Accepted"}
        status = await commands.remote_start("on-a", 1, "TAG-A", correlation_id="corr-x")
        assert status == "Accepted"

        async def started():
            return await Transaction.objects.filter(station_id="on-a", start_correlation_id="corr-x").afirst()

        tx = await eventually(started)
        # A management command, in a process of its own, reaches the charger on A.
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "station_command", "on-a", "GetConfiguration", '{"key": ["HeartbeatInterval"]}'],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, **env, "DATABASE_URL": server_database_url()},
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["configurationKey"][0]["key"] == "HeartbeatInterval"
        status, _, _ = await commands.remote_stop(transaction_id=tx.pk)
        assert status == "Accepted"
    finally:
        for task, ws in ((task_a, ws_a), (task_b, ws_b)):
            task.cancel()
            await ws.close()


async def test_reconnect_to_another_process_replaces_the_old_socket(redis_layer, daphne_process):
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer}
    url_a, _ = daphne_process(env)
    url_b, _ = daphne_process(env)
    state = ChargerState.new("mover", 2)
    cp_a, ws_a, task_a = await run_charger(url_a, "mover", state)
    request = call.StartTransaction(connector_id=1, id_tag="T", meter_start=7, timestamp="2026-01-01T10:00:00Z")
    first = await cp_a.call(request)
    cp_b, ws_b, task_b = await run_charger(url_b, "mover", state)
    try:
        await asyncio.wait_for(ws_a.wait_closed(), 10)
        assert ws_a.close_code == 4001
        again = await cp_b.call(request)  # re-sent after the reconnect
        assert again.transaction_id == first.transaction_id
        assert await Transaction.objects.acount() == 1
        station = await Station.objects.aget(pk="mover")
        assert station.is_online
        # Commands now go to the new socket on B.
        assert await commands.send_command("mover", "ClearCache") == {"status": "Accepted"}
    finally:
        task_a.cancel()
        task_b.cancel()
        await ws_b.close()

