"""Admission control for WebSocket handshakes: refuse at once what the process cannot serve in time.

A handshake costs the process work before the client sees the socket open
(for a charger: its credentials are read in the ORM thread, then it is marked
online). When thousands of clients arrive at once (every charger of a network
reconnecting after an outage), that work queues, and each handshake waits
behind all the others. daphne drops a handshake that waits longer than 5 s,
but the queued work still runs: measured with 2,000 chargers opening within
5 s, only 294-400 connected and the rest timed out and came back, again and
again. Beyond ``WS_MAX_PENDING_HANDSHAKES`` handshakes in flight, this wrapper
answers a new one with HTTP 503 and a ``Retry-After`` (spread over
[WS_HANDSHAKE_RETRY_AFTER, 2 x WS_HANDSHAKE_RETRY_AFTER] seconds so that
clients that obey it exactly do not come back together), so that the
handshakes let in complete quickly and the others come back later.

Before that 503, a handshake beyond the limit waits up to
``WS_HANDSHAKE_QUEUE_MS`` for a slot (first come, first served; a slot
freed goes straight to the longest waiting one). Measured with 10,000 new
chargers at 500/s: refused at once, they spent most of the storm waiting out
their Retry-After while the process sat idle (0 % CPU for seconds with 1,500
chargers still out); a short wait keeps the process busy with the storm
instead. The wait must end well before the server's own handshake timeout
(daphne: 5 s from the upgrade request), or the handshake is dropped unanswered.

A handshake is in flight from its ``websocket.connect`` until the application
has answered it (``websocket.accept``, ``websocket.close`` or an HTTP
response) and its connect handler has finished (it asks for the next
message): a charger is marked online after the accept, and that work counts.

The 503 goes out through the ASGI ``websocket.http.response`` extension when
the server offers it (uvicorn does); otherwise the handshake is closed before
accept, which servers answer with HTTP 403.

The wrapper also tells the application whether its client left during the
handshake (``handshake_abandoned``): daphne silently drops an accept sent
after the client went away, so without it the consumer would mark online a
station whose socket never opened.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from csms import metrics

log = logging.getLogger("csms.admission")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
SCOPE_KEY = "csms.handshake"
REFUSAL_LOG_SECONDS = 10.0  # one summary line per period, not one line per refused client


def endpoint(path: str) -> str:
    """A bounded metric label for a WebSocket path."""
    if path.startswith("/ocpp/"):
        return "ocpp"
    if path.rstrip("/") in ("/ws", "/mobile-client"):
        return "mobile"
    return "other"


def handshake_abandoned(scope: Scope) -> bool:
    """True if the client went away before the application's accept reached it."""
    handshake = scope.get(SCOPE_KEY)
    return handshake is not None and handshake.abandoned


class Handshake:
    """One WebSocket connection while its handshake is in flight, as the application sees it."""

    def __init__(self, admission: HandshakeAdmission, receive: Receive, send: Send) -> None:
        self._admission = admission
        self._receive = receive
        self._send = send
        self._received_connect = False
        self._next: asyncio.Future | None = None  # the server's next message, read ahead
        self._settled = False
        self.abandoned = False

    async def receive(self) -> dict[str, Any]:
        if not self._received_connect:
            self._received_connect = True
            message = await self._receive()
            # Watch for the client leaving while the application handles the
            # connect. At most this one message is read ahead; after it the
            # server's own flow control applies again.
            self._next = asyncio.ensure_future(self._receive())
            return message
        if self._next is not None:
            upcoming, self._next = self._next, None
            self.settle()  # the application's connect handler has finished
            return await upcoming
        return await self._receive()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and not self._settled:
            await asyncio.sleep(0)  # let a disconnect that already arrived reach the watch
            if self._client_left():
                self.abandoned = True
                return  # nobody to accept; the queued disconnect follows
            try:
                await self._send(message)
            except OSError:  # ASGI: sending on a closed connection raises an OSError subclass
                self.abandoned = True
            return
        if kind in ("websocket.close", "websocket.http.response.start") and not self._settled:
            self.settle()  # refused by the application: nothing more to wait for
        await self._send(message)

    def _client_left(self) -> bool:
        upcoming = self._next
        return (
            upcoming is not None and upcoming.done() and not upcoming.cancelled()
            and upcoming.exception() is None and upcoming.result()["type"] == "websocket.disconnect"
        )

    def settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._admission.release()

    def finish(self) -> None:
        self.settle()
        if self._next is not None and not self._next.done():
            self._next.cancel()


class HandshakeAdmission:
    """ASGI middleware: at most ``WS_MAX_PENDING_HANDSHAKES`` WebSocket handshakes in flight per process."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.pending = 0
        # Handshakes waiting for a slot, oldest first; each future is set True
        # when a freed slot is handed to it, False when its wait is over.
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._refused_since_log = 0
        self._last_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        limit = settings.WS_MAX_PENDING_HANDSHAKES
        if limit and self.pending >= limit:
            if not await self._wait_for_slot(settings.WS_HANDSHAKE_QUEUE_MS / 1000):
                await self._refuse(scope, receive, send, limit)
                return
        else:
            self.pending += 1
        metrics.handshakes_pending.set(self.pending)
        handshake = Handshake(self, receive, send)
        try:
            await self.app({**scope, SCOPE_KEY: handshake}, handshake.receive, handshake.send)
        finally:
            handshake.finish()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiting if not waiter.done())

    async def _wait_for_slot(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a handshake slot; True once one is handed over (and counted)."""
        if seconds <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        timer = asyncio.get_running_loop().call_later(seconds, _settle_waiter, waiter, False)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed a slot, then cancelled before using it: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def release(self) -> None:
        """A handshake slot is free: hand it to the longest waiting handshake, else count it free."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes on: pending stays as it is
                return
        self.pending -= 1
        metrics.handshakes_pending.set(self.pending)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left already
        metrics.handshakes_refused.labels(endpoint(scope.get("path", ""))).inc()
        self._log_refusal(limit)
        if "websocket.http.response" in (scope.get("extensions") or {}):
            minimum = settings.WS_HANDSHAKE_RETRY_AFTER
            retry_after = random.randint(minimum, 2 * minimum)
            await send({
                "type": "websocket.http.response.start",
                "status": 503,
                "headers": [(b"retry-after", str(retry_after).encode()),
                            (b"content-type", b"text/plain; charset=utf-8")],
            })
            await send({"type": "websocket.http.response.body", "body": b"Server busy: retry later\n"})
        else:
            await send({"type": "websocket.close"})  # before accept: HTTP 403
        # The server reports the connection closed; an application that returns
        # before that is taken (by uvicorn) for one that never answered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receive(), 1.0)
        await asyncio.sleep(0)

    def _log_refusal(self, limit: int) -> None:
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= REFUSAL_LOG_SECONDS:
            log.warning("[WS:admission] %d handshake(s) refused since the last report: %d in flight "
                        "(WS_MAX_PENDING_HANDSHAKES=%d), %d waiting (WS_HANDSHAKE_QUEUE_MS=%d)",
                        self._refused_since_log, self.pending, limit, self.waiting,
                        settings.WS_HANDSHAKE_QUEUE_MS)
            self._refused_since_log = 0
            self._last_log = now


def _settle_waiter(waiter: asyncio.Future, granted: bool) -> None:
    if not waiter.done():
        waiter.set_result(granted)
