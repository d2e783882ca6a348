"""Which stations this process holds, and the rounds that keep the database honest.

A station is online while its socket is open. Two ways the database could
still say "online" with no socket behind it are repaired here, every
``OCPP_PRESENCE_SWEEP_SECONDS`` by every process:

- A connection whose consumer died without its ``disconnect`` (killed by the
  server). A station is marked online only once its socket is accepted, so a
  handshake abandoned before that (measured in connection storms: daphne
  dropped the handshakes that waited past its timeout, and 1,811 stations
  were shown online with 400 sockets) leaves nothing to repair; this is the
  net under what remains. Each process remembers the channels of the sockets
  it really holds and marks offline the stations the database says it holds
  (their channel names carry this process's channel prefix) but that it does
  not.
- A process killed outright (SIGKILL, a lost host) marks nothing offline. Each
  process vouches for itself in its ``ServerProcess`` row; one that has not
  for ``OCPP_PROCESS_TIMEOUT`` seconds is declared dead by the next live
  process's round, which marks offline every station it held. A process that
  was only stalled and finds itself declared dead closes its chargers' sockets
  (close code 4010) so that they reconnect and register afresh.

The rounds start with the first request or connection a process serves
(``ensure_running`` in ``csms.asgi``), so a process that holds no charger
still watches the others.

Neither round waits in the ORM thread's queue, which holds the load the
rounds are judging. Vouching and the sweep each run on a schedule of their
own, in a thread of their own, with a database connection of their own
(closed after each use). Only the repair of a station is queued in the ORM
thread, behind the write of its own closing socket, and the sweep does not
wait for it. Measured before (issue 12): a reconnect storm queued more than
``OCPP_PROCESS_TIMEOUT`` of work there, the round waited behind it for its
sweep before vouching again, and the only process declared itself dead and
closed every charger with 4010. A process also never judges its own row:
being late is what it would be judging, and only another process can tell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from django.utils import timezone

from csms import groupcommit, metrics
from csms.consumers import Periodic
from csms.events import EventMessage, collecting, publish
from csms.runtime import PROCESS_NAME
from stations import services

log = logging.getLogger("stations.presence")

T = TypeVar("T")


def channel_prefix(channel_name: str) -> str:
    """The part of a channel name shared by every channel of one process."""
    return channel_name.rsplit("!", 1)[0] + "!"


def _in_own_connection(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, list[EventMessage]]:
    """Run a service function with this worker thread's own connection, closed after;
    return its result and the pushes of the events it recorded."""
    try:
        with collecting() as messages:
            return fn(*args, **kwargs), messages
    finally:
        connections.close_all()


async def _off_orm_thread(executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call_service`` in ``executor`` instead of the ORM thread's queue."""
    run = sync_to_async(_in_own_connection, thread_sensitive=False, executor=executor)
    result, messages = await run(fn, *args, **kwargs)
    if messages:
        await publish(messages)
    return result


class Presence:
    def __init__(self) -> None:
        self._live: dict[str, str] = {}  # channel name -> station id
        self._prefix = ""  # the channel prefix this process's row was written under
        self._started_at = timezone.now()
        interval = lambda: settings.OCPP_PRESENCE_SWEEP_SECONDS  # noqa: E731
        # One thread each, so that a vouch never waits for a sweep held up by
        # the database (a lock, a slow release) either.
        self._vouching = ThreadPoolExecutor(1, thread_name_prefix="presence-vouch")
        self._sweeping = ThreadPoolExecutor(1, thread_name_prefix="presence-sweep")
        self._rounds = (
            Periodic("server presence: vouching", interval, self.vouch, immediately=True),
            # From one interval on: the round at the first request would judge
            # the others with a row that counts none of this process's chargers yet.
            Periodic("server presence: sweep", interval, self.sweep),
        )
        self._cleanups: set[asyncio.Task] = set()
        self._repairing: set[str] = set()  # channels whose station is being marked offline

    def ensure_running(self) -> None:
        for rounds in self._rounds:
            rounds.ensure_running()

    def add(self, channel_name: str, station_id: str) -> None:
        """Call after the socket's accept and before the station is marked online on this
        channel, so that no round takes it for a station without a socket."""
        self._live[channel_name] = station_id
        self.ensure_running()

    def discard(self, channel_name: str) -> None:
        self._live.pop(channel_name, None)

    def abandon(self, channel_name: str, station_id: str) -> None:
        """A connection was cancelled while being marked online: forget it and mark the
        station offline once that database work (queued in the ORM thread before this) is done."""
        self.discard(channel_name)
        # Through the group commit, as the consumer's own writes: after the online write it queued.
        self._in_background(groupcommit.call(services.station_disconnected, station_id, channel_name))

    async def vouch(self) -> None:
        """Refresh this process's row; fence if another process declared it dead."""
        prefix = await self._own_prefix()
        held = sum(1 for channel_name in self._live if channel_name.startswith(prefix))
        if await _off_orm_thread(self._vouching, self._vouch_in_thread, prefix, held):
            await self._fence()

    def _vouch_in_thread(self, prefix: str, held: int) -> bool:
        # Vouches (the rounds' and the sweep's) run one after another in this
        # thread, so only the first under a prefix creates the row: a second
        # one, decided before the first was written, would also undo a
        # declaration of death written in between.
        fenced = services.vouch_for_process(prefix, PROCESS_NAME, self._started_at, held, first=prefix != self._prefix)
        self._prefix = prefix
        return fenced

    async def sweep(self) -> None:
        """Mark offline this process's stations without a socket, and the stations of dead processes."""
        # Judge the others only just after vouching (in the vouching thread: it
        # waits for the database, never for the ORM thread's queue), so that this
        # process's row is fresh and counts every charger it had accepted.
        await self.vouch()
        prefix = await self._own_prefix()
        for station_id, channel_name in await _off_orm_thread(self._sweeping, services.stations_on_channels, prefix):
            if channel_name not in self._live and channel_name not in self._repairing:
                self._repairing.add(channel_name)
                self._in_background(self._repair(station_id, channel_name))
        for name in await _off_orm_thread(self._sweeping, services.release_dead_processes, prefix):
            metrics.processes_declared_dead.inc()
            log.warning("[OCPP:presence] server process %s declared dead: its stations are offline", name)

    async def _repair(self, station_id: str, channel_name: str) -> None:
        # In the group commit (as the consumers' writes), not awaited by the sweep. There it
        # comes behind the write a closing socket's consumer queued once it left ``_live``:
        # that write keeps the station's real last activity, and this one then
        # finds nothing to do, so it is logged only if it did something.
        try:
            if await groupcommit.call(services.station_disconnected, station_id, channel_name):
                log.warning("[OCPP:presence] station=%s marked online without a socket here: offline", station_id)
        finally:
            self._repairing.discard(channel_name)

    def _in_background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _own_prefix(self) -> str:
        return channel_prefix(await get_channel_layer().new_channel())

    async def _fence(self) -> None:
        log.error("[OCPP:presence] this process was declared dead by another one: closing %d charger sockets",
                  len(self._live))
        layer = get_channel_layer()
        for channel_name in list(self._live):
            await layer.send(channel_name, {"type": "station.fenced"})


presence = Presence()
