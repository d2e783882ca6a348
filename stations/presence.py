"""Which stations this process holds, and a sweep that keeps the database honest.

A station is online while its socket is open. When the server kills a
handshake mid-connect (daphne drops handshakes that wait longer than its
timeout, seen under connection storms), the consumer's ``disconnect`` never
runs and the database would keep the station online with no socket: commands
to it would wait for a timeout instead of failing at once as offline. So each
process remembers the channels of the sockets it really holds and, every
``OCPP_PRESENCE_SWEEP_SECONDS``, marks offline the stations the database says
it holds (their channel names carry this process's channel-layer prefix) but
that it does not.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from csms.consumers import Periodic
from csms.events import call_service
from stations import services

log = logging.getLogger("stations.presence")


class Presence:
    def __init__(self) -> None:
        self._live: dict[str, str] = {}  # channel name -> station id
        self._prefix = ""  # "specific.<layer client prefix>!", the same for every channel of this process
        self._sweeper = Periodic("station presence sweep", lambda: settings.OCPP_PRESENCE_SWEEP_SECONDS, self.sweep)
        self._cleanups: set[asyncio.Task] = set()

    def add(self, channel_name: str, station_id: str) -> None:
        """Call before the station is marked online on this channel."""
        self._live[channel_name] = station_id
        self._prefix = channel_name.rsplit("!", 1)[0] + "!"
        self._sweeper.ensure_running()

    def discard(self, channel_name: str) -> None:
        self._live.pop(channel_name, None)

    def abandon(self, channel_name: str, station_id: str) -> None:
        """A connect was cancelled midway: forget it and mark the station offline once the
        connect's own database work (queued in the ORM thread before this) is done."""
        self.discard(channel_name)
        task = asyncio.ensure_future(call_service(services.station_disconnected, station_id, channel_name))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def sweep(self) -> None:
        if not self._prefix:
            return
        held = await call_service(services.stations_on_channels, self._prefix)
        for station_id, channel_name in held:
            if channel_name not in self._live:
                log.warning("[OCPP:presence] station=%s marked online without a socket here: offline", station_id)
                await call_service(services.station_disconnected, station_id, channel_name)


presence = Presence()
