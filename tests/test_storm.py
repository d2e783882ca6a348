"""Connection storms: handshakes beyond what the process can serve are refused at once
(HTTP 503 with Retry-After), and a station is online only once its socket is accepted.

Measured before: 2,000 chargers opening within 5 s, only 294-400 connected
(daphne dropped the rest at its 5 s handshake timeout) while the database
showed up to 1,811 stations online. Here the load is a real one, made small:
the process's single ORM thread is kept busy (as a queue of handshakes keeps
it busy in a storm), so the handshakes that arrive meanwhile stay in flight.
The storm itself is measured by bench/storm.py (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from urllib.parse import urlparse

import pytest
import websockets
from channels.db import database_sync_to_async
from django.utils import timezone
from ocpp.v16 import call

from csms.models import Event
from simulator.v16 import connect
from stations.models import Station
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def busy_orm_thread(seconds: float) -> asyncio.Future:
    """Occupy the process's ORM thread, as a queue of handshakes does in a storm."""
    return asyncio.ensure_future(database_sync_to_async(time.sleep)(seconds))


async def attempt(url: str, station_id: str) -> tuple[float, object]:
    """Open a charger's socket; (seconds it took, the socket or the refusal)."""
    began = time.monotonic()
    try:
        result: object = await connect(url, station_id, open_timeout=10)
    except (websockets.InvalidStatus, websockets.InvalidMessage) as refusal:  # refused; dropped unanswered
        result = refusal
    return time.monotonic() - began, result


async def abandon_handshake(server: str, path: str, after: float) -> None:
    """Send a WebSocket upgrade request and drop the TCP connection before any answer."""
    address = urlparse(server)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(after)
    assert not reader.at_eof() and not reader._buffer, "the server answered before the client left"
    writer.transport.abort()


async def station(station_id: str) -> Station | None:
    return await Station.objects.filter(pk=station_id).afirst()


async def connected_events(station_id: str) -> int:
    return await Event.objects.filter(kind="station.connected", station_id=station_id).acount()


async def test_handshakes_beyond_the_limit_get_503_with_retry_after_at_once(server, settings):
    settings.WS_MAX_PENDING_HANDSHAKES = 3
    settings.WS_HANDSHAKE_RETRY_AFTER = 2
    settings.WS_HANDSHAKE_QUEUE_MS = 0  # no wait for a slot
    blocker = busy_orm_thread(2.0)
    await asyncio.sleep(0.05)
    attempts = [asyncio.ensure_future(attempt(f"{server}/ocpp", f"storm{i:02d}")) for i in range(10)]
    done, pending = await asyncio.wait(attempts, timeout=1.0)

    # Beyond the 3 in flight, each is refused fast (not left to time out) with a Retry-After.
    refused = [task.result() for task in done]
    assert len(refused) == 7 and len(pending) == 3
    for took, refusal in refused:
        assert isinstance(refusal, websockets.InvalidStatus)
        assert refusal.response.status_code == 503
        assert 2 <= int(refusal.response.headers["Retry-After"]) <= 4
        assert took < 1.0
    with pytest.raises(websockets.InvalidStatus) as app_refused:  # the mobile API: the same admission
        await websockets.connect(f"{server}/ws")
    assert app_refused.value.response.status_code == 503

    # Those let in connect once the process gets to them.
    await blocker
    admitted = [ws for _, ws in await asyncio.gather(*pending)]
    assert all(isinstance(ws, websockets.ClientConnection) for ws in admitted)
    online = [s async for s in Station.objects.filter(is_online=True).values_list("pk", flat=True)]
    assert len(online) == 3
    # The refused left nothing behind, and connect when they come back.
    refused_ids = {f"storm{i:02d}" for i in range(10)} - set(online)
    assert not await Station.objects.filter(pk__in=refused_ids).aexists()
    later = [(await attempt(f"{server}/ocpp", sid))[1] for sid in sorted(refused_ids)]
    assert all(isinstance(ws, websockets.ClientConnection) for ws in later), later

    async def all_online() -> bool:
        return await Station.objects.filter(is_online=True).acount() == 10

    await eventually(all_online)
    for ws in admitted + later:
        await ws.close()


async def test_handshakes_beyond_the_limit_wait_for_a_slot_first_come_first_served(server, settings):
    # Measured with 10,000 new chargers at 500/s: refused at once, chargers
    # waited out their Retry-After while the process sat idle.
    settings.WS_MAX_PENDING_HANDSHAKES = 2
    settings.WS_HANDSHAKE_QUEUE_MS = 4000
    blocker = busy_orm_thread(1.0)
    await asyncio.sleep(0.05)
    attempts = []
    for i in range(6):  # one after another, so that the order they wait in is known
        attempts.append(asyncio.ensure_future(attempt(f"{server}/ocpp", f"queued{i}")))
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*attempts)
    assert all(isinstance(ws, websockets.ClientConnection) for _, ws in results), results  # no 503
    connected_at = [(await station(f"queued{i}")).connected_at for i in range(6)]
    assert connected_at[2:] == sorted(connected_at[2:])  # the waiting ones in their order of arrival
    await blocker
    for _, ws in results:
        await ws.close()


async def test_a_handshake_that_waited_its_time_for_a_slot_gets_the_503(server, settings):
    settings.WS_MAX_PENDING_HANDSHAKES = 1
    settings.WS_HANDSHAKE_QUEUE_MS = 500
    blocker = busy_orm_thread(2.5)
    await asyncio.sleep(0.05)
    holder = asyncio.ensure_future(attempt(f"{server}/ocpp", "holder01"))
    await asyncio.sleep(0.1)
    took, refusal = await attempt(f"{server}/ocpp", "waited01")
    assert isinstance(refusal, websockets.InvalidStatus) and refusal.response.status_code == 503
    assert 0.5 <= took < 1.5
    await blocker
    _, ws = await holder
    assert isinstance(ws, websockets.ClientConnection)
    await ws.close()
    assert not await Station.objects.filter(pk="waited01").aexists()


async def test_refused_charger_waits_out_retry_after_then_connects(server, settings, caplog):
    """The simulator (make demo's charger, the bench's) honours 503/Retry-After with a jittered backoff."""
    from simulator.v16 import ChargerState, ReconnectBackoff, run_charger

    settings.WS_MAX_PENDING_HANDSHAKES = 1
    settings.WS_HANDSHAKE_RETRY_AFTER = 1
    settings.WS_HANDSHAKE_QUEUE_MS = 0
    blocker = busy_orm_thread(1.0)
    await asyncio.sleep(0.05)
    holder = asyncio.ensure_future(attempt(f"{server}/ocpp", "first01"))  # takes the one place
    await asyncio.sleep(0.2)
    began = time.monotonic()
    charger = asyncio.ensure_future(run_charger(
        f"{server}/ocpp", ChargerState.new("late01", 1), backoff=ReconnectBackoff(minimum=0.1, maximum=1)))
    try:
        async def booted() -> bool:
            found = await station("late01")
            return found is not None and found.is_online and found.last_boot_at is not None

        await eventually(booted, timeout=10)
        waited = time.monotonic() - began
        assert any("HTTP 503" in record.getMessage() for record in caplog.records)
        assert waited >= 1.0  # not before the Retry-After, although its own backoff was 0.1 s
        assert await connected_events("late01") == 1
    finally:
        charger.cancel()
        await blocker
        _, ws = await holder
        await ws.close()


def test_reconnect_backoff_is_jittered_exponential_and_honours_retry_after():
    from simulator.v16 import ReconnectBackoff

    backoff = ReconnectBackoff(minimum=1, maximum=8)
    waits = [backoff.next_delay() for _ in range(6)]
    for wait, floor in zip(waits, [1, 2, 4, 8, 8, 8]):
        assert floor <= wait <= 2 * floor
    assert 30 <= backoff.next_delay(retry_after=30) <= 37.5  # the server spreads its Retry-After already
    backoff.reset()
    assert 1 <= backoff.next_delay() <= 2
    spread = {round(ReconnectBackoff().next_delay(), 3) for _ in range(50)}
    assert len(spread) > 40  # chargers that failed together do not come back together


async def test_handshake_abandoned_by_the_client_leaves_no_station_online(server):
    blocker = busy_orm_thread(1.0)
    await asyncio.sleep(0.05)
    await abandon_handshake(server, "/ocpp/ghost01", after=0.3)
    await blocker

    async def registered() -> bool:  # the handshake did reach the consumer (unknown stations are registered)
        return await station("ghost01") is not None

    await eventually(registered)
    await asyncio.sleep(0.5)  # room for anything still queued to write
    assert not (await station("ghost01")).is_online
    assert await connected_events("ghost01") == 0


async def test_station_connected_exactly_once_after_an_abandoned_handshake(server, settings, charger_factory):
    settings.OCPP_PRESENCE_SWEEP_SECONDS = 0.3  # a ghost would be swept (disconnected) and then connect again
    blocker = busy_orm_thread(0.8)
    await asyncio.sleep(0.05)
    await abandon_handshake(server, "/ocpp/fora072", after=0.3)
    await blocker
    await asyncio.sleep(1.0)  # several sweeps

    opening = timezone.now()
    charger = await charger_factory("fora072")
    assert (await station("fora072")).is_online
    await charger.cp.call(call.Heartbeat())
    connected = [e async for e in Event.objects.filter(kind="station.connected", station_id="fora072")]
    assert len(connected) == 1
    assert connected[0].created_at >= opening.replace(microsecond=opening.microsecond // 1000 * 1000)
    assert not await Event.objects.filter(kind="station.disconnected").aexists()
    await charger.close()

    async def offline() -> bool:
        return not (await station("fora072")).is_online

    await eventually(offline)
    assert await Event.objects.filter(kind="station.disconnected").acount() == 1


# --- Under daphne, the production server ---------------------------------------------------


def hold_station_inserts(seconds: float, taken: threading.Event) -> None:
    """In a thread: a transaction that blocks new Station rows for ``seconds`` (the server's
    handshakes of unknown stations, which register them, wait behind it)."""
    from django.db import connection, transaction

    try:
        with transaction.atomic():  # SQLite: BEGIN IMMEDIATE (the write lock)
            if connection.vendor == "postgresql":
                connection.cursor().execute("LOCK TABLE stations_station IN EXCLUSIVE MODE")
            taken.set()
            time.sleep(seconds)
    finally:
        connection.close()


async def test_daphne_refuses_a_burst_with_503_and_its_timed_out_handshakes_leave_no_station_online(
    daphne_process,
):
    url, _ = daphne_process(
        {"WS_MAX_PENDING_HANDSHAKES": "2", "WS_HANDSHAKE_RETRY_AFTER": "1", "WS_HANDSHAKE_QUEUE_MS": "0",
         "OCPP_UNKNOWN_STATIONS": "accept"},
        args=["--websocket_connect_timeout", "2"],
    )
    taken = threading.Event()
    lock = asyncio.ensure_future(asyncio.to_thread(hold_station_inserts, 5.0, taken))
    await asyncio.to_thread(taken.wait, 5)
    # Two handshakes in flight, waiting on the database past daphne's 2 s handshake timeout.
    waiting = [asyncio.ensure_future(attempt(f"{url}/ocpp", f"slow{i}")) for i in range(2)]
    await asyncio.sleep(0.5)
    refused = await asyncio.gather(*(attempt(f"{url}/ocpp", f"burst{i}") for i in range(4)))
    for took, refusal in refused:
        assert isinstance(refusal, websockets.InvalidStatus) and refusal.response.status_code == 503
        assert 1 <= int(refusal.response.headers["Retry-After"]) <= 2
        assert took < 1.5
    for _, result in await asyncio.gather(*waiting):
        assert isinstance(result, websockets.InvalidMessage)  # daphne dropped them unanswered
    await lock

    async def registered() -> bool:  # their handshakes went on in the server once the lock went
        return await Station.objects.filter(pk__in=["slow0", "slow1"]).acount() == 2

    await eventually(registered)
    await asyncio.sleep(1.0)  # room for anything still queued to write
    assert not await Station.objects.filter(is_online=True).aexists()
    assert not await Event.objects.filter(kind="station.connected").aexists()
    ws = await connect(f"{url}/ocpp", "burst0")  # the refused connect now

    async def online() -> bool:
        return (await station("burst0")).is_online

    await eventually(online)
    await ws.close()
