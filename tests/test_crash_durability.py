"""Acknowledged means durable: kill -9 the server under a burst of MeterValues.

Twenty chargers boot, start a transaction each and send MeterValues back to
back, one reading per message, each at its own time with its own register
value (so each must be stored). The test records which of them got their
CALLRESULT, kills the daphne process outright (SIGKILL: no disconnect
handler, no rollback, no flush), then reads the database:

- every acknowledged reading is stored, once; one stored but not acknowledged
  is allowed (killed between its commit and its reply) and counted;
- every event was numbered once, inside its own transaction: the sequence
  numbers are contiguous and the counter row holds the last one (a number
  taken outside the writer's transaction leaves a gap or a counter ahead of
  the log when the process dies in between);
- each stored reading has exactly one ``meter.update`` (a message's newest
  new reading is announced: here, its one reading), and no ``meter.update``
  announces a reading that is not stored;
- each acknowledged StartTransaction's transaction exists.

An answer sent a fraction of a millisecond before its commit, or a batch
numbered just before it commits, is seldom caught by one kill at one moment.
So, during each burst, the server is also stopped (SIGSTOP) many times the
instant a charger receives a CALLRESULT, and every reading acknowledged by
then must already be in the database; and a thread of the test reads the
counter and the last seq in one statement over and over: in every committed
state they agree. The first kill comes on a CALLRESULT; then a new process
on the same database takes the chargers back, goes on with their
transactions and is killed the moment the counter moves (a batch's numbers
committed), and everything is checked again.

A SIGKILL is not a power loss: this shows the process answers only after
its commit, not that the database has the commit on disk (SQLite runs with
synchronous=NORMAL). It guards the group commit of issue 12 (csms/groupcommit.py):
many messages in one transaction, each answered only once that has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from django.utils.dateparse import parse_datetime

from csms.models import Event, EventCounter
from simulator.v16 import connect
from stations.models import MeterSample, Transaction

pytestmark = pytest.mark.django_db(transaction=True)

CHARGERS = 20
BURST_SECONDS = 1.5  # at least; then until MIN_ACKNOWLEDGED (a loaded machine is slower), for at most 10 s more
MIN_ACKNOWLEDGED = 5 * CHARGERS
MAX_READINGS = 6000  # per charger, in all, one second apart: all before now (they start 2 h ago)
CALL_TIMEOUT = 5.0
SERVER_ENV = {"OCPP_UNKNOWN_STATIONS": "accept", "OCPP_ACCEPT_UNKNOWN_IDTAGS": "true", "OCPP_REQUIRE_AUTH": "false"}


class CallError(Exception):
    pass


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Reading:
    station_id: str
    connector: int
    at: dt.datetime
    register: int


class Killer:
    """Signals the server: SIGKILL once (from the event loop or the watcher's thread), or SIGSTOP
    the moment a charger receives a CALLRESULT, for a look at the database while it stands still."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.on_acknowledgement = False  # SIGKILL on the next CALLRESULT
        self.stop_on_acknowledgement = False  # SIGSTOP on the next CALLRESULT
        self.stopped = asyncio.Event()
        self.fired_at: float | None = None
        self.how = ""
        self._lock = threading.Lock()

    def acknowledged(self) -> None:
        """A charger just got a CALLRESULT (nothing awaited since): its write has the least time
        to reach the database if it was answered before its commit."""
        if self.stop_on_acknowledgement:
            self.stop_on_acknowledgement = False
            os.kill(self.pid, signal.SIGSTOP)
            self.stopped.set()
        elif self.on_acknowledgement:
            self.fire("on a CALLRESULT")

    def fire(self, how: str) -> None:
        with self._lock:
            if self.fired_at is None:
                os.kill(self.pid, signal.SIGKILL)
                self.fired_at, self.how = time.monotonic(), how


class CounterWatch:
    """Reads the counter row and the last event's seq in one statement (one snapshot), over and over,
    from a connection of its own. In every committed state the two agree: the counter is taken in the
    transaction that writes the events. With ``killer``, kills the server the moment the counter
    moves: a number taken outside its transaction is then committed and its event not yet."""

    def __init__(self, killer: Killer | None = None) -> None:
        self.killer = killer
        self.reads = 0
        self.disagreements: list[tuple[int | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CounterWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from django.db import connection

        sql = (f"SELECT (SELECT value FROM {EventCounter._meta.db_table} WHERE id = 1), "
               f"(SELECT MAX(seq) FROM {Event._meta.db_table})")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                first, _ = cursor.fetchone()
                while not self._stop.wait(0.0002):  # ~0.3 ms a round, leaving the CPU to the server
                    cursor.execute(sql)
                    counter, last = cursor.fetchone()
                    self.reads += 1
                    if counter != last:
                        self.disagreements.append((counter, last))
                    if self.killer is not None and counter != first:
                        self.killer.fire("as the counter moved")
        finally:
            connection.close()


@dataclass
class Charger:
    """A charger speaking raw OCPP-J frames, one call in flight; what it sent and what was acknowledged."""

    station_id: str
    started_at: dt.datetime
    meter_start: int
    ws: Any = None
    killer: Killer | None = None
    transaction_id: int | None = None
    sent: list[Reading] = field(default_factory=list)
    acknowledged: list[Reading] = field(default_factory=list)
    call_errors: int = 0
    ids: itertools.count = field(default_factory=itertools.count)

    async def open(self, url: str) -> None:
        self.ws = await connect(f"{url}/ocpp", self.station_id, open_timeout=10)

    async def call(self, action: str, payload: dict) -> dict:
        """Send a CALL and return its CALLRESULT's payload; a CALLERROR raises CallError."""
        unique_id = f"{self.station_id}-{next(self.ids)}"
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        async with asyncio.timeout(CALL_TIMEOUT):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame[0] == 2:  # a command from the CSMS: not part of this story
                    await self.ws.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
                elif frame[1] == unique_id:
                    if frame[0] == 4:
                        raise CallError(f"{action}: {frame[2]} {frame[3]}")
                    return frame[2]

    def reading(self, index: int) -> Reading:
        return Reading(self.station_id, 1, self.started_at + dt.timedelta(seconds=index + 1),
                       self.meter_start + 10 * (index + 1))

    async def send_reading(self, reading: Reading) -> None:
        self.sent.append(reading)
        try:
            await self.call("MeterValues", {
                "connectorId": reading.connector,
                "transactionId": self.transaction_id,
                "meterValue": [{
                    "timestamp": iso(reading.at),
                    "sampledValue": [{"value": str(reading.register), "measurand": "Energy.Active.Import.Register",
                                      "unit": "Wh", "context": "Sample.Periodic"}],
                }],
            })
        except CallError:
            self.call_errors += 1
            return
        self.acknowledged.append(reading)
        if self.killer is not None:
            self.killer.acknowledged()  # no await since the CALLRESULT arrived

    async def boot(self) -> None:
        answer = await self.call("BootNotification", {"chargePointVendor": "CSMS", "chargePointModel": "Crash"})
        assert answer["status"] == "Accepted", answer

    async def start(self) -> None:
        answer = await self.call("StartTransaction", {
            "connectorId": 1, "idTag": "CRASH", "meterStart": self.meter_start, "timestamp": iso(self.started_at)})
        assert answer["idTagInfo"]["status"] == "Accepted", answer
        self.transaction_id = answer["transactionId"]

    async def burst(self) -> None:
        """MeterValues back to back until the connection dies."""
        for index in range(len(self.sent), MAX_READINGS):
            try:
                await self.send_reading(self.reading(index))
            except (websockets.ConnectionClosed, OSError, TimeoutError):
                return


async def stored_samples() -> list[tuple[Reading, int | None]]:
    rows = MeterSample.objects.values_list("station_id", "connector_number", "timestamp", "energy_wh", "transaction_id")
    return [(Reading(sid, number, at, round(energy)), tx) async for sid, number, at, energy, tx in rows]


async def check_events() -> list[tuple[int, str, str, dict]]:
    """Every event numbered once, in its transaction; returns them in order."""
    events = [row async for row in Event.objects.order_by("seq").values_list("seq", "kind", "station_id", "data")]
    seqs = [seq for seq, *_ in events]
    assert seqs, "no events at all"
    assert len(seqs) == len(set(seqs)), "a sequence number used twice"
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert len(missing) == 0, f"{len(missing)} sequence numbers missing from {seqs[0]}..{seqs[-1]}: {missing[:10]}"
    counter = await EventCounter.objects.filter(pk=1).values_list("value", flat=True).afirst()
    assert counter == seqs[-1], f"the counter says {counter}, the last event is {seqs[-1]}"
    return events


async def look_while_stopped(chargers: list[Charger], killer: Killer) -> int:
    """Stop the server (SIGSTOP) on the next CALLRESULT; every reading acknowledged by then must
    already be in the database. Many looks per burst: each is a chance to catch an answer sent
    a fraction of a millisecond before its commit, which a single kill mostly misses."""
    killer.stopped.clear()
    killer.stop_on_acknowledgement = True
    try:
        await asyncio.wait_for(killer.stopped.wait(), 1)
    except TimeoutError:
        pass
    killer.stop_on_acknowledgement = False
    if not killer.stopped.is_set():
        return 0
    try:
        # Each of these was answered before the server stopped (some may have been read since).
        acknowledged = {r for charger in chargers for r in charger.acknowledged}
        stored = {r for r, _ in await stored_samples()}
    finally:
        os.kill(killer.pid, signal.SIGCONT)
    missing = acknowledged - stored
    assert len(missing) == 0, (
        f"with the server stopped on a CALLRESULT, {len(missing)} acknowledged readings are not in the database, "
        f"e.g. {sorted(missing, key=str)[:3]}")
    return 1


async def burst_then_kill(chargers: list[Charger], process: subprocess.Popen, kill_on: str) -> None:
    """MeterValues back to back from every charger, then SIGKILL when ``kill_on`` happens next:
    an "acknowledgement" (a charger receives a CALLRESULT) or a committed move of the "counter"."""
    killer = Killer(process.pid)
    for charger in chargers:
        charger.killer = killer
    before = sum(len(charger.acknowledged) for charger in chargers)
    bursts = [asyncio.create_task(charger.burst()) for charger in chargers]
    with CounterWatch() as watch:
        end, deadline = time.monotonic() + BURST_SECONDS, time.monotonic() + 10
        looks = 0
        while time.monotonic() < deadline and (
                time.monotonic() < end or sum(len(c.acknowledged) for c in chargers) - before < MIN_ACKNOWLEDGED):
            looks += await look_while_stopped(chargers, killer)
            await asyncio.sleep(0.05)
    # No watcher thread while waiting for a CALLRESULT: the event loop reacts sooner without one.
    with CounterWatch(killer) if kill_on == "counter" else contextlib.nullcontext() as trigger:
        killer.on_acknowledgement = kill_on == "acknowledgement"
        deadline = time.monotonic() + 1
        while killer.fired_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        killer.fire("after a second of waiting for it")
        await asyncio.wait_for(asyncio.to_thread(process.wait), 10)
    await asyncio.wait_for(asyncio.gather(*bursts), 10)
    print(f"\nkilled {killer.how}; sockets closed {time.monotonic() - killer.fired_at:.2f} s later")
    watches = [watch] + ([trigger] if trigger is not None else [])
    reads, disagreements = sum(w.reads for w in watches), [d for w in watches for d in w.disagreements]
    print(f"{reads} reads of the counter and the last seq while the server ran, {len(disagreements)} disagreed; "
          f"{looks} looks at the database with the server stopped on a CALLRESULT")
    assert len(disagreements) == 0, f"committed states where the counter and the last seq differ: {disagreements[:5]}"
    for charger in chargers:
        charger.killer = None
        await charger.ws.close()


async def check_database(chargers: list[Charger]) -> None:
    """Nothing acknowledged lost, nothing stored twice, every event numbered once."""
    # Each acknowledged StartTransaction's transaction exists.
    started = {tx.pk: tx async for tx in Transaction.objects.all()}
    for charger in chargers:
        tx = started.get(charger.transaction_id)
        assert tx is not None and tx.station_id == charger.station_id, charger.station_id

    # Every acknowledged reading is stored, once, in its transaction.
    stored = await stored_samples()
    keys = [(r.station_id, r.connector, r.at) for r, _ in stored]
    assert len(keys) == len(set(keys)), "a reading stored twice"
    stored_set = {r for r, _ in stored}
    sent = {r for charger in chargers for r in charger.sent}
    acknowledged = {r for charger in chargers for r in charger.acknowledged}
    lost = acknowledged - stored_set
    transaction_of = {charger.station_id: charger.transaction_id for charger in chargers}
    assert all(tx == transaction_of[r.station_id] for r, tx in stored), "a reading stored in another transaction"
    never_sent = stored_set - sent
    assert len(never_sent) == 0, f"stored but never sent: {sorted(never_sent, key=str)[:3]}"
    errors = sum(charger.call_errors for charger in chargers)
    print(f"sent {len(sent)} MeterValues, {len(acknowledged)} acknowledged, {len(stored_set)} stored, "
          f"{len(stored_set - acknowledged)} stored but not acknowledged, {len(lost)} acknowledged but lost, "
          f"{errors} CALLERRORs")
    assert len(lost) == 0, f"{len(lost)} acknowledged readings are not stored, e.g. {sorted(lost, key=str)[:3]}"

    # Every event numbered once; one meter.update per stored reading, none for one that is not stored.
    events = await check_events()
    announced = [
        Reading(station_id, data["connectorId"], parse_datetime(data["timestamp"]), data["register"])
        for _, kind, station_id, data in events if kind == "meter.update"
    ]
    assert len(announced) == len(set(announced)), "a reading announced twice"
    not_stored, not_announced = set(announced) - stored_set, stored_set - set(announced)
    assert len(not_stored) == len(not_announced) == 0, (
        f"{len(not_stored)} announced, not stored, e.g. {sorted(not_stored, key=str)[:3]}; "
        f"{len(not_announced)} stored, not announced, e.g. {sorted(not_announced, key=str)[:3]}")
    print(f"{len(events)} events, seq {events[0][0]}..{events[-1][0]}")


async def test_acknowledged_meter_values_survive_kill_9(daphne_process):
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    chargers = [Charger(f"crash{n:02d}", base + dt.timedelta(seconds=n), 1_000_000 + 10_000 * n)
                for n in range(CHARGERS)]
    try:
        url, process = daphne_process(SERVER_ENV)
        async with asyncio.timeout(30):
            await asyncio.gather(*(charger.open(url) for charger in chargers))
            await asyncio.gather(*(charger.boot() for charger in chargers))
            await asyncio.gather(*(charger.start() for charger in chargers))
        await burst_then_kill(chargers, process, kill_on="acknowledgement")
        await check_database(chargers)
        first_round = [len(charger.acknowledged) for charger in chargers]
        assert all(first_round), "a charger had no reading acknowledged"
        assert sum(first_round) >= MIN_ACKNOWLEDGED, "too little load to show anything"

        # A new process on the same database: the chargers come back, go on with their
        # transactions, and this process is killed too, the moment a batch's numbers commit.
        url, process = daphne_process(SERVER_ENV)
        async with asyncio.timeout(30):
            await asyncio.gather(*(charger.open(url) for charger in chargers))
            await asyncio.gather(*(charger.boot() for charger in chargers))
        await burst_then_kill(chargers, process, kill_on="counter")
        await check_database(chargers)
        assert all(len(charger.acknowledged) > n for charger, n in zip(chargers, first_round)), (
            "a charger had no reading acknowledged by the new process")
    finally:
        for charger in chargers:
            if charger.ws is not None:
                await charger.ws.close()
