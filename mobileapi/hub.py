"""One reader of the event bus per process, fanning pushes out to its local connections.

Each mobile connection could join the channel-layer groups itself, but then
every event costs a queue put, a task wake-up and a dispatch per connection
(measured: ~150 µs per push, p99 354 ms with 1,000 subscribers on one
process), and on Redis one message per connection. Instead each process has
one hub channel in the group ``events.all``: it receives each event once and
hands it to the local connections that want it, in order. Across processes
Redis then carries one message per process, not per connection.

The hub also tells the per-process station snapshot (``snapshots.py``) when a
station's state changed, so every process's cached getStations stays current.

Through a Redis outage the hub waits (the layer's receive waits for Redis);
when Redis answers again the layer re-joins the hub's ``events.all``
membership, which a restarted Redis has forgotten, and the hub tells its
``gap_listeners`` that events were missed (the snapshot re-reads the
database). The events themselves are in the event log (getEventsSince).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from csms import metrics
from csms.consumers import Periodic
from csms.event_kinds import OWN_KINDS as OWN_KINDS  # pushed to their command's issuer, subscribed or not
from csms.events import ALL_EVENTS_GROUP, EventMessage
from mobileapi.pushlines import PushLines

log = logging.getLogger("mobileapi.hub")


class Listener(Protocol):
    async def push(self, event: EventMessage) -> bool | None: ...  # True: sent to the app

    # Optional: (the stations it subscribed to, None for all; whether it issued commands).
    # A listener without it is offered every event.
    def interest(self) -> tuple[frozenset[str | None], bool]: ...


class PushHub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        # Who may want an event, by station: an event goes only to the listeners that
        # subscribed to its station or to all, and its command's issuers; measured, offering
        # every event to every listener cost 27 % of the loop with 1,000 apps subscribed to
        # one station while 2,000 chargers sent their meter values.
        self._interest: dict[Listener, tuple[frozenset[str | None], bool]] = {}
        self._by_station: dict[str, set[Listener]] = {}
        self._everywhere: set[Listener] = set()
        self._commanders: set[Listener] = set()
        # A push that has to wait (the client's socket is not draining) goes on
        # in that connection's own line, not in the fan-out (pushlines.py).
        self.lines = PushLines()
        self.observers: list[Any] = []  # called with every event (snapshot invalidation)
        # Called when events may have been missed: the channel layer lost Redis and found it again.
        self.gap_listeners: list[Callable[[], None]] = []
        self.channel = ""
        self._task: asyncio.Task | None = None
        # Group memberships expire (group_expiry, a day by default): renew it.
        self._renewer = Periodic("push hub membership", lambda: settings.MOBILE_HUB_RENEW_SECONDS, self._join)

    def add(self, listener: Listener) -> None:
        self.listeners.add(listener)
        self.reindex(listener)
        self.ensure_running()

    def discard(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self._unindex(listener)
        self.lines.forget(listener)

    def reindex(self, listener: Listener) -> None:
        """Call when a listener's subscriptions or commands changed."""
        self._unindex(listener)
        interest = getattr(listener, "interest", None)
        if interest is None or listener not in self.listeners:
            return
        stations, commander = interest()
        self._interest[listener] = (stations, commander)
        for station_id in stations:
            (self._everywhere if station_id is None else self._by_station.setdefault(station_id, set())).add(listener)
        if commander:
            self._commanders.add(listener)

    def _unindex(self, listener: Listener) -> None:
        old = self._interest.pop(listener, None)
        if old is None:
            return
        for station_id in old[0]:
            if station_id is None:
                self._everywhere.discard(listener)
            elif (listeners := self._by_station.get(station_id)) is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._by_station[station_id]
        self._commanders.discard(listener)

    def _candidates(self, event: EventMessage) -> list[Listener]:
        """The listeners that may want ``event`` (each decides in its ``push``)."""
        offered: list[set[Listener] | None] = [self._by_station.get(event.get("stationId", "")), self._everywhere]
        if event.get("kind") in OWN_KINDS:
            offered.append(self._commanders)
        if len(self._interest) < len(self.listeners):  # listeners without interest(): offered everything
            offered.append(self.listeners - self._interest.keys())
        groups = [group for group in offered if group]
        if len(groups) <= 1:
            return list(groups[0]) if groups else []
        return list(set().union(*groups))

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="push hub")

    async def _join(self) -> None:
        await get_channel_layer().group_add(ALL_EVENTS_GROUP, self.channel)

    async def _recovered(self) -> None:
        # The layer has re-joined events.all already (it re-asserts its
        # channels' memberships); what was pushed meanwhile never came.
        log.warning("push hub: events published while Redis was gone were not pushed (they are in the event log)")
        for listener in self.gap_listeners:
            listener()

    async def _run(self) -> None:
        layer = get_channel_layer()
        # The process's usual channel prefix (channels-redis reads one prefix
        # per process; a second one starves), marked "hub" after the "!" so
        # the capacity pattern "*!hub*" gives it room for bursts.
        self.channel = (await layer.new_channel()).replace("!", "!hub", 1)
        if hasattr(layer, "add_recovery_listener"):  # csms.layers.RedisChannelLayer
            layer.add_recovery_listener(self._recovered)
        try:
            await self._join()
        except Exception:  # Redis down at start: the layer joins once it answers again
            log.exception("push hub could not join %s yet", ALL_EVENTS_GROUP)
        self._renewer.ensure_running()
        while True:
            try:
                event = await layer.receive(self.channel)
            except Exception:  # not Redis going away (the layer waits for it): keep the hub alive
                log.exception("push hub could not read the channel layer; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            try:
                await self.fan_out(event)
            except Exception:
                log.exception("push of %s failed", event.get("eventId"))

    async def fan_out(self, event: EventMessage) -> None:
        if "ts" in event:
            metrics.observe_push(event["ts"])
        for observer in self.observers:
            observer(event)
        sent = 0
        for n, listener in enumerate(self._candidates(event), 1):
            try:
                sent += self.lines.push(listener, event)  # never waits for one connection
            except Exception:  # one broken connection must not cost the others the event
                metrics.channel_send_failures.labels("push").inc()
                log.exception("push of %s to one connection failed", event.get("eventId"))
            if n % 100 == 0:
                # Let the server write what is queued: its socket writes wait for
                # the loop, so without this nobody gets the event before everybody.
                await asyncio.sleep(0)
        if sent:  # one counter update per event, not one per connection
            metrics.events_pushed.labels(event.get("kind", "")).inc(sent)


hub = PushHub()
