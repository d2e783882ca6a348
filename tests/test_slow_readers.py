"""Clients that do not read: what the server queues for them is bounded.

A phone on a bad network keeps asking (or stays subscribed) but takes its
replies slowly or not at all. Under daphne a send never waits, so what the
client does not take piles up in the server's memory: past
WEBSOCKET_SEND_BUFFER_BYTES the connection is closed with 4005 and its buffer
dropped (csms/daphne_support.py). Under uvicorn a send waits for the socket to
drain instead, which must not hold up the push hub's fan-out to everyone else
(mobileapi/hub.py).

The slow clients here are raw TCP sockets with a tiny receive buffer that do
the WebSocket handshake by hand and then never read.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations.models import Connector, Station
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

STATIONS = 300  # getStations answers ~100 KB
READERS = 5
SLOW_READER_CLOSE_CODE = 4005


class NonReadingWebSocket:
    """A WebSocket client over a plain socket, which stops reading when the test says so.

    Blocking steps run in a thread, and sends never block: the server may run
    in the test's own event loop (uvicorn).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.unsent = b""
        self.closed_by_server = False
        self.requests = 0

    @classmethod
    async def open(cls, url: str, path: str) -> NonReadingWebSocket:
        return cls(await asyncio.to_thread(cls._handshake, url, path))

    @staticmethod
    def _handshake(url: str, path: str) -> socket.socket:
        host, port = url.removeprefix("ws://").split(":")
        sock = socket.socket()
        # Set before connect so that the window the client offers stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(1)  # byte by byte: nothing after the headers is consumed
        assert response.startswith(b"HTTP/1.1 101"), response
        return sock

    def send_text(self, text: str) -> None:
        """Queue one masked text frame and send what the socket takes now; notes a reset."""
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        self.unsent += bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        try:
            self.unsent = self.unsent[self.sock.send(self.unsent, socket.MSG_DONTWAIT):]
        except BlockingIOError:
            pass
        except OSError:  # reset by the server (or the pipe broken)
            self.closed_by_server = True

    def request(self, action: str, params: dict | None = None) -> None:
        self.requests += 1
        self.send_text(json.dumps({"id": f"r{self.requests}", "action": action, "params": params or {}}))

    async def read_text(self) -> str:
        """One (unfragmented, server-to-client) text frame."""
        return await asyncio.to_thread(self._read_text)

    def _read_text(self) -> str:
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exactly(8))[0]
        assert first & 0x0F == 1, f"opcode {first & 0x0F}"
        return self._exactly(length).decode()

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    async def authenticate(self, api_key: str) -> None:
        """auth and subscribe to every event, reading both replies - the last reads."""
        self.request("auth", {"apiKey": api_key})
        assert '"ok"' in await self.read_text()
        self.request("subscribe", {"events": ["all"]})  # pushes are sends too
        assert '"result"' in await self.read_text()

    def close(self) -> None:
        self.sock.close()


def metrics_text(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/metrics")
    try:
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def many_stations(transactional_db) -> None:
    Station.objects.bulk_create(
        Station(pk=f"slow{n:04}", name=f"Slow reader test station {n}", vendor="Test", model="Model S")
        for n in range(STATIONS)
    )
    Connector.objects.bulk_create(
        Connector(station_id=f"slow{n:04}", number=c) for n in range(STATIONS) for c in range(1, 5)
    )


async def test_unread_replies_close_the_reader_with_4005_and_memory_stays_bounded(
    daphne_process, keys, many_stations, tmp_path
):
    url, process = daphne_process({"LOG_DIR": str(tmp_path), "LOG_LEVEL": "INFO",
                                   "MOBILE_WS_RATE_LIMIT": "100/1"})
    normal = await MobileClient.connect(url, "/ws", keys["readonly"])
    reply = await normal.request("getStations")  # also computes the process's station snapshot once
    reply_bytes = len(json.dumps(reply))
    await normal.result("subscribe", {"events": ["all"]})
    rss_before = rss_bytes(process.pid)

    readers = [await NonReadingWebSocket.open(url, "/ws") for _ in range(READERS)]
    for reader in readers:
        await reader.authenticate(keys["readonly"])
    # From here on the readers never read. Each asks at 80/s, inside its rate limit (100/s).
    rss_peak, started, answered = rss_before, time.monotonic(), 0
    while time.monotonic() - started < 8 and not all(r.closed_by_server for r in readers):
        for reader in readers:
            if not reader.closed_by_server:
                reader.request("getStations")
        rss_peak = max(rss_peak, rss_bytes(process.pid))
        await asyncio.sleep(0.0125)
        if time.monotonic() - started > answered:  # about once a second: the normal client is served
            answered += 1
            assert (await normal.result("ping", timeout=3)) is not None
    growth_mb = (rss_peak - rss_before) / 1e6
    sent_mb = sum(r.requests for r in readers) * reply_bytes / 1e6
    assert all(r.closed_by_server for r in readers), (
        f"after {time.monotonic() - started:.0f} s {sum(not r.closed_by_server for r in readers)} of {READERS} "
        f"readers still open; the server grew {growth_mb:.0f} MB holding {sent_mb:.0f} MB of unread replies")
    assert growth_mb < 60, f"server grew {growth_mb:.0f} MB"

    # Each was logged once, with its code; the normal client still gets answers and pushes.
    lines = [line for log in tmp_path.glob("app-*.log") for line in log.read_text().splitlines()
             if "slow reader" in line]
    assert len(lines) == READERS and all(f"closed with {SLOW_READER_CLOSE_CODE}" in line for line in lines), lines
    # ... counted, and each reader's connection was torn down in the app (only the normal one is left).
    port = int(url.rsplit(":", 1)[1])
    await eventually(lambda: asyncio.to_thread(
        lambda: {'csms_server_connections_dropped_total{reason="slow_reader"} 5.0', "csms_mobile_connections 1.0"}
        <= set(metrics_text(port).splitlines())))
    assert len(await normal.result("getStations")) >= STATIONS
    ws = await connect(f"{url}/ocpp", "slow0001")
    charger = SimulatedCharger(ChargerState.new("slow0001", 4), ws)
    serving = asyncio.create_task(charger.start())
    try:
        await charger.boot()
        await normal.event("station.connected", timeout=5, stationId="slow0001")
    finally:
        serving.cancel()
        await ws.close()
        await normal.close()
        for reader in readers:
            reader.close()


async def test_a_slow_subscriber_does_not_hold_up_everyone_elses_pushes(
    server, keys, many_stations, charger_factory, settings
):
    """Under uvicorn (the ``server`` fixture) a send to a socket that does not drain waits."""
    settings.MOBILE_WS_RATE_LIMIT = "100/1"
    normal = await MobileClient.connect(server, "/ws", keys["readonly"])
    await normal.result("subscribe", {"events": ["all"]})
    slow = await NonReadingWebSocket.open(server, "/ws")
    try:
        await slow.authenticate(keys["readonly"])
        for _ in range(80):  # ~12 MB of replies it never reads: its socket stops draining
            slow.request("getStations")
            await asyncio.sleep(0.0125)
        # A charger's boot: station.connected, then a status push per connector.
        await charger_factory("slow0002", connectors=4)
        try:
            for connector in range(1, 5):
                await normal.event("connector.status.changed", timeout=5, stationId="slow0002", connectorId=connector)
        except TimeoutError:
            pytest.fail("the push hub is held up by the subscriber that does not read")
        assert (await normal.result("ping")) is not None
    finally:
        slow.close()
        await normal.close()
