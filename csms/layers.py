"""The channel layers: the embedded one, and the Redis one made to survive a Redis restart.

The Redis layer is described in ``RedisChannelLayer`` below. The embedded
one is Channels' in-memory layer, made to scale with connections:
Channels' ``InMemoryChannelLayer`` scans every channel and group for expired
messages on each ``receive`` and ``group_send`` (O(connections) per message:
measured ~0.1 ms per call at 1,000 chargers, ~1 ms at 4,000, ~5 ms at 8,000),
and its ``group_send`` makes a task and a deep copy per member. Here the scan
runs at most once a second, a group send puts a shallow copy of the message
on each member's queue directly, and a receive no longer builds a throwaway
queue per call. Channels 4.3.2 also leaves ``channel_capacity`` uncompiled in
this layer (any pattern made ``get_capacity`` fail); it is compiled here.
Channel names carry an id of the layer instance, as channels-redis's do, so
that a station's channel name tells which process holds its socket (two
processes on one database must not mistake each other's stations for theirs).

Consumers of this project treat received messages as read-only, which is what
makes the shallow copy safe.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from copy import deepcopy
from functools import partial
from typing import Any, cast

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer
from redis import exceptions as redis_errors

from csms import metrics
from csms.queues import ChannelQueue

log = logging.getLogger("csms.layers")


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    clean_interval = 1.0
    channel_capacity: Any  # Channels' option: a dict of channel patterns, compiled in __init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.channel_capacity, dict):
            self.channel_capacity = self.compile_capacities(self.channel_capacity)
        self._next_clean = 0.0
        self.client_prefix = secrets.token_hex(6)

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.inmemory-{self.client_prefix}!{secrets.token_hex(6)}"

    def _queue(self, channel: str) -> ChannelQueue:
        # A lean queue, not asyncio.Queue: one per connection waiting for a message
        # (3.3 KB each empty, measured at 1,000 held chargers).
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = ChannelQueue(self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        # Channels' send, without the asyncio.Queue it builds (and drops) on every call.
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, deepcopy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + self.clean_interval
        # Channels' _clean_expired, reading the head of our queues.
        wall = time.time()
        for channel, queue in list(self.channels.items()):
            while not queue.empty() and queue.first()[0] < wall:
                queue.get_nowait()
                self._remove_from_groups(channel)
                if queue.empty():
                    self.channels.pop(channel, None)
        timeout = int(wall) - self.group_expiry
        for channels in self.groups.values():
            for name, joined in list(channels.items()):
                if joined and joined < timeout:
                    channels.pop(name, None)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        expires = time.time() + self.expiry
        for channel in list(self.groups.get(group, ())):
            try:
                self._queue(channel).put_nowait((expires, dict(message)))
            except asyncio.QueueFull:
                pass  # as Channels does: a full channel drops group messages (the event log has them)


# --- Redis ------------------------------------------------------------------------

# What a Redis that stopped answering raises (BusyLoadingError, a restarted
# Redis still loading, is a ConnectionError too).
REDIS_LOST = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
BACKOFF_FIRST = 0.05  # seconds before the first retry; doubled each time...
BACKOFF_MAX = 1.0  # ...up to this: Redis is found again within a second of answering


class ChannelLayerUnavailable(Exception):
    """Redis did not answer: the message was not sent. Events are still in the
    event log; a remote command fails (503) and can be retried."""


class RedisChannelLayer(ChannelsRedisChannelLayer):
    """channels-redis, made to survive a Redis restart without restarting the process.

    channels-redis lets every connection error through: the consumer whose
    ``receive`` holds the process's shared read (BZPOPMIN) dies with
    "Connection closed by server", then the next one to take it over, until
    every consumer of the process is gone; and a restarted Redis (no
    persistence) has forgotten every group membership, so the push hubs'
    ``events.all`` was empty until its hourly renewal. Here:

    - ``receive`` never fails because Redis is gone: the read is retried with
      a bounded backoff (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``) until
      Redis answers, so consumers and their sockets simply wait;
    - ``send``, ``group_send``, ``group_add`` and ``group_discard`` give up
      after ``retry_seconds`` (retrying a lost connection meanwhile) and raise
      ``ChannelLayerUnavailable``; while Redis is known to be gone (``available``
      false) one of them at a time, at most one a second, tries it and the
      others fail at once, so callers (OCPP handlers publishing events, remote
      commands) are not held up by an outage;
    - the layer remembers its own channels' group memberships and re-asserts
      them as soon as Redis answers again, then calls the recovery listeners
      (``add_recovery_listener``) so that what was missed can be caught up.

    An operation cut off mid-way by the connection can have taken effect
    before the retry: a message may then arrive twice (pushes carry an
    eventId to de-duplicate by). Messages that were queued in Redis when it
    was restarted are lost, as with any channel layer; the event log keeps
    every event (getEventsSince).
    """

    def __init__(self, *args: Any, retry_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = retry_seconds
        self.down_since: float | None = None  # monotonic time Redis stopped answering
        self._next_probe = 0.0  # while it does not: when a send may try it again
        self._probing = False
        self.recoveries = 0
        self._memberships: dict[str, set[str]] = {}  # group -> this process's channels in it
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._recovery: asyncio.Task | None = None

    @property
    def available(self) -> bool:
        return self.down_since is None

    def add_recovery_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Await ``listener()`` each time Redis answers again after an outage
        (after the group memberships were re-asserted)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    # --- Operations -------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._retrying(f"send to {channel}", lambda: super(RedisChannelLayer, self).send(channel, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._retrying(f"send to group {group}",
                             lambda: super(RedisChannelLayer, self).group_send(group, message))

    async def group_add(self, group: str, channel: str) -> None:
        if self._is_local(channel):  # remembered first: re-asserted after an outage even if this fails
            self._memberships.setdefault(group, set()).add(channel)
        await self._retrying(f"join group {group}", lambda: super(RedisChannelLayer, self).group_add(group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._memberships.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._memberships[group]
        await self._retrying(f"leave group {group}",
                             lambda: super(RedisChannelLayer, self).group_discard(group, channel))

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> Any:
        # The blocking read under every receive(): wait for Redis, never fail for it.
        return await self._attempts("read", lambda: super(RedisChannelLayer, self)._brpop_with_clean(
            index, channel, timeout), deadline=None)

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        try:
            await super()._clean_receive_backup(index, channel)
        except REDIS_LOST:
            # A Redis that restarted has no backup queue any more; one that only
            # dropped the connection moves the message back at the next read
            # (delivered twice: see the class docstring).
            pass

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        if self.available:
            return await self._bounded(what, operation, deadline=now + self.retry_seconds)
        # Redis is known to be gone: a caller (an OCPP handler publishing its
        # events) must not wait for it. One attempt at a time, at most one a
        # second, probes it (the reads probe too); the others fail at once.
        if self._probing or now < self._next_probe:
            raise ChannelLayerUnavailable(f"Redis does not answer ({what}) since {now - cast(float, self.down_since):.0f} s")
        self._probing, self._next_probe = True, now + BACKOFF_MAX
        try:
            return await self._bounded(what, operation, deadline=now)
        finally:
            self._probing = False

    async def _bounded(self, what: str, operation: Callable[[], Awaitable[Any]], *, deadline: float) -> Any:
        # A Redis that hangs (stopped, swapping, a host gone without a reset)
        # answers nothing until the socket timeout: give up after retry_seconds.
        try:
            return await asyncio.wait_for(self._attempts(what, operation, deadline=deadline), self.retry_seconds)
        except TimeoutError:
            self._lost(what, TimeoutError(f"no answer in {self.retry_seconds:g} s"))
            raise ChannelLayerUnavailable(f"Redis did not answer ({what}) in {self.retry_seconds:g} s") from None

    async def _attempts(self, what: str, operation: Callable[[], Awaitable[Any]], *, deadline: float | None) -> Any:
        delay = BACKOFF_FIRST
        failures = 0
        while True:
            try:
                result = await operation()
            except REDIS_LOST as error:
                failures += 1
                give_up = deadline is not None and time.monotonic() + delay > deadline
                # One failure can be a pooled connection from before a restart
                # (redis-py has dropped it now): Redis is gone if the retry fails too.
                if failures > 1 or give_up:
                    self._lost(what, error)
                if give_up:
                    raise ChannelLayerUnavailable(f"Redis did not answer ({what}): {error}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self._answered()
            return result

    # --- Outage and recovery ----------------------------------------------------------

    def _is_local(self, channel: str) -> bool:
        return "!" in channel and channel.split("!", 1)[0].endswith("." + self.client_prefix)

    def _lost(self, what: str, error: BaseException) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        metrics.channel_layer_available.set(0)
        log.error("channel layer: Redis stopped answering (%s: %s: %s); sockets stay open, remote commands fail "
                  "with 503 and pushes wait until it is back (the event log has every event)",
                  what, type(error).__name__, error)

    def _answered(self) -> None:
        if self.down_since is None:
            return
        outage = time.monotonic() - self.down_since
        self.down_since = None
        self.recoveries += 1
        metrics.channel_layer_available.set(1)
        metrics.channel_layer_reconnects.inc()
        log.warning("channel layer: Redis answers again after %.1f s; re-joining %d group memberships",
                    outage, sum(len(members) for members in self._memberships.values()))
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="channel layer recovery")

    async def _recover(self) -> None:
        # The pool's idle connections were opened before the outage: each would
        # fail its next command once. Drop them rather than find out one by one.
        # (This loop's pools: another loop's connections are not ours to touch.)
        loop_layer = self._layers.get(asyncio.get_running_loop())
        for connection in list(loop_layer._connections.values()) if loop_layer else []:
            await connection.connection_pool.disconnect(inuse_connections=False)
        # A restarted Redis (no persistence) has forgotten every group: join ours again.
        for group, members in list(self._memberships.items()):
            for channel in list(members):
                try:
                    await self._retrying(f"re-join group {group}",
                                         partial(super().group_add, group, channel))
                except ChannelLayerUnavailable:
                    return  # gone again: the next recovery re-joins
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:
                log.exception("channel layer recovery listener %r failed", listener)
