"""The mobile API consumer: one class, two dialects (``/ws`` and ``/mobile-client``).

It parses, limits, authenticates, dispatches to the action registry and
sends what comes back; pushes come from the process's push hub (``hub.py``)
and are filtered by the connection's subscriptions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import uuid
from typing import Any, cast

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

import mobileapi.actions  # noqa: F401  (registers the actions)
from csms import metrics, wire
from csms.consumers import DirectDispatchMixin, TeardownMixin
from csms.events import EventMessage, call_service
from csms.tls import is_secure
from mobileapi import messages, services
from mobileapi.dialects import Dialect
from mobileapi.errors import BadRequest, RateLimited, TooLarge
from mobileapi.hub import OWN_KINDS, hub
from mobileapi.ratelimit import TokenBucket
from mobileapi.registry import ACTIONS, ActionSpec
from mobileapi.sessions import watcher
from mobileapi.subscriptions import Subscription, Subscriptions
from stations.errors import DomainError, Forbidden, Unauthorized

log = logging.getLogger("mobileapi")

CLOSE_IDLE = 4002
CLOSE_REVOKED = 4003
CLOSE_ENDED = 4004  # an operator ended the session in the admin
# A connection always receives these for the commands it issued itself (their
# correlationId), subscribed or not: the /ws reply is only "pending", the outcome
# is an event. Not for what other connections of the same key issued: those get
# exactly what their subscriptions ask for.
# correlationIds a connection remembers (its newest commands): far more than it can
# have in flight, bounded so a long-lived connection does not grow.
ISSUED_LIMIT = 256
# Wall clock = monotonic + this offset: turns a connection's monotonic times into
# datetimes without a second clock read per message, and without jitter.
_WALL_OFFSET = time.time() - time.monotonic()
_REQUEST_ID = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.){0,128}"|-?\d{1,20}(?=\s*[,}]))')
# Requests are flat ({id, action, params: {...}}); no action takes a list of
# more than 50 items.
REQUEST_LIMITS = wire.Limits(max_depth=8, max_items=256)


class MobileConsumer(TeardownMixin, DirectDispatchMixin, AsyncWebsocketConsumer):
    refused = True  # until connect() accepts: nothing to tear down
    def __init__(self, dialect: Dialect, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dialect = dialect  # as_asgi(dialect=WS) or as_asgi(dialect=MOBILE_CLIENT)

    # --- Connection ---------------------------------------------------------------

    async def connect(self) -> None:
        self.refused = settings.MOBILE_REQUIRE_TLS and not is_secure(self.scope)
        if self.refused:
            log.warning("[WS-API:CONNECT] endpoint=%s refused: not over TLS", self.dialect.name)
            await self.close()  # before accept(): HTTP 403
            return
        self.connection_id = uuid.uuid4().hex
        self.connected_at = timezone.now()
        self.key: services.KeyInfo | None = None
        self.expired_key_id: int | None = None  # subscriptions kept for a re-auth with it
        self.session_id = ""
        self.authenticated_at = 0.0
        self.last_message_at = time.monotonic()
        self.subscriptions = Subscriptions()
        self.issued: dict[str, None] = {}  # correlationIds of this connection's commands, oldest first
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.end_reason = ""
        self.bucket = TokenBucket(*self.dialect.rate_limit())
        await self.accept()
        watcher.add(self)
        hub.add(self)
        log.info("[WS-API:CONNECT] endpoint=%s", self.dialect.name)

    async def disconnect(self, code: int) -> None:
        if self.refused:
            return
        watcher.discard(self, self.end_reason or f"closed ({code})")
        hub.discard(self)
        self.closed = True
        # Actions still waiting on a charger (bounded by OCPP_COMMAND_TIMEOUT) run
        # on: the command was sent, and its outcome must reach the event log.
        log.info("[WS-API:DISCONNECT] endpoint=%s key=%s session=%s code=%s",
                 self.dialect.name, self.key.id if self.key else "-", self.session_id or "-", code)

    @property
    def auth_key(self) -> services.KeyInfo:
        """The key an action with ``auth`` runs under (the dispatcher runs none without one)."""
        if self.key is None:
            raise Unauthorized("Not authenticated: send auth first")
        return self.key

    async def login(self, key: services.KeyInfo) -> str:
        previous = self.key.id if self.key is not None else self.expired_key_id
        if previous != key.id:
            # Another key's subscriptions do not carry over; the same key's do,
            # so re-auth after session.expired resumes the pushes.
            self.subscriptions.clear()
            hub.reindex(self)
        self.key, self.expired_key_id = key, None
        self.session_id = f"sess-{int(time.time() * 1000)}"
        self.authenticated_at = time.monotonic()
        return self.session_id

    def session_record(self) -> dict[str, Any]:
        """This connection as support sees it (a ``MobileSession`` row)."""
        client = self.scope.get("client") or ("", 0)
        last_message = int(self.last_message_at + _WALL_OFFSET)  # whole seconds: unchanged until a message
        return {
            "connection_id": self.connection_id,
            "endpoint": self.scope["path"][:20],
            "api_key_id": self.key.id if self.key else None,
            "session_id": self.session_id,
            "client_address": f"{client[0]}"[:64],
            "connected_at": self.connected_at,
            "last_message_at": dt.datetime.fromtimestamp(last_message, dt.UTC),
            "subscriptions": self.subscriptions.describe(),
        }

    # --- Requests -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_message_at = time.monotonic()
        began = time.perf_counter()
        request_id, action = None, "INVALID"
        try:
            raw = text_data if text_data is not None else cast(bytes, bytes_data).decode("utf-8", "replace")
            request_id = self._peek_id(raw)
            self._check_limits(raw)
            request = self._parse(raw)
            request_id = request.get("id")
            action = request["action"]
            spec = self._authorize(action)
            params = spec.check_params(request.get("params"))
        except DomainError as error:
            self._log(action, error.code, began)
            await self.send(messages.error_message(request_id, error.code, error.message, **error.details))
            return
        except Exception:  # a bug, not the client's fault: answer 500, keep the connection
            await self._reply(self._internal_error(action, request_id))
            return
        if spec.detached:
            task = asyncio.create_task(self._run(spec, request_id, params, began))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            await self._run(spec, request_id, params, began)

    def _peek_id(self, raw: str) -> Any:
        """The request id, read cheaply so even refused messages are answered with it."""
        match = _REQUEST_ID.search(raw[:4096])
        if match is None:
            return None
        try:
            return wire.parse(match.group(1), REQUEST_LIMITS)
        except wire.WireError:  # e.g. a lone surrogate: it could not be sent back
            return None

    def _check_limits(self, raw: str) -> None:
        limit = self.dialect.max_message_bytes()
        if len(raw) > limit or len(raw.encode()) > limit:
            raise TooLarge(f"Message too large: limit is {limit} bytes")
        wait = self.bucket.take()
        if wait:
            raise RateLimited("Rate limit exceeded", retryAfterMs=max(1, int(wait * 1000)))

    @staticmethod
    def _parse(raw: str) -> dict[str, Any]:
        try:
            request = wire.parse(raw, REQUEST_LIMITS)
        except wire.WireError as error:
            raise BadRequest(str(error)) from None
        if not isinstance(request, dict):
            raise BadRequest("A request must be a JSON object {id, action, params}")
        if "id" in request and not isinstance(request["id"], (str, int, float, type(None))):
            raise BadRequest("id must be a string or a number")
        action = request.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("Missing action" if action is None else "action must be a non-empty string")
        return request

    def _authorize(self, action: str) -> ActionSpec:
        spec = ACTIONS.get(action)
        if spec is None:
            raise BadRequest(f"Unknown action '{action[:64]}'")
        key = self.key
        if spec.auth and key is None:
            raise Unauthorized("Not authenticated: send auth first")
        if spec.scope and (key is None or spec.scope not in key.scopes):
            raise Forbidden(f"Missing scope {spec.scope}")
        return spec

    async def _run(self, spec: ActionSpec, request_id: Any, params: dict[str, Any], began: float) -> None:
        try:
            result = await spec.handler(self, params)
        except DomainError as error:
            message = error.message
            if error.code == 504 and spec.name == "startCharging":
                message = "RemoteStart timeout"  # the Dart guide's wording
            self._log(spec.name, error.code, began)
            await self._reply(messages.error_message(request_id, error.code, message, **error.details))
            return
        except Exception:
            await self._reply(self._internal_error(spec.name, request_id))
            return
        self._log(spec.name, 200, began)
        try:
            text = messages.result_message(request_id, result)
        except ValueError:  # e.g. a non-finite number: never send non-standard JSON
            text = self._internal_error(spec.name, request_id)
        await self._reply(text)

    def _internal_error(self, action: str, request_id: Any) -> str:
        """Log the traceback under a correlation id; the client gets that id with a 500."""
        correlation_id = f"err-{uuid.uuid4().hex[:12]}"
        log.exception("[WS-API:%s] internal error correlationId=%s key=%s", wire.excerpt(action.upper(), 64),
                      correlation_id, self.key.id if self.key else "-")
        return messages.error_message(request_id, 500, "Internal error", correlation_id=correlation_id)

    async def _reply(self, text: str) -> None:
        if not self.closed:  # a detached action may finish after the app has gone
            await self.send(text)

    def _log(self, action: str, code: int, began: float) -> None:
        label = action if action in ACTIONS else "unknown"
        elapsed = time.perf_counter() - began
        metrics.messages.labels(self.dialect.name, label, str(code)).inc()
        metrics.message_seconds.labels(self.dialect.name, label).observe(elapsed)
        log.info("[WS-API:%s] endpoint=%s key=%s session=%s code=%s ms=%.1f", action.upper()[:64], self.dialect.name,
                 self.key.id if self.key else "-", self.session_id or "-", code, (time.perf_counter() - began) * 1000)

    # --- Subscriptions and pushes -------------------------------------------------------

    def subscribe(self, station_id: str | None, patterns: list[str]) -> Subscription:
        subscription = self.subscriptions.add(station_id, patterns)
        hub.reindex(self)
        return subscription

    def unsubscribe(self, subscription_id: str) -> bool:
        removed = self.subscriptions.remove(subscription_id)
        hub.reindex(self)
        return removed

    def interest(self) -> tuple[frozenset[str | None], bool]:
        """What the push hub offers this connection: its subscriptions' stations, its commands' outcomes."""
        return self.subscriptions.stations(), bool(self.issued)

    def issued_command(self, correlation_id: str) -> None:
        """Remember a command this connection sent: its outcome events come here."""
        first = not self.issued
        self.issued[correlation_id] = None
        if first:
            hub.reindex(self)
        if len(self.issued) > ISSUED_LIMIT:
            del self.issued[next(iter(self.issued))]

    def hides_id_tag(self, event: EventMessage) -> bool:
        """Other people's idTags are not shown (the key did not start it, the tag is not bound to it)."""
        id_tag, key = event["data"].get("idTag"), self.key
        return bool(id_tag) and (key is None or event.get("actor") != key.actor and id_tag not in key.id_tags)

    async def push(self, event: EventMessage) -> bool:
        """Called by the process's push hub for every event, in order; True if sent."""
        if self.key is None or event["kind"] not in messages.PUBLIC_KINDS:
            return False
        own = event["kind"] in OWN_KINDS and event["data"].get("correlationId") in self.issued
        if own or self.subscriptions.wants(event, self.dialect.event_name(event["kind"])):
            await self.send(messages.render_cache.push_text(self.dialect, event, self.hides_id_tag(event)))
            return True
        return False

    # --- Session checks (from the process's watcher) -----------------------------------------

    async def session_end(self, message: dict[str, Any]) -> None:
        """Expired (auth again), revoked or ended by an operator (closed): push
        session.expired first."""
        key, reason = self.key, message["reason"]
        if reason == "ended":
            self.end_reason = "ended by operator"
        if key is None:
            if reason == "ended":
                await self.close(code=CLOSE_ENDED)
            return
        event = await call_service(services.record_session_expired, key, self.session_id, reason)
        await self.send(messages.session_expired_message(event["eventId"], event["ts"], self.dialect, reason))
        log.info("[WS-API:SESSION.EXPIRED] endpoint=%s key=%s session=%s reason=%s",
                 self.dialect.name, key.id, self.session_id, reason)
        self.key, self.session_id = None, ""
        self.expired_key_id = key.id  # no pushes until auth again; then the subscriptions resume
        if reason == "revoked":
            self.end_reason = "key revoked"
            await self.close(code=CLOSE_REVOKED)
        elif reason == "ended":
            await self.close(code=CLOSE_ENDED)

    async def session_idle(self, message: dict[str, Any]) -> None:
        log.info("[WS-API:IDLE] endpoint=%s key=%s closing after %s s without a message",
                 self.dialect.name, self.key.id if self.key else "-", message["seconds"])
        self.end_reason = "idle"
        await self.close(code=CLOSE_IDLE)
