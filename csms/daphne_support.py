"""What daphne 4.2.3 lacks as a server facing a real network, patched in at start-up.

Everything daphne-specific lives here (DESIGN.md pitfall 12: the application
stays server-agnostic); ``csms/asgi.py`` calls :func:`install` once. The
patches change only daphne's own classes, which nothing uses unless daphne
serves (``daphne`` is in INSTALLED_APPS, so daphne's modules are imported in
every process anyway): under uvicorn they are inert.

They rely on internals of the versions pinned in requirements.txt (daphne
4.2.3, autobahn 26.11.1, Twisted 26.10.0). :func:`install` checks that every
internal it touches is there and raises at start-up if one is missing, so an
upgrade fails loudly instead of silently leaving the server unprotected
(tests/test_server_limits.py and tests/test_slow_readers.py are the proof the
patches still work after an upgrade).

1. **Slow readers** (``WEBSOCKET_SEND_BUFFER_BYTES``, close code 4005). ASGI
   gives the application no backpressure under daphne: ``websocket.send``
   returns at once and the frame is appended to the Twisted transport's write
   buffer, which has no bound. A client that keeps asking but never reads
   (a phone on a bad network) grew one process from 113 MB to 909 MB in 30 s,
   and pushes to a slow subscriber do the same. Before each send we measure
   what is still unsent on that connection (the transport's buffer, under TLS
   the TCP transport's below it); past the bound the application gets
   ``websocket.disconnect`` with code 4005 (its teardown runs), the transport
   is aborted and its buffer dropped, and one warning is logged. A close
   frame would queue behind the megabytes the client does not read, so none
   is sent: the client sees the connection reset. The check is on what is
   already queued, before the new frame, so one large reply to a client that
   reads never trips it; a connection holds at most the bound plus one frame.

2. **``websocket.http.response``** (the ASGI extension uvicorn supports).
   daphne answers every handshake the application closes before accept with
   HTTP 403 and ignores the extension's messages. We advertise it in the
   scope and turn ``websocket.http.response.start`` / ``.body`` into the
   refused handshake's HTTP status, headers and body (admission control's 503
   with Retry-After, csms/admission.py), through autobahn's own refusal path.

3. **Frames over the limit get close code 1009.** autobahn's server default
   ``failByDrop=True`` drops the TCP connection on any failure, so a client
   whose message is over ``--websocket-max-message-size`` saw 1006 (no
   reason). With ``failByDrop=False`` autobahn sends the close frame (1009;
   1002/1007 for protocol errors and bad UTF-8) and drops the connection only
   if the client does not answer it within its close handshake timeout.

4. **Half-open connections** (``HTTP_HEADER_TIMEOUT``). daphne's own
   handshake timeouts start once an upgrade request has been parsed; before
   that a connection belongs to Twisted's HTTP channel, whose only timeout is
   an idle timer (60 s) that every byte resets: 500 connections that never
   sent a request were held, and one that sends a byte every few seconds is
   held forever. The channel here gives a connection ``HTTP_HEADER_TIMEOUT``
   seconds from its TCP accept to finish its request line and headers (a
   kept-alive connection: from the first byte of its next request), then
   aborts it. An idle kept-alive connection keeps Twisted's idle timer.

5. **A lean input queue per connection** (memory). daphne gives every
   connection's application an ``asyncio.Queue``, which holds four deques
   (items, getters, putters, and its ``join`` Event's waiters) of 760 bytes
   each even when empty: 3.3 KB per connection before the connection holds
   anything. daphne only ever calls ``put_nowait`` and hands the application
   ``get``; :class:`InputQueue` does those two (one reader, unbounded, as
   daphne's) in about 100 bytes.

6. **Listen backlog** (``LISTEN_BACKLOG``). ``daphne -b HOST -p PORT`` (and
   ``-u``) listen with Twisted's backlog of 50: in a reconnect storm the
   kernel drops the SYNs beyond it and those clients retry after 1, 3, 7 s
   (bench/RESULTS.md, section 4). The endpoints daphne builds from ``-b/-p``
   and ``-u`` get ``backlog=LISTEN_BACKLOG`` (the kernel caps it at
   ``net.core.somaxconn``); endpoints given with ``-e`` are left as written.
   daphne loads the application (this module) before it builds them.
"""

from __future__ import annotations

import asyncio
import http as http_status
import logging
from functools import partial
from typing import Any, cast

from django.conf import settings

from csms import metrics
from csms.queues import InputQueue

log = logging.getLogger("csms.server")

SLOW_READER_CLOSE_CODE = 4005
SLOW_READER_REASON = "slow reader: send buffer over limit"
HTTP_RESPONSE_EXTENSION = "websocket.http.response"
TESTED_VERSIONS = {"daphne": "4.2.3", "autobahn": "26.11.1", "twisted": "26.10.0"}

_installed = False


# --- 1. Slow readers -------------------------------------------------------------------------


def queued_bytes(transport: Any) -> int:
    """Bytes written to ``transport`` that the kernel has not taken yet.

    Twisted keeps them in the file descriptor's ``dataBuffer`` (from
    ``offset``) and ``_tempDataBuffer`` (``_tempDataLen`` bytes). A TLS
    transport encrypts at once into the TCP transport below it; it holds
    cleartext itself only before its handshake is done.
    """
    from twisted.internet.abstract import FileDescriptor

    total = 0
    while transport is not None:
        if isinstance(transport, FileDescriptor):
            return total + len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        total += sum(map(len, getattr(transport, "_appSendBuffer", ())))
        transport = getattr(transport, "transport", None)
    return total


def _drop_buffer(transport: Any) -> None:
    """Release an aborted transport's unsent bytes now, not when the connection object is freed."""
    from twisted.internet.abstract import FileDescriptor

    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.dataBuffer, transport.offset = b"", 0
        transport._tempDataBuffer, transport._tempDataLen = [], 0


def _peer(protocol: Any) -> str:
    addr = getattr(protocol, "client_addr", None)
    return f"{addr[0]}:{addr[1]}" if addr else "-"


def _close_slow_reader(protocol: Any, queued: int, limit: int) -> None:
    protocol.csms_slow_reader = True
    log.warning(
        "[SERVER] slow reader: path=%s peer=%s has %d bytes unsent (WEBSOCKET_SEND_BUFFER_BYTES=%d); "
        "connection closed with %d (%s)",
        getattr(protocol, "path", b"").decode("ascii", "replace"), _peer(protocol), queued, limit,
        SLOW_READER_CLOSE_CODE, SLOW_READER_REASON,
    )
    metrics.connections_dropped.labels("slow_reader").inc()
    # The application learns the code now; daphne's own disconnect (after the
    # abort) is muted so it does not get a second one.
    if not protocol.muted and hasattr(protocol, "application_queue"):
        protocol.application_queue.put_nowait({"type": "websocket.disconnect", "code": SLOW_READER_CLOSE_CODE})
    protocol.muted = True
    transport = protocol.transport
    protocol.dropConnection(abort=True)
    _drop_buffer(transport)


# --- 2. websocket.http.response ----------------------------------------------------------------


def _http_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, server_name: str) -> bytes:
    from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES

    try:
        phrase = http_status.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}".encode("ascii")]
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise ValueError(f"header {name!r}: {value!r}: names and values must be bytes")
        if not HEADER_NAME_RE.fullmatch(name) or INVALID_HEADER_VALUE_BYTES.intersection(value):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(name + b": " + value)
    names = {name.lower() for name, _ in headers}
    if b"content-length" not in names:
        lines.append(b"Content-Length: %d" % len(body))
    if b"connection" not in names:
        lines.append(b"Connection: close")  # the connection is dropped after the body
    if server_name and b"server" not in names:
        lines.append(b"Server: " + server_name.encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _handle_http_response(protocol: Any, message: dict[str, Any]) -> None:
    if protocol.state == protocol.STATE_OPEN:
        raise ValueError(f"{message['type']} is only valid before the WebSocket is accepted")
    if protocol.state != protocol.STATE_CONNECTING or not hasattr(protocol, "handshake_deferred"):
        # The handshake ended before the application answered it: daphne gave
        # up at its handshake timeout (and answered 403), or the client left.
        # Nobody is there to read the response; as daphne does with an accept
        # or a close that comes too late, drop it.
        log.debug("[SERVER] %s for a handshake that already ended (path=%s peer=%s): dropped", message["type"],
                  getattr(protocol, "path", b"").decode("ascii", "replace"), _peer(protocol))
        return
    pending = getattr(protocol, "csms_http_response", None)
    if message["type"] == "websocket.http.response.start":
        if pending is not None:
            raise ValueError("websocket.http.response.start sent twice")
        protocol.csms_http_response = (int(message["status"]), list(message.get("headers", [])), [])
        return
    if pending is None:
        raise ValueError("websocket.http.response.body before websocket.http.response.start")
    status, headers, chunks = pending
    chunks.append(bytes(message.get("body", b"")))
    if message.get("more_body", False):
        return
    server = protocol.server
    protocol.csms_refusal = _http_response(status, headers, b"".join(chunks), server.server_name)
    # autobahn's refusal path (our fail_handshake below writes the response),
    # then what daphne's own serverReject does for a 403.
    from autobahn.websocket.types import ConnectionDeny

    protocol.handshake_deferred.errback(ConnectionDeny(code=status, reason="refused by the application"))
    del protocol.handshake_deferred
    server.protocol_disconnected(protocol)
    server.log_action("websocket", "rejected", {"path": protocol.request.path, "client": _peer(protocol)})


# --- Patched methods --------------------------------------------------------------------------


def _patch_websocket_protocol(cls: Any) -> None:
    original_handle_reply = cls.handle_reply
    original_fail_handshake = cls.failHandshake

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if getattr(self, "csms_slow_reader", False):
            return  # aborted: nothing more goes out
        if kind == "websocket.send" and self.state == self.STATE_OPEN:
            limit = settings.WEBSOCKET_SEND_BUFFER_BYTES
            if limit > 0:
                queued = queued_bytes(self.transport)
                if queued > limit:
                    _close_slow_reader(self, queued, limit)
                    return
        elif kind in ("websocket.http.response.start", "websocket.http.response.body"):
            _handle_http_response(self, message)
            return
        original_handle_reply(self, message)

    def failHandshake(self: Any, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        refusal = self.__dict__.pop("csms_refusal", None)
        if refusal is None:
            original_fail_handshake(self, reason, code, responseHeaders)
            return
        self.wasNotCleanReason = reason
        self.sendData(refusal)
        self.dropConnection(abort=False)  # after the response is written

    cls.handle_reply = handle_reply
    cls.failHandshake = failHandshake


# --- 5. A lean input queue ---------------------------------------------------------------------


def _patch_server(cls: Any) -> None:
    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        # daphne 4.2.3's Server.create_application with an InputQueue in place
        # of its asyncio.Queue (5), and the websocket.http.response extension
        # advertised (2).
        assert "application_instance" not in self.connections[protocol]
        if scope.get("type") == "websocket":
            scope.setdefault("extensions", {})[HTTP_RESPONSE_EXTENSION] = {}
        input_queue = InputQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    cls.create_application = create_application


def _patch_websocket_factory(cls: Any) -> None:
    original_init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # daphne's Server.run sets other options later; it never touches this one.
        self.setProtocolOptions(failByDrop=False)

    cls.__init__ = __init__


# --- 4. Half-open connections --------------------------------------------------------------------


def _header_deadline_channel() -> type:
    from twisted.internet.protocol import connectionDone
    from twisted.python.failure import Failure
    from twisted.web import http

    class HeaderDeadlineChannel(http.HTTPChannel):
        """Twisted's HTTP channel with a deadline for each request's headers."""

        _header_deadline: Any = None
        _awaiting_next_request = False

        def connectionMade(self) -> None:
            super().connectionMade()
            self._start_header_deadline()

        def dataReceived(self, data: bytes) -> None:
            if self._awaiting_next_request:  # the first byte of a kept-alive connection's next request
                self._awaiting_next_request = False
                self._start_header_deadline()
            super().dataReceived(data)

        def allHeadersReceived(self) -> None:
            self._stop_header_deadline()
            super().allHeadersReceived()

        def requestDone(self, request: Any) -> None:
            # Set before super(): it parses a pipelined next request at once.
            self._awaiting_next_request = bool(self.persistent)
            super().requestDone(request)

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            self._stop_header_deadline()
            super().connectionLost(reason)

        def _start_header_deadline(self) -> None:
            seconds = settings.HTTP_HEADER_TIMEOUT
            if seconds > 0 and self._header_deadline is None:
                self._header_deadline = self.callLater(seconds, self._header_deadline_passed)

        def _stop_header_deadline(self) -> None:
            if self._header_deadline is not None:
                if self._header_deadline.active():
                    self._header_deadline.cancel()
                self._header_deadline = None

        def _header_deadline_passed(self) -> None:
            self._header_deadline = None
            metrics.connections_dropped.labels("header_timeout").inc()
            # A connected TCP transport (the deadline runs only while connected); Twisted's
            # zope interfaces are not callable types to mypy.
            transport: Any = self.transport
            log.debug("[SERVER] no complete request headers from %s within %s s: connection dropped",
                      transport.getPeer(), settings.HTTP_HEADER_TIMEOUT)
            transport.abortConnection()

    return HeaderDeadlineChannel


def _patch_http_factory(cls: Any) -> None:
    from twisted.web import http

    channel_class = _header_deadline_channel()

    def protocol(self: Any) -> Any:  # in place of Twisted's _genericHTTPChannelProtocolFactory
        return http._GenericHTTPChannelProtocol(channel_class())

    cls.protocol = protocol


# --- 6. Listen backlog --------------------------------------------------------------------------


def with_backlog(descriptions: list[str], backlog: int) -> list[str]:
    """Twisted endpoint descriptions with ``backlog`` added to the TCP and UNIX ones that have none."""
    if backlog <= 0:
        return list(descriptions)
    return [
        f"{description}:backlog={backlog}"
        if description.split(":", 1)[0] in ("tcp", "tcp6", "unix") and ":backlog=" not in description
        else description
        for description in descriptions
    ]


def _patch_cli_endpoints(cli: Any) -> None:
    original = cli.build_endpoint_description_strings

    def build_endpoint_description_strings(*args: Any, **kwargs: Any) -> list[str]:
        return with_backlog(original(*args, **kwargs), settings.LISTEN_BACKLOG)

    cli.build_endpoint_description_strings = build_endpoint_description_strings


# --- Install ----------------------------------------------------------------------------------


def _check_internals() -> None:
    """Raise if an internal the patches rely on is missing (another daphne/autobahn/Twisted)."""
    import autobahn
    import daphne
    import twisted
    from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
    from daphne import cli
    from daphne.http_protocol import HTTPFactory
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    from twisted.internet.abstract import FileDescriptor
    from twisted.web import http

    problems = []
    for owner, names in (
        (WebSocketProtocol, ("handle_reply", "failHandshake", "dropConnection", "sendData", "muted",
                             "STATE_CONNECTING", "STATE_OPEN")),
        (Server, ("create_application", "protocol_disconnected", "log_action", "handle_reply")),
        (WebSocketFactory, ("setProtocolOptions",)),
        (http.HTTPChannel, ("connectionMade", "dataReceived", "allHeadersReceived", "requestDone",
                            "connectionLost", "callLater", "persistent")),
        (http, ("_GenericHTTPChannelProtocol",)),
        (cli, ("build_endpoint_description_strings",)),
    ):
        problems += [f"{getattr(owner, '__name__', owner)}.{name}" for name in names if not hasattr(owner, name)]
    if "failByDrop" not in AutobahnProtocol.CONFIG_ATTRS_COMMON:
        problems.append("autobahn option failByDrop")
    if HTTPFactory.protocol is not http.HTTPFactory.protocol:
        problems.append("daphne's HTTPFactory builds its own channel")
    # The byte accounting, on a real (unconnected) Twisted file descriptor.
    probe = FileDescriptor(reactor=cast(Any, _NoReactor()))  # the two methods write() uses
    probe.connected = True
    probe.write(b"x" * 10)
    if queued_bytes(probe) != 10:
        problems.append("Twisted's write buffer (dataBuffer/offset/_tempDataLen)")
    if http.H2_ENABLED:
        problems.append("HTTP/2 is enabled (the h2 package): the header deadline is HTTP/1.1 only")
    if problems:
        raise RuntimeError(
            "csms.daphne_support cannot protect this server: missing or changed " + ", ".join(problems)
            + f" (tested with {TESTED_VERSIONS}; installed daphne {daphne.__version__}, "
            f"autobahn {autobahn.__version__}, Twisted {twisted.__version__})"
        )
    installed = {"daphne": daphne.__version__, "autobahn": autobahn.__version__, "twisted": twisted.__version__}
    if installed != TESTED_VERSIONS:
        log.warning("csms.daphne_support was tested with %s, running %s: run tests/test_server_limits.py "
                    "and tests/test_slow_readers.py", TESTED_VERSIONS, installed)


class _NoReactor:
    """Enough of a reactor for a file descriptor that is written to, never run."""

    def addWriter(self, _: Any) -> None:
        pass

    def removeWriter(self, _: Any) -> None:
        pass


def install() -> None:
    """Patch daphne's classes (once per process); raises if their internals changed."""
    global _installed
    if _installed:
        return
    _check_internals()
    from daphne import cli
    from daphne.http_protocol import HTTPFactory
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

    _patch_websocket_protocol(WebSocketProtocol)
    _patch_server(Server)
    _patch_websocket_factory(WebSocketFactory)
    _patch_http_factory(HTTPFactory)
    _patch_cli_endpoints(cli)
    _plain_autobahn_debug_arguments()
    _write_now_when_nothing_waits()
    _installed = True


def _write_now_when_nothing_waits() -> None:
    """A plain TCP connection with nothing queued sends at once, as asyncio's own transports do.

    Twisted queues every write and sends it on the next loop turn (``add_writer``, then
    ``doWrite``, then ``remove_writer``: two epoll_ctl calls per message). Pushing one event
    to 1,000 apps, that cost 28 % of the CPU per event (h6push, interleaved runs: 46.7-48.4
    to 32.9-36.6 ms). What the socket does not take now is queued as before, so order, the
    producer's flow control and the slow-reader bound (``queued_bytes``) are unchanged; TLS
    connections (their own write path) and anything unusual keep Twisted's write.
    """
    from twisted.internet import abstract, tcp

    queued_write = abstract.FileDescriptor.write

    def write(self: Any, data: Any) -> None:
        if (type(data) is bytes and data and isinstance(self, tcp.Connection) and not getattr(self, "TLS", False)
                and self.connected and not self.disconnecting and not queued_bytes(self)):
            sent = self.writeSomeData(data)
            if type(sent) is int and sent >= 0:  # else an error: queued, and found by doWrite
                if sent == len(data):
                    return
                data = data[sent:]
        queued_write(self, data)

    abstract.FileDescriptor.write = write  # type: ignore[method-assign]  # the patch itself


def _plain_autobahn_debug_arguments() -> None:
    """autobahn builds the arguments of a debug line on every frame sent (``hltype``/``hlval``:
    coloured names through click), whether debug is logged or not: 3-6 % of the event loop
    pushing to 1,000 apps (py-spy). Plain names and values cost next to nothing."""
    from autobahn.websocket import protocol

    def plain_type(obj: Any) -> str:
        return f"<{getattr(obj, '__qualname__', type(obj).__qualname__)}>"

    def plain_value(value: Any, color: str = "", bold: bool = True) -> Any:
        return value

    protocol.hltype, protocol.hlval = plain_type, plain_value
