"""prune_data forgets old samples and events, never transactions, while the server runs."""

from __future__ import annotations

import asyncio
import datetime as dt
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from csms.models import Event
from stations import commands
from stations.models import Connector, MeterSample, Station, Transaction
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def old_data() -> tuple[Transaction, Transaction]:
    long_ago = timezone.now() - dt.timedelta(days=200)
    station = Station.objects.create(pk="old")
    connector = Connector.objects.create(station=station, number=1)
    done = Transaction.objects.create(station=station, connector=connector, id_tag="A", meter_start=0,
                                      meter_stop=100, started_at=long_ago, stopped_at=long_ago, energy_wh=100)
    running = Transaction.objects.create(station=station, connector=connector, id_tag="B", meter_start=0,
                                         started_at=long_ago + dt.timedelta(seconds=1))
    for i in range(25):
        at = long_ago + dt.timedelta(minutes=i)
        MeterSample.objects.create(station=station, connector_number=1, transaction=done, timestamp=at, energy_wh=i)
    MeterSample.objects.create(station=station, connector_number=1, transaction=running,
                               timestamp=long_ago + dt.timedelta(hours=1), energy_wh=1)
    MeterSample.objects.create(station=station, connector_number=1, timestamp=timezone.now(), energy_wh=2)
    for i in range(30):
        Event.objects.create(seq=10_001 + i, kind="meter.update", station_id="old", created_at=long_ago, data={})
    Event.objects.create(seq=10_031, kind="meter.update", station_id="old", created_at=timezone.now(), data={})
    return done, running


def test_prune_keeps_transactions_recent_rows_and_running_sessions():
    done, running = old_data()
    out = StringIO()
    call_command("prune_data", "--meter-samples-days", "90", "--events-days", "30", "--batch", "7", stdout=out)
    assert "meter samples: deleted 25" in out.getvalue() and "events: deleted 30" in out.getvalue()
    assert Transaction.objects.count() == 2 and Transaction.objects.get(pk=done.pk).energy_wh == 100
    assert MeterSample.objects.filter(transaction=running).count() == 1  # still charging: kept
    assert MeterSample.objects.filter(transaction__isnull=True).count() == 1  # recent
    assert list(Event.objects.values_list("seq", flat=True)) == [10_031]


def test_dry_run_and_forever():
    old_data()
    out = StringIO()
    call_command("prune_data", "--dry-run", "--meter-samples-days", "90", "--events-days", "0", stdout=out)
    assert "25 older than 90 days would be deleted" in out.getvalue() and "kept forever" in out.getvalue()
    assert MeterSample.objects.count() == 27 and Event.objects.count() == 31


async def test_prune_while_a_charger_sends_meter_values(charger_factory):
    """The server keeps writing (SQLite's one writer included) while pruning runs."""
    await sync_to_async(old_data)()
    await charger_factory("fora072", connectors=1, meter_interval=0.05)
    assert await commands.remote_start("fora072", 1, "LIVE-1") == "Accepted"

    def prune_in_another_thread():  # as the command runs beside the server, in a process of its own
        try:
            call_command("prune_data", "--meter-samples-days", "90", "--events-days", "30", "--batch", "1",
                         "--pause", "0.01", stdout=StringIO())
        finally:
            connections.close_all()  # or PostgreSQL refuses to drop the test database at the end

    prune = asyncio.create_task(sync_to_async(prune_in_another_thread, thread_sensitive=False)())

    async def pruned():
        return prune.done() and not await Event.objects.filter(created_at__lt=timezone.now() - dt.timedelta(days=30)
                                                               ).aexists()

    await eventually(pruned, timeout=30)
    prune.result()
    assert await Transaction.objects.filter(station_id="old").acount() == 2
    assert await Station.objects.filter(pk="fora072", is_online=True).aexists()

    async def live_samples():  # the live session's samples were written meanwhile, and kept
        return await MeterSample.objects.filter(transaction__id_tag="LIVE-1").acount() >= 3

    await eventually(live_samples)
