"""The process's watch over its mobile sessions: expiry, idleness, deactivated keys.

One task per process checks every live connection every
``MOBILE_SESSION_CHECK_SECONDS`` with a single query for the keys in use, so
deactivating a key ends its sessions on every process within seconds without
a query per connection.
"""

from __future__ import annotations

import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from csms.consumers import Periodic
from csms.events import call_service
from mobileapi import services


class SessionWatcher:
    def __init__(self) -> None:
        self._consumers: set[Any] = set()
        self._checker = Periodic("mobile session check", lambda: settings.MOBILE_SESSION_CHECK_SECONDS, self.check)
        self._notified: dict[Any, str] = {}  # consumer -> what it was told, once per session

    def add(self, consumer: Any) -> None:
        self._consumers.add(consumer)
        self._checker.ensure_running()

    def discard(self, consumer: Any) -> None:
        self._consumers.discard(consumer)
        self._notified.pop(consumer, None)

    async def check(self) -> None:
        consumers = list(self._consumers)
        key_ids = {c.key.id for c in consumers if c.key is not None}
        active = await call_service(services.active_key_ids, key_ids) if key_ids else set()
        now = time.monotonic()
        layer = get_channel_layer()
        for consumer in consumers:
            verdict = self._verdict(consumer, active, now)
            if verdict is None or self._notified.get(consumer) == f"{consumer.session_id}:{verdict}":
                continue
            self._notified[consumer] = f"{consumer.session_id}:{verdict}"
            if verdict == "idle":
                message = {"type": "session.idle", "seconds": settings.MOBILE_IDLE_TIMEOUT}
            else:
                message = {"type": "session.end", "reason": verdict}
            try:
                await layer.send(consumer.channel_name, message)
            except ChannelFull:  # tell it next round; the others now
                self._notified.pop(consumer, None)

    @staticmethod
    def _verdict(consumer: Any, active: set[int], now: float) -> str | None:
        if now - consumer.last_message_at > settings.MOBILE_IDLE_TIMEOUT:
            return "idle"
        if consumer.key is None:
            return None
        if consumer.key.id not in active:
            return "revoked"
        if now - consumer.authenticated_at > settings.MOBILE_SESSION_TTL:
            return "expired"
        return None


watcher = SessionWatcher()
