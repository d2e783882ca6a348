"""Presence across processes: a dead process's stations go offline; a fenced one lets go.

The other process is played by rows in the database (a ServerProcess that
stopped vouching for itself, stations online on its channels); this process
is the live server under test. The same story with real daphne processes,
one of them killed, is in tests/test_scale_out.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from ocpp.v16 import call

from csms.models import Event
from stations import services
from stations.models import ServerProcess, Station
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick_presence(settings):
    settings.OCPP_PRESENCE_SWEEP_SECONDS = 0.2
    settings.OCPP_PROCESS_TIMEOUT = 5


def ago(seconds: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


LAST_SEEN = dt.datetime(2026, 11, 30, 12, 0, 5, tzinfo=dt.UTC)


async def other_process(prefix: str, seen_seconds_ago: float, stations: list[str]) -> None:
    await ServerProcess.objects.acreate(
        channel_prefix=prefix, server=f"otherhost:{prefix}", started_at=ago(3600), seen_at=ago(seen_seconds_ago)
    )
    for station_id in stations:
        await Station.objects.acreate(pk=station_id, is_online=True, channel_name=f"{prefix}{station_id}",
                                      last_activity=LAST_SEEN)


async def is_offline(station_id: str) -> bool:
    return not (await Station.objects.aget(pk=station_id)).is_online


async def test_a_dead_process_stations_go_offline_and_a_live_one_keeps_its_own(
    quick_presence, charger_factory
):
    charger = await charger_factory("here01", connectors=1)  # starts this process's rounds
    await other_process("specific.dead1!", 600, ["dead-a", "dead-b"])
    await other_process("specific.alive1!", 0, ["alive-a"])

    await eventually(lambda: is_offline("dead-b"))
    assert await is_offline("dead-a")
    assert not await ServerProcess.objects.filter(channel_prefix="specific.dead1!").aexists()
    disconnected = [e async for e in Event.objects.filter(kind="station.disconnected").values_list("station_id", flat=True)]
    assert sorted(disconnected) == ["dead-a", "dead-b"]  # once each, whatever the rounds
    # Its last activity stays what its process last wrote down: nobody saw the socket close.
    assert (await Station.objects.aget(pk="dead-a")).last_activity == LAST_SEEN
    # A process that vouched for itself within the timeout is not judged.
    assert not await is_offline("alive-a")
    assert not await is_offline("here01")
    # This process vouches for itself with the sockets it holds.
    mine = await ServerProcess.objects.exclude(channel_prefix__in=["specific.alive1!"]).aget()
    assert mine.chargers == 1 and mine.dead_at is None
    await charger.cp.call(call.Heartbeat())


async def test_a_process_declared_dead_closes_its_chargers_which_then_reconnect(quick_presence, charger_factory):
    charger = await charger_factory("stalled01", connectors=1)
    prefix = (await Station.objects.aget(pk="stalled01")).channel_name.rsplit("!", 1)[0] + "!"
    await eventually(lambda: ServerProcess.objects.filter(channel_prefix=prefix).aexists())
    # Another process judged this one dead (it stalled past the timeout) and released its stations.
    await ServerProcess.objects.filter(channel_prefix=prefix).aupdate(dead_at=timezone.now())

    async def closed():
        return charger.ws.close_code

    assert await eventually(closed) == 4010
    await eventually(lambda: is_offline("stalled01"))
    again = await charger_factory("stalled01", connectors=1)
    assert not await is_offline("stalled01")
    assert (await ServerProcess.objects.aget(channel_prefix=prefix)).dead_at is None
    await again.cp.call(call.Heartbeat())


def test_declaring_dead_and_vouching_race_for_one_row(transactional_db, settings):
    """The dead process's own refresh and the declaration are conditional updates of
    one row: whichever lands first wins, so a live process is never released silently."""
    settings.OCPP_PROCESS_TIMEOUT = 30
    started = ago(3600)
    assert services.vouch_for_process("specific.p1!", "h:1", started, 0, first=True) is False
    ServerProcess.objects.filter(channel_prefix="specific.p1!").update(seen_at=ago(60))
    Station.objects.create(pk="s1", is_online=True, channel_name="specific.p1!c1")

    assert services.release_dead_processes() == ["h:1"]
    assert not Station.objects.get(pk="s1").is_online
    assert services.release_dead_processes() == []  # done once
    # The stalled process comes back: it learns it was declared dead, and is registered again.
    assert services.vouch_for_process("specific.p1!", "h:1", started, 0, first=False) is True
    assert services.vouch_for_process("specific.p1!", "h:1", started, 0, first=False) is False
    assert services.release_dead_processes() == []
