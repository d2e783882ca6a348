"""The OCPP-J WebSocket consumer: negotiate, authenticate, pre-parse, dispatch.

Domain work happens in ``stations.services``; the OCPP version's adapter
(``stations.ocpp``, picked from the negotiated subprotocol) routes and
validates, fed the frame parsed here (1.6: ``ChargePoint16.handle_frame``, the
library's ``route_message`` without the second parse).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from ocpp.exceptions import OCPPError

from csms import groupcommit, lockout, metrics, wire
from csms.admission import handshake_abandoned
from csms.consumers import DirectDispatchMixin, TeardownMixin
from csms.layers import ChannelLayerUnavailable
from csms.tls import client_certificate, is_secure
from stations import ocpp as adapters
from stations import services
from stations.activity import tracker
from stations.presence import presence
from stations.services.connections import ConnectDecision
from stations.services.security import check_certificate_connect

log = logging.getLogger("stations.ocpp")

# Close codes (daphne passes only 1000 and 3000-4999).
CLOSE_REPLACED = 4001  # the station connected again; this older socket goes
CLOSE_FENCED = 4010  # this process was declared dead while it stalled: reconnect
MAX_FRAME_BYTES = 256 * 1024
# OCPP payloads nest a few levels (MeterValues: frame, payload, meterValue,
# sampledValue); transactionData of a long session can hold thousands of readings.
FRAME_LIMITS = wire.Limits(max_depth=16, max_items=4096)
_UNIQUE_ID = re.compile(r'^\s*\[\s*[234]\s*,\s*"([^"\\]{1,64})"')
# Error codes as the library names them; the adapter spells them as its version does.
FORMAT_VIOLATION = "FormatViolation"


# Metric labels stay bounded: an action name a charger invents is "unknown".
@functools.lru_cache(maxsize=sum(len(a.charger_actions) for a in adapters.ADAPTERS.values()) + 2)
def _action_metrics(action: str) -> tuple[Any, Any]:
    """The counter and histogram children of a handled action (``labels()`` takes a lock per call)."""
    return metrics.messages.labels("ocpp", action, "ok"), metrics.message_seconds.labels("ocpp", action)


def basic_auth_password(scope: dict[str, Any], station_id: str) -> str | None:
    """The HTTP Basic password if the user is this station's id, else None."""
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value[:6].lower() == b"basic ":
            try:
                user, _, password = base64.b64decode(value[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return password if user == station_id else None
    return None


class OcppConsumer(TeardownMixin, DirectDispatchMixin, AsyncWebsocketConsumer):
    station_id: str = ""
    # Both set by connect() before any frame or command can reach this connection.
    adapter: adapters.Adapter
    charge_point: adapters.ChargePoint
    dropped_results = 0  # CALLRESULTs/CALLERRORs that answered no call of ours
    present = False  # marked online on this socket (and in this process's presence)
    command_tasks: frozenset[asyncio.Task] | set[asyncio.Task] = frozenset()  # CSMS calls in flight
    frame: Any = None  # the last frame _check_frame parsed

    async def connect(self) -> None:
        self.station_id = unquote(self.scope["url_route"]["kwargs"]["station_id"])
        if not wire.is_station_id(self.station_id):  # e.g. /ocpp/%00: no row, no log line can hold it
            log.warning("[OCPP:connect] station=%s refused: not a valid identity", wire.excerpt(self.station_id, 64))
            self.station_id = ""
            await self.close()  # before accept(): HTTP 403
            return
        adapter = adapters.negotiate(self.scope.get("subprotocols", []))
        if adapter is None:
            log.warning("[OCPP:connect] station=%s refused: no supported subprotocol in %s",
                        self.station_id, self.scope.get("subprotocols"))
            await self.close()  # before accept(): HTTP 403
            return
        if settings.OCPP_REQUIRE_TLS and not is_secure(self.scope):
            log.warning("[OCPP:connect] station=%s refused: not over TLS (security profile 2 required)",
                        self.station_id)
            await self.close()
            return
        # A locked-out address is refused before its password is looked at (csms/lockout.py).
        address = lockout.client_address(self.scope)
        if wait := lockout.refused(lockout.station_passwords, address, "ocpp"):
            log.warning("[OCPP:connect] station=%s refused: address %s locked out for failed authentications, "
                        "retry in %d s", self.station_id, address, wait)
            await lockout.refuse_handshake(self.base_send, self.scope, wait)
            return
        certificate = client_certificate(self.scope)
        if certificate is not None:  # security profile 3: nginx verified a client certificate
            presented = True
            if certificate.common_name == self.station_id:
                decision = await groupcommit.call(check_certificate_connect, self.station_id)
            else:
                decision = ConnectDecision(False, f"client certificate not this station's (CN "
                                                  f"{wire.excerpt(certificate.common_name or '-', 64)}, "
                                                  f"{wire.excerpt(certificate.detail, 64)})")
        else:
            password = basic_auth_password(self.scope, self.station_id)
            presented = password is not None
            decision = await groupcommit.call(services.check_station_connect, self.station_id, password)
        if not decision.accepted:
            log.warning("[OCPP:connect] station=%s refused: %s", self.station_id, decision.reason)
            # Credentials presented and refused count against the address (a
            # certificate of another station like a wrong password); a
            # charger sending none (or a bare unknown id) guesses nothing.
            if presented and (locked := lockout.failed(lockout.station_passwords, address, "ocpp")):
                log.warning("[OCPP:connect] address %s locked out for %g s: too many failed authentications",
                            address, locked)
            await self.close()
            return
        status = decision.registration_status
        self.adapter = adapter
        self.charge_point = adapter.charge_point(self.station_id, self, status)
        # Online only once the socket is accepted: a handshake the server or
        # the client abandons before that must leave no station online
        # (measured: 1,811 stations online with 400 sockets open after a storm).
        # The charger's first message is read after this method returns, so
        # it finds the station online.
        await self.accept(adapter.subprotocol)
        if handshake_abandoned(self.scope):
            log.info("[OCPP:connect] station=%s left during the handshake", self.station_id)
            return
        await self._go_online(status)

    async def _go_online(self, status: str) -> None:
        # In this process's presence first, so that its sweep never takes the
        # station for one without a socket.
        presence.add(self.channel_name, self.station_id)
        self.present = True
        metrics.chargers_connected.inc()
        try:
            replaced = await groupcommit.call(services.station_connected, self.station_id, self.channel_name,
                                              self.adapter.version)
        except asyncio.CancelledError:  # the server gave up on this connection midway
            self.present = False
            metrics.chargers_connected.dec()
            presence.abandon(self.channel_name, self.station_id)  # offline once the write above is done
            raise
        if replaced and replaced != self.channel_name:
            try:
                await self.channel_layer.send(replaced, {"type": "station.replaced"})
            except ChannelLayerUnavailable:  # Redis down: commands already go to this socket
                log.warning("[OCPP:connect] station=%s: could not close its older socket (Redis down)",
                            self.station_id)
        log.info("[OCPP:connect] station=%s registration=%s", self.station_id, status)

    async def disconnect(self, code: int) -> None:
        if not self.present:  # refused, abandoned, or never marked online
            return
        self.present = False
        presence.discard(self.channel_name)
        metrics.chargers_connected.dec()
        for task in list(self.command_tasks):
            task.cancel()  # each answers its requester "station disconnected"
        if self.command_tasks:
            await asyncio.gather(*self.command_tasks, return_exceptions=True)
        went_offline = await groupcommit.call(
            services.station_disconnected, self.station_id, self.channel_name, tracker.take(self.station_id)
        )
        log.info("[OCPP:disconnect] station=%s code=%s offline=%s", self.station_id, code, went_offline)

    # --- Frames from the charger ------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        tracker.touch(self.station_id)
        if text_data is None:
            log.warning("[OCPP:invalid] station=%s binary frame ignored", self.station_id)
            return
        self.action = "result"
        began = time.perf_counter()
        problem = self._check_frame(text_data)
        if problem is None:
            try:
                # The frame _check_frame parsed: the library would parse it again.
                await self.charge_point.handle_frame(self.frame, text_data)
            except OSError as error:
                # The socket closed under the answer (uvicorn raises ClientDisconnected; daphne drops
                # the send): nothing to answer, nothing went wrong on our side.
                log.info("[OCPP:%s] station=%s closed before its answer was sent (%s)", self.action,
                         self.station_id, type(error).__name__)
                return
            except Exception:
                # The library answers a handler's errors itself; this is what
                # escaped it. The charger gets an InternalError, the socket stays.
                await self._internal_error(text_data)
                return
            handled, seconds = _action_metrics(self.action)
            handled.inc()
            seconds.observe(time.perf_counter() - began)
            return
        unique_id, code, description = problem
        if code == "dropped":
            return
        code = self.adapter.error_code(code)
        metrics.messages.labels("ocpp", self.action, code).inc()
        log.warning("[OCPP:invalid] station=%s %s: %s (frame: %s)", self.station_id, code, description,
                    wire.excerpt(text_data))
        if unique_id is not None:
            await self.send(json.dumps([4, unique_id, code, description, {}]))

    async def _internal_error(self, text: str) -> None:
        correlation_id = f"err-{uuid.uuid4().hex[:12]}"
        log.exception("[OCPP:%s] station=%s internal error correlationId=%s (frame: %s)", self.action,
                      self.station_id, correlation_id, wire.excerpt(text))
        metrics.messages.labels("ocpp", self.action, "InternalError").inc()
        match = _UNIQUE_ID.match(text)
        if match and text.lstrip("[ ").startswith("2"):
            await self.send(json.dumps([4, match.group(1), self.adapter.error_code("InternalError"),
                                        f"Internal error {correlation_id}", {}]))

    def _check_frame(self, text: str) -> tuple[str | None, str, str] | None:
        """Why a frame cannot be routed: (unique id or None, error code, text); None if it can.

        The ocpp library answers nothing to a malformed frame, so frames are
        checked here and answered with the CALLERROR OCPP-J names (in the
        adapter's spelling) wherever a message id can be read. Results that answer no call of
        ours are dropped (code "dropped"): the library would queue them for a
        call that never reads them.
        """
        if len(text) > MAX_FRAME_BYTES:
            match = _UNIQUE_ID.match(text)
            return (match.group(1) if match else None), FORMAT_VIOLATION, "Message too large"
        try:
            frame = self.frame = wire.parse(text, FRAME_LIMITS)
        except wire.WireError as error:
            match = _UNIQUE_ID.match(text)
            return (match.group(1) if match else None), FORMAT_VIOLATION, str(error)
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], str):
            return None, FORMAT_VIOLATION, "Message is not an OCPP-J array with a unique id"
        unique_id, message_type = frame[1], frame[0]
        if len(unique_id) > 36:
            return None, FORMAT_VIOLATION, "The unique id is longer than 36 characters"
        if message_type not in (2, 3, 4) or isinstance(message_type, bool):
            return unique_id, "MessageTypeNotSupported", f"Unknown message type {str(message_type)[:20]}"
        if message_type != 2:
            if not self.charge_point.expects_result(unique_id):
                metrics.unmatched_results.inc()
                if not self.dropped_results:  # once per connection: a flood must not flood the log
                    log.warning("[OCPP:result] station=%s id=%s dropped: it answers no call in flight"
                                " (further ones are only counted)", self.station_id, wire.excerpt(unique_id, 36))
                self.dropped_results += 1
                return None, "dropped", ""
            return None  # the library hands it to the call waiting for it
        if len(frame) < 4:
            return unique_id, "ProtocolError", "CALL needs [2, uniqueId, action, payload]"
        if len(frame) > 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            return unique_id, FORMAT_VIOLATION, "CALL must be [2, uniqueId, action, {payload}]"
        adapter = self.adapter
        self.action = frame[2] if frame[2] in adapter.charger_actions else "unknown"
        log.info("[OCPP:%s] station=%s id=%s", self.action if self.action != "unknown" else wire.excerpt(frame[2], 40),
                 self.station_id, unique_id)
        status = self.charge_point.registration_status
        if status != "Accepted" and (frame[2] in adapter.needs_acceptance or status == "Rejected"
                                     and adapter.while_rejected is not None and frame[2] not in adapter.while_rejected):
            return unique_id, "SecurityError", f"Station registration is {status}"
        return None

    # --- Channel-layer messages ----------------------------------------------------------

    async def station_replaced(self, message: dict[str, Any]) -> None:
        log.info("[OCPP:replaced] station=%s closing the older connection", self.station_id)
        await self.close(code=CLOSE_REPLACED)

    async def station_fenced(self, message: dict[str, Any]) -> None:
        # Another process declared this one dead and marked the station
        # offline; a reconnect registers it again, wherever it lands.
        log.warning("[OCPP:fenced] station=%s closing: this process was declared dead", self.station_id)
        await self.close(code=CLOSE_FENCED)

    async def station_command(self, message: dict[str, Any]) -> None:
        # Never await the call here: the charger's answer arrives as another
        # message to this consumer, which Channels would not read until this
        # handler returns. Each command runs in its own task.
        task = asyncio.create_task(self._run_command(message))
        tasks = self.__dict__.get("command_tasks")
        if tasks is None:  # made on first use: most chargers never get a command
            tasks = self.command_tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_command(self, message: dict[str, Any]) -> None:
        action = message["action"]
        reply: dict[str, Any] = {"type": "station.command.reply"}
        try:
            payload = self.charge_point.build_call(action, message["payload"])
            result = await asyncio.wait_for(self.charge_point.call(payload, suppress=False), message["timeout"])
            reply.update(outcome="ok", payload=self.charge_point.answer_payload(result))
        except asyncio.CancelledError:
            reply.update(outcome="offline")
            await self._reply(message, reply)
            raise
        except TimeoutError:
            reply.update(outcome="timeout")
        except OCPPError as error:  # a CALLERROR, or an answer the schema refuses
            reply.update(outcome="call_error", error=f"{error.code}: {error.description}")
        log.info("[OCPP:%s.conf] station=%s outcome=%s", action, self.station_id, reply["outcome"])
        await self._reply(message, reply)

    async def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        try:
            await self.channel_layer.send(message["reply_to"], reply)
        except Exception:
            log.exception("could not answer command requester %s", message["reply_to"])

