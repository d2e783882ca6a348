"""The process's watch over its mobile sessions: expiry, idleness, deactivated
keys, sessions an operator ended, and support's record of them.

One task per process checks every live connection every
``MOBILE_SESSION_CHECK_SECONDS`` with one ORM hop for the whole process: it
writes what changed in its sessions (``MobileSession`` rows, for the admin),
learns which keys are still active and which sessions an operator asked to
end. Deactivating a key or ending a session in the admin thus takes effect
within seconds on every process, without a query per connection.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from csms import metrics
from csms.consumers import Periodic
from csms.events import call_service
from csms.layers import ChannelLayerUnavailable
from csms.runtime import PROCESS_NAME
from mobileapi import services

PURGE_EVERY = 3600.0


class SessionWatcher:
    def __init__(self) -> None:
        self._consumers: set[Any] = set()
        self._checker = Periodic("mobile session check", lambda: settings.MOBILE_SESSION_CHECK_SECONDS, self.check)
        self._notified: dict[Any, str] = {}  # consumer -> what it was told, once per session
        self._written: dict[Any, tuple[Any, ...]] = {}  # consumer -> its row as last written
        self._ended: dict[str, tuple[str, dt.datetime, str]] = {}  # closed since the last round
        self._last_touch = 0.0
        self._last_purge = 0.0

    def add(self, consumer: Any) -> None:
        self._consumers.add(consumer)
        self._checker.ensure_running()

    def discard(self, consumer: Any, reason: str = "closed") -> None:
        self._consumers.discard(consumer)
        self._notified.pop(consumer, None)
        self._written.pop(consumer, None)
        connection_id = getattr(consumer, "connection_id", "")
        if connection_id:
            self._ended[connection_id] = (connection_id, timezone.now(), reason)

    async def check(self) -> None:
        consumers = list(self._consumers)
        now = time.monotonic()
        touch = now - self._last_touch >= settings.MOBILE_SESSION_RECORD_SECONDS
        new, changed, written = self._changes(consumers, touch)
        ended = list(self._ended.values())
        key_ids = {c.key.id for c in consumers if c.key is not None}
        metrics.mobile_connections.set(len(consumers))
        metrics.mobile_sessions.set(sum(c.key is not None for c in consumers))
        sync = await call_service(services.sync_sessions, PROCESS_NAME, new, changed, ended, key_ids, touch)
        for connection_id, *_ in ended:
            self._ended.pop(connection_id, None)
        for consumer, row in written.items():
            if consumer in self._consumers:
                self._written[consumer] = row
        if touch:
            self._last_touch = now
        if now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            cutoff = timezone.now() - dt.timedelta(days=settings.MOBILE_SESSION_HISTORY_DAYS)
            await call_service(services.purge_sessions, cutoff)
        await self._notify(consumers, sync, now, key_ids)

    def _changes(self, consumers: list[Any], touch: bool) -> tuple[list, list, dict]:
        """The rows to create and update: identity changes (auth, subscriptions) at
        once, a newer last message only on a ``touch`` round."""
        new, changed, written = [], [], {}
        for consumer in consumers:
            record = consumer.session_record()
            identity = (record["api_key_id"], record["session_id"], repr(record["subscriptions"]))
            previous = self._written.get(consumer)
            if previous is None:
                new.append(record)
            elif previous[0] != identity or (touch and previous[1] != record["last_message_at"]):
                changed.append(record)
            else:
                continue
            written[consumer] = (identity, record["last_message_at"])
        return new, changed, written

    async def _notify(self, consumers: list[Any], sync: services.SessionSync, now: float, asked: set[int]) -> None:
        layer = get_channel_layer()
        for consumer in consumers:
            verdict = self._verdict(consumer, sync, now, asked)
            if verdict is None or self._notified.get(consumer) == f"{consumer.session_id}:{verdict}":
                continue
            self._notified[consumer] = f"{consumer.session_id}:{verdict}"
            if verdict == "idle":
                message = {"type": "session.idle", "seconds": settings.MOBILE_IDLE_TIMEOUT}
            else:
                message = {"type": "session.end", "reason": verdict}
            try:
                await layer.send(consumer.channel_name, message)
            except (ChannelFull, ChannelLayerUnavailable):  # tell it next round; the others now
                self._notified.pop(consumer, None)

    @staticmethod
    def _verdict(consumer: Any, sync: services.SessionSync, now: float, asked: set[int]) -> str | None:
        if consumer.connection_id in sync.end_requested:
            return "ended"
        if now - consumer.last_message_at > settings.MOBILE_IDLE_TIMEOUT:
            return "idle"
        if consumer.key is None:
            return None
        if consumer.key.id not in asked:
            # It authenticated (or switched keys) while this round asked the database:
            # its key was not looked up, which says nothing of it; the next round does.
            return None
        if consumer.key.id not in sync.active_key_ids:
            return "revoked"
        if now - consumer.authenticated_at > settings.MOBILE_SESSION_TTL:
            return "expired"
        return None


watcher = SessionWatcher()
