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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from django.utils import timezone

from csms import metrics
from csms.consumers import Periodic
from csms.events import call_service
from csms.runtime import PROCESS_NAME
from stations import services

log = logging.getLogger("stations.presence")


def channel_prefix(channel_name: str) -> str:
    """The part of a channel name shared by every channel of one process."""
    return channel_name.rsplit("!", 1)[0] + "!"


def _vouch(prefix: str, started_at: Any, chargers: int, first: bool) -> bool:
    try:
        return services.vouch_for_process(prefix, PROCESS_NAME, started_at, chargers, first=first)
    finally:
        connections.close_all()  # a worker thread's connection, not the ORM thread's


class Presence:
    def __init__(self) -> None:
        self._live: dict[str, str] = {}  # channel name -> station id
        self._prefix = ""  # the channel prefix this process's row was written under
        self._started_at = timezone.now()
        self._rounds = Periodic(
            "server presence", lambda: settings.OCPP_PRESENCE_SWEEP_SECONDS, self.round, immediately=True
        )
        self._cleanups: set[asyncio.Task] = set()

    def ensure_running(self) -> None:
        self._rounds.ensure_running()

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
        task = asyncio.ensure_future(call_service(services.station_disconnected, station_id, channel_name))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def round(self) -> None:
        prefix = channel_prefix(await get_channel_layer().new_channel())
        # Off the ORM thread: a long queue of handshakes there (a reconnect
        # storm) must not make a live process look dead to the others.
        held = sum(1 for channel_name in self._live if channel_name.startswith(prefix))
        fenced = await sync_to_async(_vouch, thread_sensitive=False)(prefix, self._started_at, held, prefix != self._prefix)
        self._prefix = prefix
        if fenced:
            await self._fence()
        await self._sweep(prefix)
        for name in await call_service(services.release_dead_processes):
            metrics.processes_declared_dead.inc()
            log.warning("[OCPP:presence] server process %s declared dead: its stations are offline", name)

    async def _sweep(self, prefix: str) -> None:
        held = await call_service(services.stations_on_channels, prefix)
        for station_id, channel_name in held:
            if channel_name not in self._live:
                log.warning("[OCPP:presence] station=%s marked online without a socket here: offline", station_id)
                await call_service(services.station_disconnected, station_id, channel_name)

    async def _fence(self) -> None:
        log.error("[OCPP:presence] this process was declared dead by another one: closing %d charger sockets",
                  len(self._live))
        layer = get_channel_layer()
        for channel_name in list(self._live):
            await layer.send(channel_name, {"type": "station.fenced"})


presence = Presence()
