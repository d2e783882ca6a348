"""services.processes: each process vouches for itself; a silent one's stations are released."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from stations import services
from stations.models import ServerProcess, Station
from tests.fast.conftest import events

pytestmark = pytest.mark.django_db

STARTED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def silent(prefix: str, seconds: float) -> None:
    ServerProcess.objects.filter(channel_prefix=prefix).update(seen_at=timezone.now() - dt.timedelta(seconds=seconds))


def test_a_process_vouches_for_itself() -> None:
    assert services.vouch_for_process("p1!", "host:1", STARTED, 0, first=True) is False
    silent("p1!", 5)
    assert services.vouch_for_process("p1!", "host:1", STARTED, 7, first=False) is False
    process = ServerProcess.objects.get(channel_prefix="p1!")
    assert (process.server, process.chargers, process.dead_at) == ("host:1", 7, None)
    assert (timezone.now() - process.seen_at).total_seconds() < 1


def test_a_process_declared_dead_while_stalled_learns_it_when_it_vouches_next() -> None:
    services.vouch_for_process("p1!", "host:1", STARTED, 3, first=True)
    ServerProcess.objects.filter(channel_prefix="p1!").update(dead_at=timezone.now())
    assert services.vouch_for_process("p1!", "host:1", STARTED, 3, first=False) is True
    assert ServerProcess.objects.get(channel_prefix="p1!").dead_at is None  # it starts afresh
    ServerProcess.objects.all().delete()  # released meanwhile: the row is gone altogether
    assert services.vouch_for_process("p1!", "host:1", STARTED, 3, first=False) is True
    assert ServerProcess.objects.filter(channel_prefix="p1!").exists()


def test_the_stations_of_a_silent_process_go_offline_once(station: Station, settings: Settings) -> None:
    settings.OCPP_PROCESS_TIMEOUT = 30
    services.vouch_for_process("p1!", "host:1", STARTED, 1, first=True)
    services.vouch_for_process("p2!", "host:2", STARTED, 0, first=True)
    Station.objects.create(pk="elsewhere", is_online=True, channel_name="p2!elsewhere")
    last_activity = Station.objects.get(pk="fora072").last_activity
    silent("p1!", 31)
    assert services.release_dead_processes(alive="p2!") == ["host:1"]
    released = Station.objects.get(pk="fora072")
    assert (released.is_online, released.channel_name) == (False, "")
    assert released.last_activity == last_activity  # the last one its process wrote down
    assert Station.objects.get(pk="elsewhere").is_online
    assert [e["stationId"] for e in events("station.disconnected")] == ["fora072"]
    assert list(ServerProcess.objects.values_list("channel_prefix", flat=True)) == ["p2!"]
    assert services.release_dead_processes(alive="p2!") == []  # every process runs it: once is enough
    assert len(events("station.disconnected")) == 1


def test_a_process_never_judges_itself_nor_a_process_still_vouching(station: Station, settings: Settings) -> None:
    settings.OCPP_PROCESS_TIMEOUT = 30
    services.vouch_for_process("p1!", "host:1", STARTED, 1, first=True)
    services.vouch_for_process("p2!", "host:2", STARTED, 0, first=True)
    silent("p1!", 300)
    assert services.release_dead_processes(alive="p1!") == []  # late by its own clock: it knows it is alive
    silent("p1!", 29)
    assert services.release_dead_processes(alive="p2!") == []
    assert Station.objects.get(pk="fora072").is_online


def test_activity_is_written_in_one_flush(station: Station) -> None:
    other = Station.objects.create(pk="fora073")
    seen = timezone.now() + dt.timedelta(seconds=5)
    services.flush_activity({"fora072": seen, other.pk: seen, "gone": seen})
    assert set(Station.objects.values_list("last_activity", flat=True)) == {seen}
