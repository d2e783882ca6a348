"""The server's own limits under real daphne (csms/daphne_support.py): refused
handshakes with the application's HTTP response, 1009 for frames over the
limit, a deadline for connections that never finish their request, and a
lean input queue per connection.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest
import websockets

from csms.daphne_support import InputQueue, install
from tests.conftest import DAPHNE_ARGS, http_json

pytestmark = pytest.mark.django_db(transaction=True)

DAPHNE_MAX_MESSAGE = int(DAPHNE_ARGS[DAPHNE_ARGS.index("--websocket-max-message-size") + 1])
REFUSAL_HEADERS = [(b"retry-after", b"7"), (b"content-type", b"text/plain"), (b"x-csms-refusal", b"busy")]
REFUSAL_BODY = [b"too busy, ", b"come back in 7 s"]  # two chunks: more_body

if os.environ.get("CSMS_TEST_REFUSING_APP"):  # imported by the daphne of test_refused_handshake...
    install()


async def refusing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuses every WebSocket handshake through the ASGI websocket.http.response
    extension - or, where the server does not offer it, the only other way (403)."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.http.response.start", "status": 503, "headers": REFUSAL_HEADERS})
    await send({"type": "websocket.http.response.body", "body": REFUSAL_BODY[0], "more_body": True})
    await send({"type": "websocket.http.response.body", "body": REFUSAL_BODY[1]})
    assert (await receive())["type"] == "websocket.disconnect"


async def test_refused_handshake_gets_the_applications_http_status_headers_and_body(daphne_process):
    url, _ = daphne_process({"CSMS_TEST_REFUSING_APP": "1"}, app="tests.test_server_limits:refusing_app")
    for _ in range(2):  # the server stays fine after a refusal
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{url}/ocpp/anything", open_timeout=5)
        response = refused.value.response
        assert response.status_code == 503
        assert response.reason_phrase == "Service Unavailable"
        for name, value in REFUSAL_HEADERS:
            assert response.headers[name.decode()] == value.decode()
        assert response.body == b"".join(REFUSAL_BODY)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the listen backlog")
async def test_daphne_listens_on_b_and_p_with_the_configured_backlog(daphne_process):
    # daphne -b/-p listen with Twisted's 50; a storm overflows it (bench/RESULTS.md, section 4).
    url, _ = daphne_process({"LISTEN_BACKLOG": "300"})
    port = url.rsplit(":", 1)[1]
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
    fields = listening.stdout.split()
    assert fields[0] == "LISTEN" and fields[2] == "300", listening.stdout  # Send-Q of a listener: its backlog


def test_a_refusal_after_the_handshake_was_dropped_is_dropped_too_not_an_error():
    # autobahn's opening-handshake timeout (daphne's 5 s) marks the protocol
    # closed at once and tells daphne later, if at all: a 503 that admission
    # control sends in between raised ValueError in the application (measured:
    # 187 "Exception inside application" tracebacks in one 10,000-charger storm).
    from daphne.ws_protocol import WebSocketProtocol

    install()
    protocol = WebSocketProtocol()
    protocol.state = protocol.STATE_CLOSED
    protocol.handle_reply({"type": "websocket.http.response.start", "status": 503, "headers": []})
    protocol.handle_reply({"type": "websocket.http.response.body", "body": b"busy"})
    protocol.state = protocol.STATE_OPEN  # after an accept it is still the application's error
    with pytest.raises(ValueError, match="only valid before the WebSocket is accepted"):
        protocol.handle_reply({"type": "websocket.http.response.start", "status": 503, "headers": []})


async def queue_reporting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then tells the client what kind of queue daphne reads its messages from."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": type(receive.__self__).__name__})
    assert (await receive())["type"] == "websocket.disconnect"


async def test_daphne_feeds_each_connection_from_a_lean_queue(daphne_process):
    url, _ = daphne_process({"CSMS_TEST_REFUSING_APP": "1"}, app="tests.test_server_limits:queue_reporting_app")
    async with websockets.connect(f"{url}/ws") as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "InputQueue"  # not asyncio.Queue: 3.3 KB per connection


async def test_the_input_queue_keeps_order_wakes_its_reader_and_passes_on_a_cancelled_wake_up():
    queue = InputQueue()
    got = []
    for n in range(1000):  # read more slowly than it is filled (compacted as it goes), then drained
        queue.put_nowait(n)
        if n % 3 == 0:
            got.append(queue.get_nowait())
    assert queue.qsize() == 1000 - len(got)
    while not queue.empty():
        got.append(queue.get_nowait())
    assert got == list(range(1000))

    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    assert await asyncio.wait_for(reader, 1) == "a"

    # Two readers wait; the first is woken for an item and cancelled before it runs: the second gets it.
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("b")
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "b"
    assert first.cancelled() and queue.empty() and queue._waiters is None
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


@pytest.mark.parametrize("path", ["/ws", "/ocpp/big1"])
async def test_frame_over_the_servers_limit_is_closed_with_1009(daphne_process, path):
    url, _ = daphne_process()
    ws = await websockets.connect(f"{url}{path}", subprotocols=["ocpp1.6"] if "ocpp" in path else None)
    with pytest.raises(websockets.ConnectionClosed):
        await ws.send("x" * (DAPHNE_MAX_MESSAGE + 1))
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009, f"closed with {ws.close_code} (1006: TCP dropped, no close frame)"
    # The server is fine: the next client is served.
    async with websockets.connect(f"{url}/ws") as other:
        await other.send('{"id": "p", "action": "ping"}')
        assert '"p"' in await asyncio.wait_for(other.recv(), 5)


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


async def test_half_open_connections_are_dropped_within_the_header_timeout(daphne_process):
    timeout = 2
    url, _ = daphne_process({"HTTP_HEADER_TIMEOUT": str(timeout)})
    port = int(url.rsplit(":", 1)[1])
    half_open: dict[str, list[socket.socket]] = {"silent": [], "partial request": [], "dripping": []}
    for kind, sockets in half_open.items():
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            if kind == "partial request":
                sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            sock.setblocking(False)
            sockets.append(sock)
    # What must not be cut: an open WebSocket, and a kept-alive HTTP connection between requests.
    ws = await websockets.connect(f"{url}/ws")
    keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    keep_alive.request("GET", "/admin/login/")
    assert keep_alive.getresponse().read() and keep_alive.sock is not None
    kept_socket = keep_alive.sock

    started = time.monotonic()
    open_after: dict[str, int] = {}
    while time.monotonic() - started < timeout + 3:
        for sock in half_open["dripping"]:  # a byte every 0.5 s: Twisted's idle timer never fires
            try:
                sock.send(b"G")
            except OSError:
                pass
        open_after = {kind: sum(not _closed_by_server(s) for s in sockets) for kind, sockets in half_open.items()}
        if not any(open_after.values()):
            break
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    assert not any(open_after.values()), f"still open after {elapsed:.1f} s: {open_after}"

    await asyncio.sleep(max(0.0, timeout + 1.5 - elapsed))  # past the deadline for these two too
    await ws.send('{"id": "after", "action": "ping"}')
    assert '"after"' in await asyncio.wait_for(ws.recv(), 5)
    await ws.close()
    keep_alive.request("GET", "/admin/login/")  # on the same socket (http.client would raise if it was closed)
    assert keep_alive.getresponse().status == 200 and keep_alive.sock is kept_socket
    keep_alive.close()
    for sock in (s for sockets in half_open.values() for s in sockets):
        sock.close()


async def test_replies_larger_than_the_socket_takes_at_once_arrive_whole_and_in_order(daphne_process, keys):
    """Writes go to the socket at once when nothing is queued (csms/daphne_support.py); what the
    kernel does not take is queued as before. A client reading slowly still gets every byte, in order."""
    import hashlib

    from stations.models import Station

    await Station.objects.abulk_create([Station(pk=f"big{i:05d}", vendor="V" * 40) for i in range(3000)])
    url, _ = daphne_process({"MOBILE_WS_RATE_LIMIT": "1000/1"})
    # A small receive buffer: the server's socket takes part of each reply and queues the rest.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    async with websockets.connect(f"{url}/ws", max_size=None, sock=sock) as ws:
        await ws.send(json.dumps({"id": "a", "action": "auth", "params": {"apiKey": keys["full"]}}))
        assert "result" in json.loads(await ws.recv())
        for n in range(3):
            await ws.send(json.dumps({"id": f"s{n}", "action": "getStations", "params": {}}))
        await asyncio.sleep(1)  # the replies (about 1 MB each) pile up unread
        digests = set()
        for n in range(3):
            text = await asyncio.wait_for(ws.recv(), 20)
            reply = json.loads(text)
            assert reply["id"] == f"s{n}" and len(reply["result"]) == 3000
            digests.add(hashlib.sha256(json.dumps(reply["result"], sort_keys=True).encode()).hexdigest())
        assert len(digests) == 1 and len(text) > 300_000
    status, body = await http_json(url, "GET", "/api/openapi.json")
    assert status == 200 and body["openapi"]
