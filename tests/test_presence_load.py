"""Presence under load, with real daphne processes: a live process never looks dead,
to itself or to others, however long its queue of database work; one that really
stalled is still fenced.

The load is real: chargers whose messages' writes wait behind a lock this test
holds on the database (the whole database on SQLite, the connectors' rows on
PostgreSQL) for three times ``OCPP_PROCESS_TIMEOUT``, so the server's ORM thread
holds more than that much queued work. Measured before the fix (issue 12): the
presence round waited behind that queue for its sweep, so the process's next
look at the process table found its own row older than the timeout, declared
itself dead, marked its stations offline and closed every charger with 4010.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import sqlite3
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from ocpp.v16 import call

from csms.models import Event
from simulator.v16 import ChargerState, SimulatedCharger, connect, now_iso
from stations.models import Connector, ServerProcess, Station
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

SWEEP = 1
TIMEOUT = 3
FLUSH = 1  # OCPP_ACTIVITY_FLUSH_SECONDS in tests.conftest.daphne_process
PRESENCE = {"OCPP_PRESENCE_SWEEP_SECONDS": str(SWEEP), "OCPP_PROCESS_TIMEOUT": str(TIMEOUT)}


@contextlib.contextmanager
def database_held(station_ids: list[str]) -> Iterator[None]:
    """Hold, from another connection, the lock the chargers' writes need, until the block ends."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        other = sqlite3.connect(db["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the one writer's lock: every write elsewhere waits
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    import psycopg

    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
                         dbname=db["NAME"]) as other:
        other.execute(f"SELECT 1 FROM {Connector._meta.db_table} WHERE station_id = ANY(%s) FOR UPDATE",
                      [station_ids])
        try:
            yield
        finally:
            other.rollback()


async def attach(url: str, station_id: str) -> tuple[SimulatedCharger, asyncio.Task]:
    cp = SimulatedCharger(ChargerState.new(station_id, 1), await connect(f"{url}/ocpp", station_id))
    task = asyncio.create_task(cp.start())
    await cp.boot()
    return cp, task


async def detach(chargers: list[tuple[SimulatedCharger, asyncio.Task]]) -> None:
    for cp, task in chargers:
        task.cancel()
        await cp._connection.close()


async def prefix_of(station_id: str) -> str:
    return (await Station.objects.aget(pk=station_id)).channel_name.rsplit("!", 1)[0] + "!"


async def seen_at(prefix: str):
    return await ServerProcess.objects.filter(channel_prefix=prefix, dead_at__isnull=True).values_list(
        "seen_at", flat=True).afirst()


async def test_a_process_whose_database_work_queues_past_the_timeout_does_not_fence_itself(daphne_process):
    url, _ = daphne_process(PRESENCE)
    ids = [f"busy{n:02d}" for n in range(20)]
    chargers = [await attach(url, station_id) for station_id in ids]
    try:
        prefix = await prefix_of(ids[0])
        assert await eventually(lambda: seen_at(prefix))
        hold = 3 * TIMEOUT
        with database_held(ids):
            # Each charger's StatusNotification waits in the ORM thread's queue behind the lock.
            statuses = [asyncio.ensure_future(cp.call(call.StatusNotification(
                connector_id=1, error_code="NoError", status="Preparing", timestamp=now_iso()))) for cp, _ in chargers]
            before = await seen_at(prefix)
            await asyncio.sleep(hold)
            during = await seen_at(prefix)
            if connection.vendor == "postgresql":
                # The process's own row is not locked: it went on vouching for itself.
                assert during is not None and (during - before).total_seconds() >= hold - 2 * SWEEP
            assert not any(status.done() for status in statuses)  # the writes did wait
        answered_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*statuses), 30)
        # Rounds enough, after the queue drained, for the process to have judged itself.
        await asyncio.sleep(max(0, TIMEOUT + 2 * SWEEP - (time.monotonic() - answered_at)))

        assert [cp._connection.close_code for cp, _ in chargers] == [None] * len(ids)  # no 4010
        row = await ServerProcess.objects.aget(channel_prefix=prefix)
        assert row.dead_at is None and row.chargers == len(ids)
        assert await Station.objects.filter(pk__in=ids, is_online=True, channel_name__startswith=prefix).acount() == 20
        assert not await Event.objects.filter(kind="station.disconnected").aexists()
        for cp, _ in chargers:
            await cp.call(call.Heartbeat())
    finally:
        await detach(chargers)


async def test_a_process_that_really_stalled_is_declared_dead_by_another_and_fences_itself(daphne_process):
    """SIGSTOP for longer than the timeout (a paused VM): the other process releases its
    stations; the stalled one, resumed, closes its chargers with 4010 and does not judge the other."""
    url_a, process_a = daphne_process(PRESENCE)
    url_b, _ = daphne_process(PRESENCE)
    chargers_a = [await attach(url_a, f"stall{n}") for n in range(3)]
    chargers_b = [await attach(url_b, "steady0")]
    try:
        prefix_a, prefix_b = await prefix_of("stall0"), await prefix_of("steady0")
        assert prefix_a != prefix_b
        # Stop A between its rounds, and after it wrote its chargers' last activity down:
        # a process stopped inside a write holds its locks, and nobody could release it.
        await asyncio.sleep(2 * FLUSH)
        vouched = await eventually(lambda: seen_at(prefix_a))
        await eventually(lambda: _changed(prefix_a, vouched), interval=0.01)
        await asyncio.sleep(SWEEP / 2)
        process_a.send_signal(signal.SIGSTOP)
        try:
            async def a_released():
                return not await Station.objects.filter(pk__startswith="stall", is_online=True).aexists()

            await eventually(a_released, timeout=TIMEOUT + 4 * SWEEP)
            assert not await ServerProcess.objects.filter(channel_prefix=prefix_a, dead_at__isnull=True).aexists()
        finally:
            process_a.send_signal(signal.SIGCONT)

        async def closed():
            codes = [cp._connection.close_code for cp, _ in chargers_a]
            return codes if None not in codes else None

        assert await eventually(closed, timeout=4 * SWEEP) == [4010] * 3
        assert chargers_b[0][0]._connection.close_code is None
        assert await Station.objects.filter(pk="steady0", is_online=True).aexists()
        assert await seen_at(prefix_b)
        # A registered afresh, and judged nobody.
        assert await eventually(lambda: seen_at(prefix_a), timeout=4 * SWEEP)
        await chargers_b[0][0].call(call.Heartbeat())
    finally:
        await detach(chargers_a + chargers_b)


async def _changed(prefix: str, since) -> bool:
    now = await seen_at(prefix)
    return now is not None and now != since


def test_a_process_never_declares_its_own_row_dead(transactional_db, settings):
    """Whatever its timestamp says; another process's stale row is still judged."""
    from stations import services

    settings.OCPP_PROCESS_TIMEOUT = 30
    for prefix in ("specific.me!", "specific.other!"):
        services.vouch_for_process(prefix, prefix, timezone.now(), 0, first=True)
    ServerProcess.objects.update(seen_at=timezone.now() - dt.timedelta(seconds=600))

    assert services.release_dead_processes("specific.me!") == ["specific.other!"]
    me = ServerProcess.objects.get()
    assert me.channel_prefix == "specific.me!" and me.dead_at is None
    assert services.vouch_for_process("specific.me!", "specific.me!", me.started_at, 0, first=False) is False
