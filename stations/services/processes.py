"""Presence across processes: each process vouches for itself, and the stations of a
process that stopped vouching are released."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from csms.events import atomic
from stations.models import ServerProcess, Station
from stations.services.connections import station_disconnected, stations_on_channels


def vouch_for_process(prefix: str, server: str, started_at: dt.datetime, chargers: int, *, first: bool) -> bool:
    """Refresh this process's row; True if another process had declared it dead.

    ``first``: the first round under this channel prefix (the row is created).
    """
    now = timezone.now()
    mine = ServerProcess.objects.filter(channel_prefix=prefix)
    if not first and mine.filter(dead_at__isnull=True).update(seen_at=now, chargers=chargers):
        return False
    # A first round, or a process that was declared dead (its row marked or
    # already removed) while it was only stalled: start afresh.
    ServerProcess.objects.update_or_create(
        channel_prefix=prefix,
        defaults={"server": server, "started_at": started_at, "seen_at": now, "chargers": chargers, "dead_at": None},
    )
    return not first


def release_dead_processes(alive: str = "") -> list[str]:
    """Declare dead the processes silent for ``OCPP_PROCESS_TIMEOUT`` seconds and mark
    offline every station whose socket they held; return the dead processes' names.

    ``alive``: the calling process's channel prefix. A process never judges its
    own row, whatever its timestamp says: its own lateness (a queue of work, a
    locked database) is what it would be judging, and it knows it is alive. A
    process that really stalled is declared dead by another one, and fences
    itself when it next vouches.

    Idempotent and safe to run from every process at once: a station goes
    offline (and its ``station.disconnected`` event is written) only once.
    """
    now = timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.OCPP_PROCESS_TIMEOUT)
    others = ServerProcess.objects.exclude(channel_prefix=alive)
    # One conditional UPDATE against the dead process's own refresh (which
    # requires dead_at IS NULL): exactly one of the two wins.
    others.filter(dead_at__isnull=True, seen_at__lt=cutoff).update(dead_at=now)
    released = []
    for process in others.filter(dead_at__isnull=False):
        for station_id, channel_name in stations_on_channels(process.channel_prefix):
            # Its last activity stays the last one its process wrote down.
            station_disconnected(station_id, channel_name, keep_activity=True)
        ServerProcess.objects.filter(pk=process.pk, dead_at__isnull=False).delete()
        released.append(process.server)
    return released


def flush_activity(last_seen: dict[str, dt.datetime]) -> None:
    """Write in-memory last-activity times (heartbeats are not written one by one)."""
    with atomic():
        for station_id, seen in last_seen.items():
            Station.objects.filter(pk=station_id).update(last_activity=seen)
