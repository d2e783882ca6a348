"""Station last-activity, kept in memory and written in batches.

Writing the database on every heartbeat measured 160-206 calls/s per process
against 1,362 without the write, so messages only touch this map and a
background task flushes it every ``OCPP_ACTIVITY_FLUSH_SECONDS``.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings

from csms.consumers import Periodic
from csms.events import call_service
from stations import services


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class ActivityTracker:
    def __init__(self) -> None:
        # Unix times, made datetimes only when written: touch() runs for every
        # message, and timezone.now() cost more than the map (issue 12).
        self._pending: dict[str, float] = {}
        self._flusher = Periodic("station activity flush", lambda: settings.OCPP_ACTIVITY_FLUSH_SECONDS, self.flush)

    def touch(self, station_id: str) -> None:
        self._pending[station_id] = time.time()
        self._flusher.ensure_running()

    def take(self, station_id: str) -> dt.datetime | None:
        """The unflushed activity time of one station, removed from the batch."""
        seen = self._pending.pop(station_id, None)
        return None if seen is None else _utc(seen)

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        if batch:
            await call_service(services.flush_activity, {station_id: _utc(seen) for station_id, seen in batch.items()})


tracker = ActivityTracker()
